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

// A server's vectabase_backup_last_success_timestamp_seconds shows a backup
// that another process (the CLI's `backup create`) wrote into the same
// directory after the server started: the gauge reads the directory when
// scraped, not only this process's own runs.
func TestLastSuccessGaugeSeesAnotherProcesssBackup(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	f := setup(t, backup.WithRegisterer(reg)) // the server's service
	if got := testutil.ToFloat64(gauge(t, reg)); got != 0 {
		t.Fatalf("gauge before any backup = %v, want 0", got)
	}
	cli, err := backup.New(backup.Config{Dir: f.dir}, f.url, f.kek)
	if err != nil {
		t.Fatal(err)
	}
	b, err := cli.Create(ctx, backup.LocalOperator, nil)
	if err != nil {
		t.Fatalf("Create err = %v", err)
	}
	if got := testutil.ToFloat64(gauge(t, reg)); got != float64(b.CreatedAt.Unix()) {
		t.Errorf("server's gauge after the CLI's backup = %v, want %d", got, b.CreatedAt.Unix())
	}
	// A damaged file, however new its name, is not a success.
	if err := os.WriteFile(filepath.Join(f.dir, "20990101T000000Z-deadbeef.vbak"), []byte("not a backup"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(gauge(t, reg)); got != float64(b.CreatedAt.Unix()) {
		t.Errorf("gauge with a damaged newer file = %v, want %d", got, b.CreatedAt.Unix())
	}
}
