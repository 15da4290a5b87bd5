package audit_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/vectabase/vectabase/vault/audit"
)

// TestProofTreeFollowsTheLog: the tree a Log keeps for proofs catches up
// with rows written since (by itself or another instance), and when the
// log is rewound under it (an older backup restored, then written on) it
// is rebuilt, so every proof still checks out against its checkpoint.
func TestProofTreeFollowsTheLog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, c, db := proofLog(t, audit.CheckpointConfig{})
	vkey, _, err := c.VerifierKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	prover := restart.get(db)() // a second instance that only proves
	t.Cleanup(prover.Close)
	prove := func(id int64) {
		t.Helper()
		p, err := prover.ProveInclusion(ctx, c, id, nil)
		if err != nil {
			t.Fatalf("ProveInclusion(%d) = %v", id, err)
		}
		raw, _ := json.Marshal(p)
		if res, err := audit.CheckProof(raw, nil, vkey); err != nil || res.RowID != id {
			t.Fatalf("CheckProof(row %d) = %+v, %v", id, res, err)
		}
	}
	record(t, l, 10)
	exec(t, db, `CREATE TABLE audit_logs_backup AS SELECT * FROM audit_logs`)
	exec(t, db, `CREATE TABLE audit_chain_head_backup AS SELECT * FROM audit_chain_head`)
	first := ids(t, db)
	prove(first[3]) // builds the tree
	record(t, l, 7)
	all := ids(t, db)
	prove(all[15]) // catches up with 7 rows
	prove(first[0])

	// An older backup is restored and the restored server writes on.
	l.Close()
	exec(t, db, `DELETE FROM audit_logs`)
	exec(t, db, `INSERT INTO audit_logs SELECT * FROM audit_logs_backup`)
	exec(t, db, `DELETE FROM audit_chain_head`)
	exec(t, db, `INSERT INTO audit_chain_head SELECT * FROM audit_chain_head_backup`)
	l2 := restart.get(db)()
	record(t, l2, 12)
	l2.Close()
	rewound := ids(t, db)
	if len(rewound) != 22 {
		t.Fatalf("%d rows after the rewind, want 22", len(rewound))
	}
	prove(rewound[20])
	prove(rewound[2])
	cons, err := prover.ProveConsistency(ctx, c, sign(t, c))
	if err != nil {
		t.Fatal(err)
	}
	if cons.FromSize != 22 || cons.TreeSize != 22 {
		t.Fatalf("ProveConsistency = %+v, want 22 -> 22", cons)
	}
}
