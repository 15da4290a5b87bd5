package audit

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
	"pgregory.net/rapid"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring/keyringtest"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
	"github.com/vectabase/vectabase/vault/alerts"
)

func headLog(t *testing.T) (*Log, *store.DB) {
	t.Helper()
	db := pgtest.New(t)
	kr := keyringtest.New(t, db.Pool)
	l := New(db, kr, zerolog.Nop(), nil)
	t.Cleanup(l.Close)
	return l, db
}

func recordN(t *testing.T, l *Log, n int) {
	t.Helper()
	for i := range n {
		if err := l.Record(context.Background(), vectabase.AuditEvent{ActorType: vectabase.ActorSystem,
			Action: "test.event", Result: vectabase.ResultAllowed, ResourceID: strings.Repeat("x", i%5)}); err != nil {
			t.Fatal(err)
		}
	}
}

func sqlExec(t *testing.T, db *store.DB, sql string, args ...any) {
	t.Helper()
	if _, err := db.Pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func storedHead(t *testing.T, db *store.DB) store.AuditHead {
	t.Helper()
	var h store.AuditHead
	err := db.Pool.QueryRow(context.Background(), `SELECT last_id, row_count, last_hash, mac, tree_size, tree_root, tree_range
		FROM audit_chain_head WHERE id = 1`).Scan(&h.LastID, &h.RowCount, &h.LastHash, &h.MAC, &h.TreeSize, &h.TreeRoot, &h.TreeRange)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestHeadMACCoversTheTree: changing only the stored Merkle tree's size or
// root (the rows and the chain's end untouched) breaks the chain head's
// MAC, so Verify names the head, not only a root mismatch.
func TestHeadMACCoversTheTree(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"root":               `UPDATE audit_chain_head SET tree_root = sha256(tree_root)`,
		"size":               `UPDATE audit_chain_head SET tree_size = tree_size - 1`,
		"size and root both": `UPDATE audit_chain_head SET tree_size = 0, tree_root = '', tree_range = '{}'`,
		"size grown":         `UPDATE audit_chain_head SET tree_size = tree_size + 1`,
	}
	for name, tamper := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			l, db := headLog(t)
			recordN(t, l, 7)
			if res, err := l.Verify(context.Background()); err != nil || !res.OK {
				t.Fatalf("Verify before tampering = %+v, %v; want OK", res, err)
			}
			sqlExec(t, db, tamper)
			res, err := l.Verify(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			h := storedHead(t, db)
			if res.OK || res.FirstBroken != h.LastID || !strings.Contains(res.Reason, "chain head") {
				t.Fatalf("Verify after changing the tree's %s = %+v; want the chain head (row %d) named as changed", name, res, h.LastID)
			}
		})
	}
}

// TestLegacyHeadIsResealedByTheFirstLockedWrite: a head sealed before the
// MAC covered the tree (only its end and length) still verifies, and the
// first write seals it with the tree; from then on a change to the tree is
// caught at the head.
func TestLegacyHeadIsResealedByTheFirstLockedWrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, db := headLog(t)
	recordN(t, l, 5)
	l.Close()
	// As a database written before this change: no tree yet (migration
	// 00025 on old rows) and the old head MAC.
	h := storedHead(t, db)
	h.TreeSize, h.TreeRoot, h.TreeRange = 0, nil, nil
	mac, err := legacyHeadMAC(l.kr, h)
	if err != nil {
		t.Fatal(err)
	}
	sqlExec(t, db, `UPDATE audit_chain_head SET tree_size = 0, tree_root = '', tree_range = '{}', mac = $1`, mac)
	if s, _ := headSeal(l.kr, storedHead(t, db)); s != sealLegacy {
		t.Fatalf("headSeal(legacy head) = %v, want sealLegacy", s)
	}
	if res, err := l.Verify(ctx); err != nil || !res.OK {
		t.Fatalf("Verify(legacy head) = %+v, %v; want OK", res, err)
	}

	l2 := New(db, l.kr, zerolog.Nop(), nil)
	defer l2.Close()
	recordN(t, l2, 3)
	h = storedHead(t, db)
	if s, _ := headSeal(l2.kr, h); s != sealCurrent || h.TreeSize != 8 || h.RowCount != 8 {
		t.Fatalf("after the first write: seal %v, tree %d, rows %d; want sealCurrent with a tree of 8", s, h.TreeSize, h.RowCount)
	}
	if res, err := l2.Verify(ctx); err != nil || !res.OK {
		t.Fatalf("Verify after resealing = %+v, %v; want OK", res, err)
	}
	sqlExec(t, db, `UPDATE audit_chain_head SET tree_root = sha256(tree_root)`)
	if res, _ := l2.Verify(ctx); res.OK || !strings.Contains(res.Reason, "chain head") {
		t.Fatalf("Verify after changing the resealed tree's root = %+v; want the head named", res)
	}
}

// TestProperty43_HeadMACSealsTreeSizeAndRoot claims: for any chain head,
// the MAC the writer seals it with verifies for exactly that head, and
// changing the Merkle tree's size or root (or any other sealed field) makes
// it fail, also as a legacy MAC. 100 iterations (rapid's default).
func TestProperty43_HeadMACSealsTreeSizeAndRoot(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	kr := keyringtest.New(t, db.Pool)
	rapid.Check(t, func(t *rapid.T) {
		h := store.AuditHead{
			LastID:   rapid.Int64Range(1, 1<<40).Draw(t, "lastID"),
			RowCount: rapid.Int64Range(1, 1<<40).Draw(t, "rowCount"),
			LastHash: rapid.SliceOfN(rapid.Byte(), 32, 32).Draw(t, "lastHash"),
			TreeSize: rapid.Int64Range(0, 1<<40).Draw(t, "treeSize"),
			TreeRoot: rapid.SliceOfN(rapid.Byte(), 0, 32).Draw(t, "treeRoot"),
		}
		var err error
		if h.MAC, err = headMAC(kr, h); err != nil {
			t.Fatal(err)
		}
		if s, err := headSeal(kr, h); err != nil || s != sealCurrent {
			t.Fatalf("headSeal(sealed head) = %v, %v; want sealCurrent", s, err)
		}
		tampered := h
		tampered.TreeRoot = bytes.Clone(h.TreeRoot)
		switch rapid.IntRange(0, 4).Draw(t, "field") {
		case 0:
			tampered.TreeSize += rapid.Int64Range(1, 1<<20).Draw(t, "delta") * int64(1-2*rapid.IntRange(0, 1).Draw(t, "sign"))
		case 1:
			if len(tampered.TreeRoot) == 0 {
				tampered.TreeRoot = []byte{0}
			} else {
				tampered.TreeRoot[rapid.IntRange(0, len(tampered.TreeRoot)-1).Draw(t, "at")] ^= byte(rapid.IntRange(1, 255).Draw(t, "bit"))
			}
		case 2: // the tree reset, as before the first tree was built
			if tampered.TreeSize == 0 && len(tampered.TreeRoot) == 0 {
				tampered.TreeSize = 1
			} else {
				tampered.TreeSize, tampered.TreeRoot = 0, nil
			}
		case 3:
			tampered.RowCount--
		case 4:
			tampered.LastID++
		}
		if s, err := headSeal(kr, tampered); err != nil || s != sealBroken {
			t.Fatalf("headSeal(head with a changed field) = %v, %v; want sealBroken", s, err)
		}
	})
}

// memAlerter keeps raised alerts.
type memAlerter struct {
	mu  sync.Mutex
	got []alerts.Alert
}

func (m *memAlerter) Raise(a alerts.Alert) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.got = append(m.got, a)
}

// TestLockedWriteAlertsOnAHeadThatDoesNotMatchItsMAC: a writer that finds
// the chain head changed outside it (here the stored tree's root) raises
// one alert before it extends and reseals the head, and keeps writing.
func TestLockedWriteAlertsOnAHeadThatDoesNotMatchItsMAC(t *testing.T) {
	t.Parallel()
	l, db := headLog(t)
	recordN(t, l, 4)
	l.Close()
	sqlExec(t, db, `UPDATE audit_chain_head SET tree_root = sha256(tree_root)`)
	al := &memAlerter{}
	l2 := New(db, l.kr, zerolog.Nop(), nil)
	l2.SetAlerter(al)
	defer l2.Close()
	recordN(t, l2, 2)
	al.mu.Lock()
	defer al.mu.Unlock()
	if len(al.got) != 1 || al.got[0].Kind != alerts.KindAuditVerify || !strings.Contains(al.got[0].Message, "does not match its MAC") {
		t.Fatalf("alerts = %+v, want one audit verification alert naming the head", al.got)
	}
}
