package rotation_test

import (
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/server/rotation"
	"github.com/vectabase/vectabase/store"
)

// A DEK rotation re-encrypts the outer layer of a personal value and the
// personal key itself (user_keys.keyset, a sensitive column) like any other
// value: afterwards both are under the new key and the value still opens
// through the user's key.
func TestRotateDEKKeepsPersonalValuesOpen(t *testing.T) {
	t.Parallel()
	e := setup(t, testConfig)
	ctx := ctxT(t)
	u, err := e.db.CreateUser(ctx, store.NewUser{Email: "dev@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	var subID string
	loc := func() keyring.Location {
		return keyring.Location{Table: "developer_subscriptions", Column: "stripe_customer_id", RowID: subID}
	}
	err = e.db.InTx(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `INSERT INTO developer_subscriptions (developer_id, plan, status) VALUES ($1, 'pro', 'active') RETURNING id`, u.ID).Scan(&subID); err != nil {
			return err
		}
		ct, err := store.SealPersonal(ctx, tx, e.kr, u.ID, loc(), []byte("cus_ROTATE"))
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE developer_subscriptions SET stripe_customer_id = $2 WHERE id = $1`, subID, ct)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	job, err := e.svc.RotateDEK(ctx, rotation.LocalOperator)
	if err != nil {
		t.Fatal(err)
	}
	if done, err := e.svc.RunJob(ctx, job.ID, nil); err != nil || done.State != store.JobDone {
		t.Fatalf("RunJob = %+v, %v", done, err)
	}
	err = e.db.InTx(ctx, func(tx pgx.Tx) error {
		var ct, ks []byte
		if err := tx.QueryRow(ctx, `SELECT stripe_customer_id FROM developer_subscriptions WHERE id = $1`, subID).Scan(&ct); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT keyset FROM user_keys WHERE id = $1`, u.ID).Scan(&ks); err != nil {
			return err
		}
		for name, b := range map[string][]byte{"value": ct, "personal key": ks} {
			if id, _ := keyring.KeyIDOf(b); id != job.TargetKeyID {
				t.Errorf("%s under key %d after rotation, want %d", name, id, job.TargetKeyID)
			}
		}
		pt, err := store.OpenPersonal(ctx, tx, e.kr, u.ID, loc(), ct)
		if err != nil || string(pt) != "cus_ROTATE" {
			t.Errorf("OpenPersonal after rotation = %q, %v; want cus_ROTATE", pt, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
