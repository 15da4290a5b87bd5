package main

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/backup"
)

// deps is what the areas of the server are built from. Each area adds the
// services it builds here, so that later areas can use them.
type deps struct {
	cfg Config
	log zerolog.Logger
	reg *prometheus.Registry
	db  *store.DB

	backups *backup.Service

	closers []func()
}

func (d *deps) close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
}

// mountAreas builds each area's service and mounts its route table, in
// dependency order: keyring, audit, auth, then the areas that use them.
func mountAreas(ctx context.Context, d *deps, srv *server.Server) error {
	if err := startBackups(ctx, d); err != nil {
		return err
	}
	return nil
}
