package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
)

// AppendAudit writes its rows and moves the head only from the head it was
// given: one row or several, and nothing at all from a stale head. Later
// ids from the column's sequence stay above the rows it wrote.
func TestAppendAuditMovesTheHeadOnlyFromItsHead(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	var empty store.AuditHead
	if err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) (err error) {
		empty, err = store.LockAuditHead(ctx, tx) // creates the placeholder head
		return err
	}); err != nil {
		t.Fatal(err)
	}
	rows := func(first int64, n int) []store.AuditRow {
		out := make([]store.AuditRow, n)
		for i := range out {
			out[i] = store.AuditRow{ID: first + int64(i), OccurredAt: time.Now().UTC().Truncate(time.Microsecond),
				ActorType: "user", ActorID: "u", Action: "test.append", Result: "success", IP: "10.0.0.1",
				Details: []byte(`{"i": 1}`), PrevHash: []byte{1}, Hash: []byte{byte(i)}}
		}
		return out
	}
	one := store.AuditHead{LastID: 1, RowCount: 1, LastHash: []byte{0}, MAC: []byte("m1")}
	three := store.AuditHead{LastID: 4, RowCount: 4, LastHash: []byte{2}, MAC: []byte("m4")}
	for _, step := range []struct {
		prev, next store.AuditHead
		rows       []store.AuditRow
		want       bool
	}{
		{empty, one, rows(1, 1), true},
		{one, three, rows(2, 3), true},
		{one, three, rows(2, 3), false}, // stale: the head is at 4 now
		{empty, one, rows(1, 1), false},
	} {
		ok, err := store.AppendAudit(ctx, db.Pool, step.prev, step.next, step.rows)
		if err != nil || ok != step.want {
			t.Fatalf("AppendAudit(from %d, %d rows) = %v, %v; want %v", step.prev.LastID, len(step.rows), ok, err, step.want)
		}
	}
	var n, last int64
	var ip string
	if err := db.Pool.QueryRow(ctx, `SELECT count(*), max(id), min(host(ip_address)) FROM audit_logs`).Scan(&n, &last, &ip); err != nil {
		t.Fatal(err)
	}
	var head int64
	if err := db.Pool.QueryRow(ctx, `SELECT last_id FROM audit_chain_head`).Scan(&head); err != nil {
		t.Fatal(err)
	}
	if n != 4 || last != 4 || head != 4 || ip != "10.0.0.1" {
		t.Fatalf("after the appends: %d rows, last id %d, head at %d, ip %q; want 4, 4, 4, 10.0.0.1", n, last, head, ip)
	}
	var next int64
	if err := db.Pool.QueryRow(ctx, `SELECT nextval(pg_get_serial_sequence('audit_logs', 'id'))`).Scan(&next); err != nil {
		t.Fatal(err)
	}
	if next <= 4 {
		t.Fatalf("the id sequence hands out %d, not above the appended rows", next)
	}
}
