package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"
	"pgregory.net/rapid"

	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/pgtest"
)

// TestCursorRoundTrip claims: for any position, DecodeCursor(Encode(c))
// gives c back (to the microsecond PostgreSQL keeps).
func TestCursorRoundTrip(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(rt *rapid.T) {
		c := store.Cursor{CreatedAt: time.UnixMicro(rapid.Int64Range(0, 1<<52).Draw(rt, "micros")).UTC()}
		copy(c.ID[:], rapid.SliceOfN(rapid.Byte(), 16, 16).Draw(rt, "id"))
		got, err := store.DecodeCursor(c.Encode())
		if err != nil || !got.CreatedAt.Equal(c.CreatedAt) || got.ID != c.ID {
			rt.Fatalf("DecodeCursor(Encode(%v)) = %v, %v", c, got, err)
		}
	})
}

// FuzzDecodeCursor: any string either decodes or errors; it never panics.
func FuzzDecodeCursor(f *testing.F) {
	f.Add("")
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add(store.Cursor{CreatedAt: time.Now(), ID: uuid.New()}.Encode())
	f.Fuzz(func(t *testing.T, s string) {
		c, err := store.DecodeCursor(s)
		if err == nil && c.Encode() != s {
			t.Fatalf("DecodeCursor(%q) accepted a cursor that does not re-encode to itself", s)
		}
	})
}

// TestRequestLogWriterFlushesOnClose queues rows with a flush interval far
// longer than the test and checks that Close alone writes every one of them,
// and that a row added after Close is dropped rather than panicking.
func TestRequestLogWriterFlushesOnClose(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	w := store.NewRequestLogWriter(db, store.RequestLogConfig{Buffer: 64, Batch: 1000, Every: time.Hour}, zerolog.Nop(), nil)
	const n = 500 // more than the buffer: Add waits for the writer instead of dropping
	for i := 0; i < n; i++ {
		w.Add(ctx, store.RequestLog{RequestID: uuid.NewString(), Method: "POST", Path: "/api/developer/verify", Status: 401, IP: "127.0.0.1", At: time.Now()})
	}
	if err := w.Close(ctx); err != nil {
		t.Fatalf("Close err = %v", err)
	}
	w.Add(ctx, store.RequestLog{RequestID: uuid.NewString(), Method: "POST", Path: "/x", At: time.Now()})
	var got int
	if err := db.Pool.QueryRow(ctx, `SELECT count(DISTINCT request_id) FROM api_request_logs`).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != n {
		t.Fatalf("api_request_logs has %d rows after Close, want %d", got, n)
	}
}
