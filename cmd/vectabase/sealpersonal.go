package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/store"
)

func newKeysSealPersonalCmd() *cobra.Command {
	var asJSON bool
	var batch int
	cmd := &cobra.Command{
		Use:   "seal-personal",
		Short: "Seal personal values written before per-user keys (or imported) under their owner's key",
		Long: `Seal every personal value still encrypted by the keyring alone (license keys
and hardware ids of licenses with a buyer, values of secrets a user owns,
profiles' Stripe customer ids, developer subscriptions' Stripe ids) under its
owner's personal key, so deleting the account shreds it. Runs beside a serving
server, in batches of one transaction each, each audited (keys.seal_personal).
Safe to interrupt: a new run skips what is already sealed.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := openKeys(cmd.Context())
			if err != nil {
				return err
			}
			defer d.close()
			counts, err := sealPersonal(cmd.Context(), d, vectabase.ActorLocalOperator, batch, func(c store.SealCount) {
				if !asJSON {
					fmt.Fprintf(cmd.ErrOrStderr(), "seal-personal: %s: %d values' rows sealed in this batch\n", c.Table, c.Sealed)
				}
			})
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"tables": counts})
			}
			for _, c := range counts {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %d rows with personal values, %d sealed now\n", c.Table, c.Scanned, c.Sealed)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	cmd.Flags().IntVar(&batch, "batch", 500, "rows per transaction")
	return cmd
}

// sealPersonal runs store.SealPersonalValues with an audit row per batch
// that sealed anything, written before the batch commits (fail closed: a
// batch whose row cannot be written is rolled back).
func sealPersonal(ctx context.Context, d *deps, actor string, batch int, progress func(store.SealCount)) ([]store.SealCount, error) {
	counts, err := d.db.SealPersonalValues(ctx, d.kr, batch, func(ctx context.Context, _ pgx.Tx, c store.SealCount) error {
		if err := d.audit.Record(ctx, vectabase.AuditEvent{Time: time.Now(), ActorType: actor,
			Action: "keys.seal_personal", ResourceType: "table", ResourceID: c.Table, Result: vectabase.ResultSuccess,
			Details: map[string]any{"rowsSealed": c.Sealed}}); err != nil {
			return fmt.Errorf("seal-personal: audit: %w", err)
		}
		if progress != nil {
			progress(c)
		}
		return nil
	})
	if err == nil {
		err = d.db.MarkPersonalValuesSealed(ctx)
	}
	return counts, err
}

// startSealPersonal seals, in the background, the personal values a
// database upgraded from before per-user keys (or restored from a backup
// of one) still holds keyring-only, so deleting an account shreds them
// without an operator remembering `keys seal-personal`. It runs once per
// database: a finished pass leaves a marker and later starts skip it.
// Instances that start together may both run it; the pass locks its rows,
// so the second only finds them sealed. A failure is logged and retried
// at the next start; the API serves meanwhile (reads take both forms).
func startSealPersonal(ctx context.Context, d *deps) {
	done, err := d.db.PersonalValuesSealed(ctx)
	if err != nil || done {
		if err != nil {
			d.log.Warn().Err(err).Msg("personal values: cannot tell whether they are sealed; run vectabase keys seal-personal")
		}
		return
	}
	sctx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		counts, err := sealPersonal(sctx, d, vectabase.ActorSystem, 500, nil)
		if err != nil {
			if sctx.Err() == nil {
				d.log.Warn().Err(err).Msg("personal values: sealing pass stopped; it resumes at the next start")
			}
			return
		}
		n := 0
		for _, c := range counts {
			n += c.Sealed
		}
		d.log.Info().Int("sealed", n).Msg("personal values: sealing pass finished")
	}()
	d.closers = append(d.closers, func() { cancel(); <-stopped })
}
