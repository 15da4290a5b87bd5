package main

import (
	"fmt"
	"os"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/vectabase/vectabase/migrations"
	"github.com/vectabase/vectabase/store"
)

func newMigrateCmd() *cobra.Command {
	open := func(cmd *cobra.Command) (*migrations.Migrator, error) {
		cfg, err := loadConfig(false)
		if err != nil {
			return nil, err
		}
		// Wait for the database like serve does, then migrate over the
		// direct connection.
		log, err := toolLogger(cfg, os.Stderr)
		if err != nil {
			return nil, err
		}
		db, err := store.Open(cmd.Context(), toolStore(cfg.Store, cfg.Store.DirectConnString(), 1), log, nil)
		if err != nil {
			return nil, err
		}
		db.Close()
		return migrations.Open(cfg.Store.DirectConnString())
	}
	up := &cobra.Command{
		Use:   "up",
		Short: "Apply every pending migration",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := open(cmd)
			if err != nil {
				return err
			}
			defer m.Close()
			n, err := m.Up(cmd.Context())
			if err != nil {
				return err
			}
			cur, _, _ := m.Versions(cmd.Context())
			fmt.Printf("applied %d migration(s); schema version %d\n", n, cur)
			return nil
		},
	}
	down := &cobra.Command{
		Use:   "down [N|all]",
		Short: "Roll back the newest N migrations (default 1; 'all' rolls back to zero)",
		Args:  rangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n := 1
			if len(args) == 1 {
				if args[0] == "all" {
					n = 0
				} else {
					v, err := strconv.Atoi(args[0])
					if err != nil || v < 1 {
						return usagef("N must be a positive number or 'all', got %q", args[0])
					}
					n = v
				}
			}
			m, err := open(cmd)
			if err != nil {
				return err
			}
			defer m.Close()
			done, err := m.Down(cmd.Context(), n)
			if err != nil {
				return err
			}
			cur, _, _ := m.Versions(cmd.Context())
			fmt.Printf("rolled back %d migration(s); schema version %d\n", done, cur)
			return nil
		},
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "List the migrations and whether each is applied",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := open(cmd)
			if err != nil {
				return err
			}
			defer m.Close()
			st, err := m.Status(cmd.Context())
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "VERSION\tSTATE\tFILE")
			for _, s := range st {
				state := "pending"
				if s.Applied {
					state = "applied"
				}
				fmt.Fprintf(w, "%d\t%s\t%s\n", s.Version, state, s.Name)
			}
			return w.Flush()
		},
	}
	return groupCmd("migrate", "Apply, roll back or list the schema migrations", up, down, status)
}
