package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/vectabase/vectabase"
	"github.com/vectabase/vectabase/keyring"
	"github.com/vectabase/vectabase/keyring/kekconfig"
	"github.com/vectabase/vectabase/keyring/local"
	"github.com/vectabase/vectabase/keyring/pkcs11"
	"github.com/vectabase/vectabase/server/rotation"
	"github.com/vectabase/vectabase/store"
	"github.com/vectabase/vectabase/store/backup"
	"github.com/vectabase/vectabase/vault/audit"
)

// newRotationService builds the key-rotation service on d's keyring. When
// the KEK's backend can rotate the key in place (Vault transit: a new key
// version) the service can too; another KEK is replaced only from the
// command line (keys rotate-kek).
func newRotationService(d *deps) (*rotation.Service, error) {
	var opts []rotation.Option
	if r, ok := keyring.RotatorOf(d.kek); ok {
		kek := d.kek
		opts = append(opts, rotation.WithKEKRotator(func(ctx context.Context) (keyring.KEK, error) {
			if err := r.RotateKey(ctx); err != nil {
				return nil, err
			}
			return kek, nil
		}))
	}
	if d.alerts != nil {
		opts = append(opts, rotation.WithAlerter(d.alerts))
	}
	rot, err := rotation.New(d.cfg.Rotation, d.db, d.kr, d.audit, d.log, d.reg, opts...)
	if err != nil {
		return nil, err
	}
	d.rot = rot
	return rot, nil
}

// startRotationWorker runs the re-encryption worker and the periodic
// keyset reload in the background until the server stops.
func startRotationWorker(ctx context.Context, d *deps) {
	if d.cfg.Rotation.Disabled {
		d.log.Info().Msg("rotation worker disabled (ROTATION_WORKER_DISABLED)")
	}
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		// Every instance watches for stalled jobs, also one that runs no
		// worker: a job no instance works on is a stall (ROTATION_STALL_AFTER).
		defer wg.Done()
		d.rot.WatchStalls(wctx)
	}()
	go func() {
		defer wg.Done()
		if d.cfg.Rotation.Disabled {
			// Still reload keysets, so this instance follows rotations.
			t := time.NewTicker(max(d.cfg.Rotation.ReloadInterval, time.Second))
			defer t.Stop()
			for {
				select {
				case <-wctx.Done():
					return
				case <-t.C:
					_, _ = d.kr.Status(wctx)
				}
			}
		}
		_ = d.rot.Run(wctx)
	}()
	d.closers = append(d.closers, func() { cancel(); wg.Wait() })
}

// openKeys opens what every `keys` subcommand needs: the database (schema
// must be current), the keyring and the rotation service.
func openKeys(ctx context.Context) (*deps, error) {
	cfg, err := loadConfig(false)
	if err != nil {
		return nil, err
	}
	return openKeysWith(ctx, cfg)
}

// openKeysWith is openKeys with a configuration already loaded (and
// perhaps acted on, as keys init creates the master key file first).
func openKeysWith(ctx context.Context, cfg Config) (*deps, error) {
	// Progress goes to the terminal; routine log lines would garble it.
	log, err := toolLogger(cfg, os.Stderr)
	if err != nil {
		return nil, err
	}
	if err := prepareSchema(ctx, cfg.Store, log, false); err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	db, err := store.Open(ctx, toolStore(cfg.Store, cfg.Store.ConnString(), cfg.Store.MaxConns), log, reg)
	if err != nil {
		return nil, err
	}
	d := &deps{cfg: cfg, log: log, reg: reg, db: db}
	d.closers = append(d.closers, db.Close)
	kr, err := openKeyring(ctx, d)
	if err != nil {
		d.close()
		return nil, err
	}
	d.kr = kr
	// Key operations from the command line go to the same hash-chained
	// audit trail as the server's; Close (a closer) flushes it.
	d.auditLog = audit.New(db, kr, log, nil)
	d.closers = append(d.closers, d.auditLog.Close)
	d.audit = d.auditLog
	if _, err := newRotationService(d); err != nil {
		d.close()
		return nil, err
	}
	return d, nil
}

func newKeysCmd() *cobra.Command {
	return groupCmd("keys", "Key management: init, status, rotation of data keys and of the master key",
		newKeysInitCmd(), newKeysStatusCmd(), newKeysRotateDEKCmd(), newKeysRotateKEKCmd(),
		newKeysReencryptCmd(), newKeysDestroyOldCmd(), newKeysSealPersonalCmd())
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newKeysInitCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create the master key (local key file or PKCS#11 key) and the keysets, if missing",
		Long: `Create the local master key file named by KEYRING_MASTER_KEY_FILE when it
does not exist (32 random bytes, base64, mode 0600) or, with
KEYRING_BACKEND=pkcs11, the AES-256 key PKCS11_KEY_LABEL inside the token
(sensitive, not extractable), then create the wrapped keysets in the
database. Running it again changes nothing.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cfg, err := loadConfig(false)
			if err != nil {
				return err
			}
			created, hsmCreated := false, false
			if cfg.Keyring.Backend == "pkcs11" {
				// The KEK is generated inside the token: AES-256,
				// sensitive, never extractable.
				kc := cfg.Keyring
				if hsmCreated, err = pkcs11.GenerateKey(pkcs11.Config{Module: kc.PKCS11Module, TokenLabel: kc.PKCS11TokenLabel,
					PINFile: kc.PKCS11PINFile, KeyLabel: kc.PKCS11KeyLabel}); err != nil {
					return err
				}
			}
			if cfg.Keyring.Backend == "local" && cfg.Keyring.MasterKeyFile != "" && cfg.Keyring.Passphrase == "" {
				if _, err := os.Stat(cfg.Keyring.MasterKeyFile); errors.Is(err, os.ErrNotExist) {
					if err := local.GenerateKeyFile(cfg.Keyring.MasterKeyFile); err != nil {
						return err
					}
					created = true
				}
			}
			d, err := openKeysWith(ctx, cfg)
			if err != nil {
				return err
			}
			defer d.close()
			// Every key operation is audited; one whose row cannot be
			// written says so (the keysets exist either way).
			if err := d.audit.Record(ctx, vectabase.AuditEvent{Time: time.Now(), ActorType: vectabase.ActorLocalOperator,
				Action: "keys.init", ResourceType: "keyring", Result: vectabase.ResultSuccess,
				Details: map[string]any{"masterKeyFileCreated": created, "pkcs11KeyCreated": hsmCreated}}); err != nil {
				return fmt.Errorf("keys init: audit: %w", err)
			}
			st, err := d.kr.Status(ctx)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"masterKeyFileCreated": created, "pkcs11KeyCreated": hsmCreated, "status": st})
			}
			if created {
				fmt.Fprintf(cmd.OutOrStdout(), "created master key file %s (keep a copy somewhere safe: without it no value can be read)\n", cfg.Keyring.MasterKeyFile)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "keyring ready: KEK %s %s, primary data key %d\n", st.KEKBackend, st.KEKKeyID, d.kr.PrimaryKeyID())
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

func newKeysStatusCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show keysets, primary key ids, the KEK, ciphertexts per data key and rotation progress",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := openKeys(cmd.Context())
			if err != nil {
				return err
			}
			defer d.close()
			v, err := d.rot.Keys(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), v)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "KEK: %s %s\n", v.KEKBackend, v.KEKKeyID)
			for _, ks := range v.Keysets {
				fmt.Fprintf(w, "keyset %-5s purpose %-4s primary %d, %d key(s), version %d, wrapped by KEK %s %s%s\n",
					ks.Name, ks.Purpose, ks.PrimaryKeyID, len(ks.Keys), ks.Version, ks.KEKBackend, ks.KEKKeyID, optional(" key version ", ks.KEKKeyVersion))
			}
			for _, k := range v.DataKeys {
				mark := ""
				if k.Primary {
					mark = " (primary)"
				}
				fmt.Fprintf(w, "data key %d%s: %d ciphertexts\n", k.KeyID, mark, k.Ciphertexts)
			}
			for _, k := range v.Unknown {
				fmt.Fprintf(w, "unknown key %d: %d ciphertexts that no key can decrypt\n", k.KeyID, k.Ciphertexts)
			}
			if j := v.Rotation.Job; j != nil {
				fmt.Fprintf(w, "rotation %s: %s, target key %d, %d re-encrypted, %d pending, pass %d, %d/%d columns done\n",
					j.ID, j.State, j.TargetKeyID, j.Reencrypted, v.Rotation.PendingValues, j.Pass, j.UnitsDone, j.Units)
			} else {
				fmt.Fprintln(w, "rotation: none yet")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

func newKeysRotateDEKCmd() *cobra.Command {
	var asJSON, wait bool
	cmd := &cobra.Command{
		Use:   "rotate-dek",
		Short: "Make a new primary data key and start re-encrypting every value to it",
		Long: `Make a new primary data key. New writes use it at once on this instance and
within ROTATION_RELOAD_INTERVAL on running servers; the re-encryption worker
of a running server (or 'vectabase keys reencrypt', or --wait here) then
re-encrypts every stored value to it.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := openKeys(cmd.Context())
			if err != nil {
				return err
			}
			defer d.close()
			job, err := d.rot.RotateDEK(cmd.Context(), rotation.LocalOperator)
			if err != nil {
				return err
			}
			if wait {
				job, err = runReencrypt(cmd, d, job, asJSON)
				if err != nil {
					return err
				}
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), job)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "new primary data key %d; rotation job %s (%s, %d values to re-encrypt)\n",
				job.TargetKeyID, job.ID, job.State, job.PendingAtStart)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	cmd.Flags().BoolVar(&wait, "wait", false, "re-encrypt here until the job is done")
	return cmd
}

func newKeysReencryptCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "reencrypt",
		Short: "Re-encrypt every stored value to the primary data key (resumes a running job)",
		Long: `Work on the running rotation job until it is done, beside any running server
(work is shared, never done twice at once). Without a running job it starts
one when stored values are under an older key. Safe to interrupt or kill: it
resumes from the progress recorded with each batch.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := openKeys(cmd.Context())
			if err != nil {
				return err
			}
			defer d.close()
			job, err := d.rot.EnsureJob(cmd.Context(), rotation.LocalOperator)
			if errors.Is(err, store.ErrNotFound) {
				if asJSON {
					return writeJSON(cmd.OutOrStdout(), map[string]any{"state": "nothing to do", "primaryKeyId": d.kr.PrimaryKeyID()})
				}
				fmt.Fprintf(cmd.OutOrStdout(), "every stored value is under the primary data key %d: nothing to re-encrypt\n", d.kr.PrimaryKeyID())
				return nil
			}
			if err != nil {
				return err
			}
			job, err = runReencrypt(cmd, d, job, asJSON)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), job)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rotation job %s %s: %d values re-encrypted to key %d in %d passes\n",
				job.ID, job.State, job.Reencrypted, job.TargetKeyID, job.Pass)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

// runReencrypt runs the worker on job with a progress bar on a terminal
// and a plain line at most every second otherwise. A job that ends failed
// is an error (exit 1).
func runReencrypt(cmd *cobra.Command, d *deps, job store.RotationJob, quiet bool) (store.RotationJob, error) {
	errw := cmd.ErrOrStderr()
	onBatch := progressPrinter(errw, job.PendingAtStart, quiet)
	job, err := d.rot.RunJob(cmd.Context(), job.ID, onBatch)
	if err != nil {
		return job, err
	}
	if job.State == store.JobFailed {
		return job, fmt.Errorf("rotation job %s failed: %s", job.ID, job.Error)
	}
	return job, nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func progressPrinter(w io.Writer, total int64, quiet bool) func(rotation.Progress) {
	if isTerminal(w) && !quiet {
		bar := progressbar.NewOptions64(max(total, 1),
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription("re-encrypting"),
			progressbar.OptionShowCount(),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
		)
		return func(p rotation.Progress) {
			if p.Job == nil {
				return
			}
			if p.Job.State != store.JobRunning {
				_ = bar.Finish()
				return
			}
			_ = bar.Set64(min(p.Job.Reencrypted, max(total, 1)))
		}
	}
	var last time.Time
	return func(p rotation.Progress) {
		if p.Job == nil || (time.Since(last) < time.Second && p.Job.State == store.JobRunning) {
			return
		}
		last = time.Now()
		fmt.Fprintf(w, "re-encrypt: %d/%d values (%.1f%%), pass %d, %d/%d columns done, %s\n",
			p.Job.Reencrypted, p.Job.PendingAtStart, p.PercentDone, p.Job.Pass, p.Job.UnitsDone, p.Job.Units, p.Job.State)
	}
}

func newKeysDestroyOldCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "destroy-old",
		Short: "Destroy the old data keys once no stored ciphertext uses them",
		Long: `Destroy every data key but the primary. It refuses (exit 1) and shows how
many stored ciphertexts still use each old key when any does, or while a
re-encryption job runs.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := openKeys(cmd.Context())
			if err != nil {
				return err
			}
			defer d.close()
			res, err := d.rot.DestroyOld(cmd.Context(), rotation.LocalOperator)
			if err != nil {
				if asJSON && len(res.InUse) > 0 {
					_ = writeJSON(cmd.OutOrStdout(), res)
				} else {
					for _, k := range res.InUse {
						fmt.Fprintf(cmd.OutOrStdout(), "data key %d: %d ciphertexts still use it\n", k.KeyID, k.Ciphertexts)
					}
				}
				return cliError(err)
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			if len(res.Destroyed) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no old data keys to destroy")
				return nil
			}
			for _, id := range res.Destroyed {
				fmt.Fprintf(cmd.OutOrStdout(), "destroyed data key %d\n", id)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

func newKeysRotateKEKCmd() *cobra.Command {
	var asJSON, passStdin bool
	var newKeyFile, to string
	cmd := &cobra.Command{
		Use:   "rotate-kek",
		Short: "Re-wrap the keysets under a new master key (KEK) without touching data",
		Long: `Re-wrap every keyset under a new KEK; no stored value changes. Give the new
local KEK as --new-key-file PATH (created when it does not exist) or as a new
passphrase (--new-passphrase-stdin, or KEYRING_NEW_PASSPHRASE). With
KEYRING_BACKEND=vault it rotates the transit key and re-wraps under its new
version. The keysets are replaced in one transaction only after the new KEK
has read back its own wrap, so a failure leaves every value readable with the
old KEK. Afterwards, point KEYRING_MASTER_KEY_FILE (or KEYRING_PASSPHRASE) of
every instance at the new key.

--to BACKEND[:KEY] moves the keysets to another backend (or another key of
one): awskms (AWS_KMS_KEY_ID) or awskms:arn:aws:kms:..., pkcs11 (the PKCS11_*
variables) or pkcs11:token/key, vault or vault:mount/key, local:/path/new.key.
Running it again with the same target is harmless, so an interrupted move is
resumed by running it again. Afterwards set KEYRING_BACKEND and its variables
to the new KEK on every instance and list the old one in
KEYRING_PREVIOUS_KEKS, so backups made before the move stay restorable.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cfg, err := loadConfig(false)
			if err != nil {
				return err
			}
			newPass := os.Getenv("KEYRING_NEW_PASSPHRASE")
			if passStdin {
				line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if err != nil && !errors.Is(err, io.EOF) {
					return fmt.Errorf("read the new passphrase from stdin: %w", err)
				}
				newPass = strings.TrimRight(line, "\r\n")
				if newPass == "" {
					return usagef("--new-passphrase-stdin: stdin gave an empty passphrase")
				}
			}
			vault := cfg.Keyring.Backend == "vault" && to == ""
			n := 0
			for _, set := range []bool{newKeyFile != "", newPass != "", vault, to != ""} {
				if set {
					n++
				}
			}
			if n != 1 {
				return usagef("rotate-kek needs exactly one new KEK: --to BACKEND[:KEY], --new-key-file, a new passphrase, or KEYRING_BACKEND=vault")
			}
			d, err := openKeysWith(ctx, cfg)
			if err != nil {
				return err
			}
			defer d.close()
			// The backups' service opens kept backups with the KEK being
			// replaced; it is built before the rotation changes anything.
			bsvc, err := newBackupService(ctx, d, backup.WithAuditor(d.audit))
			if err != nil {
				return err
			}
			var job store.RotationJob
			// next is the KEK the keysets move to (kept backups follow it
			// where they are re-wrapped).
			var next keyring.KEK
			switch {
			case to != "":
				next, err = kekconfig.FromSpec(ctx, to, cfg.Keyring, store.NewKeysets(d.db.Pool), kekconfig.WithRegisterer(d.reg))
				if err != nil {
					return err
				}
				if c, ok := next.(io.Closer); ok {
					defer c.Close()
				}
				job, err = d.rot.RotateKEK(ctx, rotation.LocalOperator, next)
			case vault:
				job, err = d.rot.RotateKEKInPlace(ctx, rotation.LocalOperator)
				// The transit key's new version wraps from now on.
				next = d.kek
			default:
				if newKeyFile != "" {
					if _, serr := os.Stat(newKeyFile); errors.Is(serr, os.ErrNotExist) {
						if err := local.GenerateKeyFile(newKeyFile); err != nil {
							return err
						}
					}
					next, err = local.NewFromFile(newKeyFile)
				} else {
					var salt []byte
					salt, err = keyring.PassphraseSalt(ctx, store.NewKeysets(d.db.Pool))
					if err == nil {
						next, err = local.NewFromPassphrase(newPass, salt)
					}
				}
				if err != nil {
					return err
				}
				job, err = d.rot.RotateKEK(ctx, rotation.LocalOperator, next)
			}
			if err != nil {
				return fmt.Errorf("rotate-kek failed, the keysets are unchanged and readable with the old KEK: %w", err)
			}
			st, err := d.kr.Status(ctx)
			if err != nil {
				return err
			}
			// Kept backups follow the keysets, so the old KEK can be
			// retired without leaving backups only it opens.
			rw, rwErr := bsvc.RewrapAll(ctx, backup.LocalOperator, next)
			if asJSON {
				if err := writeJSON(cmd.OutOrStdout(), map[string]any{"job": job, "kekBackend": st.KEKBackend, "kekKeyId": st.KEKKeyID, "backups": rw}); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "keysets re-wrapped under KEK %s %s\n", st.KEKBackend, st.KEKKeyID)
				fmt.Fprintf(cmd.OutOrStdout(), "%d backup(s) in %s re-wrapped under the new KEK\n", len(rw.Rewrapped), bsvc.Config().Dir)
			}
			if rwErr != nil {
				return fmt.Errorf("the keysets are re-wrapped, but re-wrapping the backups stopped: %w", rwErr)
			}
			if len(rw.Failed) > 0 {
				ids := make([]string, 0, len(rw.Failed))
				for id, why := range rw.Failed {
					fmt.Fprintf(cmd.ErrOrStderr(), "backup %s not re-wrapped: %s\n", id, why)
					ids = append(ids, id)
				}
				sort.Strings(ids)
				return fmt.Errorf("the keysets are re-wrapped, but %d backup(s) are still under an older KEK (%s): keep that KEK to restore them, or delete them", len(ids), strings.Join(ids, ", "))
			}
			if asJSON {
				return nil
			}
			switch {
			case to != "":
				fmt.Fprintf(cmd.OutOrStdout(), "set KEYRING_BACKEND=%s and its variables on every instance, list the old KEK in KEYRING_PREVIOUS_KEKS, and restart them\n", st.KEKBackend)
			case newKeyFile != "":
				fmt.Fprintf(cmd.OutOrStdout(), "set KEYRING_MASTER_KEY_FILE=%s on every instance and restart them\n", newKeyFile)
			case newPass != "":
				fmt.Fprintln(cmd.OutOrStdout(), "set the new KEYRING_PASSPHRASE on every instance and restart them")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	cmd.Flags().StringVar(&to, "to", "", "move the keysets to this KEK: BACKEND or BACKEND:KEY (awskms, pkcs11, vault, local:/path)")
	cmd.Flags().StringVar(&newKeyFile, "new-key-file", "", "path of the new local master key file (created when missing)")
	cmd.Flags().BoolVar(&passStdin, "new-passphrase-stdin", false, "read the new passphrase from the first line of stdin")
	return cmd
}

// optional is prefix+v, or nothing when v is empty.
func optional(prefix, v string) string {
	if v == "" {
		return ""
	}
	return prefix + v
}
