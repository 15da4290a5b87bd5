package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/keyringtest"
	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/openapi"
	"github.com/vectabase/vectabase/store/backup"
	"github.com/vectabase/vectabase/store/pgtest"
)

// TestOpenAPIDescribesEveryRoute wires every area exactly as serve does and
// fails when a registered route is missing from openapi.json or the
// document lists a route that nothing serves.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	reg := prometheus.NewRegistry()
	srv := server.New(server.Config{}, zerolog.Nop(), reg)
	// Backups build their own KEK from the configuration.
	keyFile := filepath.Join(t.TempDir(), "master.key")
	if err := local.GenerateKeyFile(keyFile); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Keyring: keyring.Config{Backend: "local", MasterKeyFile: keyFile}, Backup: backup.Config{Dir: t.TempDir()}}
	d := &deps{cfg: cfg, log: zerolog.Nop(), reg: reg, db: db, kr: keyringtest.New(t, db.Pool)}
	t.Cleanup(d.close)
	if err := mountAreas(context.Background(), d, srv); err != nil {
		t.Fatalf("mountAreas err = %v", err)
	}
	missing, extra, err := openapi.Diff(srv.App())
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Errorf("registered routes missing from server/openapi/openapi.json:\n  %s", strings.Join(missing, "\n  "))
	}
	if len(extra) > 0 {
		t.Errorf("server/openapi/openapi.json lists routes nothing serves:\n  %s", strings.Join(extra, "\n  "))
	}
}
