package backup_test

import (
	"context"
	"errors"
	"testing"

	"github.com/vectabase/vectabase/store/backup"
)

// After a KEK rotation, RewrapAll puts every backup the old KEK opens under
// the new one: the new KEK alone then authenticates and verifies it (a
// scratch restore), the old one no longer opens it, list names the new KEK,
// and the contents are the same. A backup made under some other KEK is left
// as it was and reported.
func TestRewrapAllMovesBackupsToTheNewKEK(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setup(t)
	b, err := f.svc.Create(ctx, backup.LocalOperator, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, stranger := newKEK(t)
	other, err := backup.New(backup.Config{Dir: f.dir}, f.url, stranger)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.Create(ctx, backup.LocalOperator, nil)
	if err != nil {
		t.Fatal(err)
	}

	_, next := newKEK(t)
	res, err := f.svc.RewrapAll(ctx, backup.LocalOperator, next)
	if err != nil {
		t.Fatalf("RewrapAll err = %v", err)
	}
	if len(res.Rewrapped) != 1 || res.Rewrapped[0] != b.ID || res.Failed[foreign.ID] == "" {
		t.Fatalf("RewrapAll = %+v, want %s rewrapped and %s failed", res, b.ID, foreign.ID)
	}

	after, err := backup.New(backup.Config{Dir: f.dir}, f.url, next)
	if err != nil {
		t.Fatal(err)
	}
	if err := backup.Authenticate(ctx, after, b.ID); err != nil {
		t.Fatalf("the new KEK cannot open the rewrapped backup: %v", err)
	}
	if err := backup.Authenticate(ctx, f.svc, b.ID); !errors.Is(err, backup.ErrWrongKEK) {
		t.Errorf("the old KEK opens the rewrapped backup: err = %v, want ErrWrongKEK", err)
	}
	if err := backup.Authenticate(ctx, other, foreign.ID); err != nil {
		t.Errorf("the foreign backup was changed: %v", err)
	}
	got, err := after.Get(ctx, b.ID)
	if err != nil || got.DumpSHA256 != b.DumpSHA256 || got.KEK == b.KEK || got.KEK == "" {
		t.Errorf("after rewrap: %+v (%v); want the same dump under another KEK than %s", got, err, b.KEK)
	}
	if _, err := after.Verify(ctx, backup.LocalOperator, b.ID, nil); err != nil {
		t.Errorf("Verify with the new KEK: %v", err)
	}
	var rewraps int
	for _, a := range f.audit.actions() {
		if a == "backup.rewrap:success" {
			rewraps++
		}
	}
	if rewraps != 1 {
		t.Errorf("audited rewraps = %d, want 1 (%v)", rewraps, f.audit.actions())
	}
}
