package backup_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vectabase/vectabase/store/backup"
)

// A backup that cannot be written (here BACKUP_DIR is a file; bench/faults
// fills a real small filesystem) fails, is audited as a failure, leaves
// no backup listed, and counts in vectabase_backup_failures_total.
func TestFailedBackupCountedAndAudited(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	f := setup(t, backup.WithRegisterer(reg))
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	var failed []string
	svc, err := backup.New(backup.Config{Dir: notDir, Keep: 3}, f.url, f.kek, backup.WithAuditor(f.audit), backup.WithRegisterer(reg),
		backup.WithOnFailure(func(id string, err error) { failed = append(failed, id) }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Create(ctx, backup.LocalOperator, nil); err == nil {
		t.Fatal("Create into a file err = nil, want an error")
	}
	if got := testutil.CollectAndCount(reg, "vectabase_backup_failures_total"); got != 1 {
		t.Fatalf("vectabase_backup_failures_total series = %d, want 1", got)
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "vectabase_backup_failures_total" {
			if v := mf.GetMetric()[0].GetCounter().GetValue(); v != 1 {
				t.Errorf("vectabase_backup_failures_total = %v, want 1", v)
			}
		}
	}
	if len(failed) != 1 {
		t.Errorf("WithOnFailure was told %v, want the one failed backup", failed)
	}
	if got := f.audit.actions(); len(got) != 1 || got[0] != "backup.create:failure" {
		t.Errorf("audit actions = %v, want [backup.create:failure]", got)
	}
	if list, err := f.svc.List(ctx); err != nil || len(list) != 0 {
		t.Errorf("List = %v, %v, want none", list, err)
	}
}
