package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/policies"
	"github.com/vectabase/vectabase/server"
	"github.com/vectabase/vectabase/server/admin"
	"github.com/vectabase/vectabase/server/secrets"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/vault"
	"github.com/vectabase/vectabase/vault/alerts"
	"github.com/vectabase/vectabase/vault/audit"
)

// openVault builds the secrets vault on d's database, keyring and audit
// trail, and fills the server credentials the environment leaves empty
// from it (the environment wins; each vault read is audited as system).
func openVault(ctx context.Context, d *deps) error {
	pol, err := policies.AccessPolicy()
	if err != nil {
		return err
	}
	d.vault = vault.New(d.db, d.kr, d.audit, pol, d.cfg.Secrets, d.reg)
	if d.alerts != nil {
		d.vault.SetAlerter(d.alerts)
	}
	for _, c := range []struct {
		field *string
		name  string
	}{
		{&d.cfg.Auth.DiscordClientID, "discord_client_id"},
		{&d.cfg.Auth.DiscordClientSecret, "discord_client_secret"},
		{&d.cfg.Auth.DiscordRedirectURI, "discord_redirect_uri"},
	} {
		v, err := d.vault.Credential(ctx, *c.field, c.name)
		if err != nil {
			return fmt.Errorf("read the server credential %s from the secrets vault: %s", c.name, vectabase.ErrorMessage(err))
		}
		*c.field = v
	}
	return nil
}

// mountSecrets mounts the vault's routes and the audit log's admin routes.
func mountSecrets(d *deps, srv *server.Server) error {
	srv.Mount(secrets.Routes(d.vault, d.auth.RequireUser()))
	if d.auditLog != nil {
		srv.Mount(admin.AuditRoutes(d.auditLog, d.auth.RequireAdmin()))
	}
	srv.Mount(admin.HoneytokenRoutes(d.vault, d.auth.RequireAdmin()))
	if d.checkpoints != nil {
		srv.Mount(admin.CheckpointRoutes(d.checkpoints))
		if d.auditLog != nil {
			srv.Mount(admin.ProofRoutes(audit.NewProver(d.auditLog, d.checkpoints), d.auth.RequireAdmin()))
		}
	}
	return nil
}

// openCLI opens what the secrets and audit commands need without a
// server: the database, the keyring, the audit trail and the vault.
func openCLI(ctx context.Context) (*deps, error) {
	cfg, err := loadConfig(false)
	if err != nil {
		return nil, err
	}
	log, err := toolLogger(cfg, os.Stderr)
	if err != nil {
		return nil, err
	}
	if err := prepareSchema(ctx, cfg.Store, log, false); err != nil {
		return nil, err
	}
	db, err := store.Open(ctx, toolStore(cfg.Store, cfg.Store.ConnString(), 4), log, nil)
	if err != nil {
		return nil, err
	}
	d := &deps{cfg: cfg, log: log, reg: prometheus.NewRegistry(), db: db}
	d.closers = append(d.closers, db.Close)
	if d.kr, err = openKeyring(ctx, d); err != nil {
		d.close()
		return nil, err
	}
	d.auditLog = audit.New(db, d.kr, log, nil)
	d.closers = append(d.closers, d.auditLog.Close)
	d.audit = d.auditLog
	d.checkpoints = audit.NewCheckpointer(db, d.kr, cfg.Audit.Checkpoints, log)
	d.auditLog.SetArchive(auditArchiveDir(cfg), d.checkpoints)
	pol, err := policies.AccessPolicy()
	if err != nil {
		d.close()
		return nil, err
	}
	d.vault = vault.New(db, d.kr, d.auditLog, pol, cfg.Secrets, nil)
	// The CLI delivers no alerts itself (serve does, from the outbox);
	// it stores those it raises before it exits.
	d.alerts = alerts.New(db, d.auditLog, cfg.Alerts, log)
	d.closers = append(d.closers, d.alerts.Wait)
	d.vault.SetAlerter(d.alerts)
	d.auditLog.SetAlerter(d.alerts)
	return d, nil
}

// cliError turns a service error into one line for the operator.
func cliError(err error) error {
	var ve *vectabase.Error
	if errors.As(err, &ve) && ve.Code != vectabase.EINTERNAL {
		return errors.New(ve.Message)
	}
	return err
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// readValue reads a secret value from stdin: without echo from a terminal,
// otherwise everything up to EOF with one trailing newline removed (so
// `echo value | vectabase secrets put NAME` stores "value").
func readValue() ([]byte, error) {
	v, err := readStdin("value: ", vault.MaxValueBytes+2)
	if err != nil {
		return nil, fmt.Errorf("read the value from stdin: %w", err)
	}
	return v, nil
}

// readStdin reads from stdin without echo after prompt (on stderr) when
// stdin is a terminal, otherwise up to limit bytes until EOF, with one
// trailing newline removed.
func readStdin(prompt string, limit int64) ([]byte, error) {
	fd := int(os.Stdin.Fd())
	if term.IsTerminal(fd) {
		fmt.Fprint(os.Stderr, prompt)
		v, err := term.ReadPassword(fd)
		fmt.Fprintln(os.Stderr)
		return v, err
	}
	v, err := io.ReadAll(io.LimitReader(os.Stdin, limit))
	if err != nil {
		return nil, err
	}
	v = bytes.TrimSuffix(v, []byte("\n"))
	v = bytes.TrimSuffix(v, []byte("\r"))
	return v, nil
}

func newSecretsCmd() *cobra.Command {
	var asJSON bool
	var expected int
	run := func(fn func(ctx context.Context, svc *vault.Service, args []string) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			d, err := openCLI(cmd.Context())
			if err != nil {
				return err
			}
			defer d.close()
			return cliError(fn(cmd.Context(), d.vault, args))
		}
	}
	put := &cobra.Command{
		Use:   "put NAME [VALUE|-]",
		Short: "Write a new version of a secret (the value from stdin when '-' or absent)",
		Long: `Write a new version of a secret as the local operator. Give the value as
'-' or leave it out to read it from stdin (without echo on a terminal), so it
stays out of shell history. --expected-version N writes only if the current
version is N (0: only if the secret does not exist yet).`,
		Args: rangeArgs(1, 2),
		RunE: run(func(ctx context.Context, svc *vault.Service, args []string) error {
			var value []byte
			if len(args) == 2 && args[1] != "-" {
				value = []byte(args[1])
			} else {
				var err error
				if value, err = readValue(); err != nil {
					return err
				}
			}
			var exp *int
			if expected >= 0 {
				exp = &expected
			}
			m, err := svc.Put(ctx, vault.LocalOperator, args[0], value, exp)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(m)
			}
			fmt.Printf("%s: version %d\n", m.Name, m.Version)
			return nil
		}),
	}
	put.Flags().IntVar(&expected, "expected-version", -1, "write only if the current version is this (0: the secret must not exist)")
	var version int
	get := &cobra.Command{
		Use:   "get NAME",
		Short: "Print a secret's value (the current version, or --version N)",
		Args:  exactArgs(1),
		RunE: run(func(ctx context.Context, svc *vault.Service, args []string) error {
			v, err := svc.Get(ctx, vault.LocalOperator, args[0], version)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(map[string]any{"name": v.Name, "value": string(v.Value), "version": v.Version, "updatedAt": v.UpdatedAt})
			}
			os.Stdout.Write(v.Value)
			if term.IsTerminal(int(os.Stdout.Fd())) {
				fmt.Println()
			}
			return nil
		}),
	}
	get.Flags().IntVar(&version, "version", 0, "the version to read (0: the current one)")
	list := &cobra.Command{
		Use:   "list",
		Short: "List secrets: names and metadata, never values",
		Args:  exactArgs(0),
		RunE: run(func(ctx context.Context, svc *vault.Service, args []string) error {
			var all []vault.Metadata
			cursor := ""
			for {
				page, err := svc.List(ctx, vault.LocalOperator, 1000, cursor)
				if err != nil {
					return err
				}
				all = append(all, page.Items...)
				if page.NextCursor == nil {
					break
				}
				cursor = *page.NextCursor
			}
			if asJSON {
				return printJSON(map[string]any{"items": all})
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tVERSION\tUPDATED\tUPDATED BY")
			for _, m := range all {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", m.Name, m.Version, m.UpdatedAt.Format(time.RFC3339), m.UpdatedBy)
			}
			return tw.Flush()
		}),
	}
	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a secret and all its versions",
		Args:  exactArgs(1),
		RunE: run(func(ctx context.Context, svc *vault.Service, args []string) error {
			if err := svc.Delete(ctx, vault.LocalOperator, args[0]); err != nil {
				return err
			}
			if asJSON {
				return printJSON(map[string]any{"name": args[0], "deleted": true})
			}
			fmt.Printf("%s: deleted\n", args[0])
			return nil
		}),
	}
	versions := &cobra.Command{
		Use:   "versions NAME",
		Short: "List the stored versions of a secret, newest first",
		Args:  exactArgs(1),
		RunE: run(func(ctx context.Context, svc *vault.Service, args []string) error {
			vs, err := svc.Versions(ctx, vault.LocalOperator, args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(map[string]any{"items": vs})
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tCREATED\tCREATED BY")
			for _, v := range vs {
				fmt.Fprintf(tw, "%d\t%s\t%s\n", v.Version, v.CreatedAt.Format(time.RFC3339), v.CreatedBy)
			}
			return tw.Flush()
		}),
	}
	var off bool
	honeytoken := &cobra.Command{
		Use:   "honeytoken NAME",
		Short: "Mark a secret as a honeytoken: reading it returns its (decoy) value and raises an alert",
		Long: `Mark the secret NAME as a honeytoken (--off clears the mark). Store a
plausible decoy value first ('secrets put NAME'): a read returns it like any
other value, while an alert goes to ALERT_WEBHOOK_URL and the audit trail.`,
		Args: exactArgs(1),
		RunE: run(func(ctx context.Context, svc *vault.Service, args []string) error {
			if err := svc.SetHoneytoken(ctx, vault.LocalOperator, args[0], !off); err != nil {
				return err
			}
			if asJSON {
				return printJSON(map[string]any{"name": args[0], "honeytoken": !off})
			}
			fmt.Printf("%s: honeytoken %s\n", args[0], map[bool]string{true: "on", false: "off"}[!off])
			return nil
		}),
	}
	honeytoken.Flags().BoolVar(&off, "off", false, "clear the honeytoken mark")
	cmd := groupCmd("secrets", "The secrets vault, as the local operator (every call is audited)", put, get, list, del, versions, honeytoken)
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}
