package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vectabase/vectabase/vault/audit"
)

func newAuditCmd() *cobra.Command {
	return groupCmd("audit", "The audit trail", newAuditVerifyCmd(), newAuditCheckpointCmd(), newAuditProveCmd(), newAuditCheckProofCmd())
}

func newAuditCheckpointCmd() *cobra.Command {
	var key bool
	cp := &cobra.Command{
		Use:   "checkpoint",
		Short: "Sign and print a checkpoint of the audit log as it is now (--key: print the verifier key)",
		Long: `Print a new signed checkpoint (C2SP signed note) of the audit log, the same
document GET /api/audit/checkpoint serves; keep it somewhere the database's
administrators cannot rewrite. With --key, print the note verifier key
that checks checkpoints and proofs instead.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := openCLI(cmd.Context())
			if err != nil {
				return err
			}
			defer d.close()
			if key {
				vkey, _, err := d.checkpoints.VerifierKey(cmd.Context())
				if err != nil {
					return cliError(err)
				}
				fmt.Println(vkey)
				return nil
			}
			c, err := d.checkpoints.Sign(cmd.Context())
			if err != nil {
				return cliError(err)
			}
			fmt.Print(c.Note)
			return nil
		},
	}
	cp.Flags().BoolVar(&key, "key", false, "print the note verifier key instead")
	return cp
}

func newAuditVerifyCmd() *cobra.Command {
	var (
		asJSON     bool
		checkpoint string
		key        string
	)
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Check the audit log's hash chain end to end, and against a kept checkpoint",
		Long: `Check every audit row's MAC and its link to the row before, and the chain
head that seals the newest row and the row count. Exits 1 naming the first
broken row when a row was changed, deleted, inserted or reordered.

With --checkpoint FILE|URL (a signed checkpoint someone kept, e.g. from
GET /api/audit/checkpoint), also prove that the live log still holds that
checkpoint's rows unchanged and extends it: this catches what the chain
alone cannot see, such as deleting every row with the head, cutting the
newest rows, or restoring an older backup. --key pins the verifier key
(text, a file or a URL); by default the log's own key is used.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			var kept []byte
			var vkey string
			var err error
			if checkpoint != "" {
				if kept, err = readSource(cmd.Context(), checkpoint); err != nil {
					return err
				}
			}
			if key != "" {
				if vkey, err = readKey(cmd.Context(), key); err != nil {
					return err
				}
			}
			d, err := openCLI(cmd.Context())
			if err != nil {
				return err
			}
			defer d.close()
			if kept == nil {
				res, err := d.auditLog.Verify(cmd.Context())
				if err != nil {
					return err
				}
				return report(asJSON, res, res.OK, res.Reason, func() {
					fmt.Printf("audit log OK: %d rows, chain intact\n", res.Rows)
				})
			}
			res, err := d.auditLog.VerifyCheckpoint(cmd.Context(), d.checkpoints, kept, vkey)
			if err != nil {
				return cliError(err)
			}
			return report(asJSON, res, res.OK, res.Reason, func() {
				fmt.Printf("audit log OK: %d rows, chain intact, consistent with the kept checkpoint of %d rows\n", res.LogSize, res.CheckpointSize)
			})
		},
	}
	verify.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	verify.Flags().StringVar(&checkpoint, "checkpoint", "", "a kept signed checkpoint: a file, a URL, or - for stdin")
	verify.Flags().StringVar(&key, "key", "", "the note verifier key to trust: the key, a file or a URL")
	return verify
}

// report prints a verification result and turns a failure into exit 1.
func report(asJSON bool, res any, ok bool, reason string, human func()) error {
	if asJSON {
		if err := printJSON(res); err != nil {
			return err
		}
	} else if ok {
		human()
	}
	if !ok {
		return fmt.Errorf("audit log broken: %s", reason)
	}
	return nil
}

func newAuditProveCmd() *cobra.Command {
	var checkpoint, from string
	prove := &cobra.Command{
		Use:   "prove ROW_ID | prove --from FILE|URL",
		Short: "Print an inclusion proof for one audit row, or a consistency proof from a kept checkpoint",
		Long: `With ROW_ID, print (JSON) the proof that that audit row is in the log: the
row, its leaf index, the RFC 6962 inclusion proof and the signed checkpoint
it is proven against (--checkpoint FILE|URL: a kept one; default: a new
checkpoint of the log as it is now). With --from FILE|URL, print the proof
that the log now extends that kept checkpoint. Check either with
'vectabase audit check-proof', which needs no database; the README's
"Audit proofs" section documents the format.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if (len(args) == 1) == (from != "") {
				return usagef("give either ROW_ID or --from, not both")
			}
			if len(args) > 1 {
				return usagef("at most one ROW_ID")
			}
			if len(args) == 1 {
				if id, err := strconv.ParseInt(args[0], 10, 64); err != nil || id <= 0 {
					return usagef("ROW_ID: must be a positive integer")
				}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var kept []byte
			var err error
			if src := checkpoint + from; src != "" {
				if kept, err = readSource(ctx, src); err != nil {
					return err
				}
			}
			d, err := openCLI(ctx)
			if err != nil {
				return err
			}
			defer d.close()
			var p audit.Proof
			if from != "" {
				p, err = d.auditLog.ProveConsistency(ctx, d.checkpoints, kept)
			} else {
				id, _ := strconv.ParseInt(args[0], 10, 64)
				p, err = d.auditLog.ProveInclusion(ctx, d.checkpoints, id, kept)
			}
			if err != nil {
				return cliError(err)
			}
			return printJSON(p)
		},
	}
	prove.Flags().StringVar(&checkpoint, "checkpoint", "", "prove the row against this kept checkpoint (file, URL, -)")
	prove.Flags().StringVar(&from, "from", "", "print a consistency proof from this kept checkpoint (file, URL, -)")
	return prove
}

func newAuditCheckProofCmd() *cobra.Command {
	var proofSrc, checkpoint, key string
	var asJSON bool
	check := &cobra.Command{
		Use:   "check-proof --key KEY [--proof FILE] [--checkpoint FILE|URL]",
		Short: "Check an audit proof with only the log's public key (no database)",
		Long: `Check a proof printed by 'vectabase audit prove': its checkpoint must be
signed by --key (the note verifier key from GET /api/audit/checkpoint/key,
given as text, a file or a URL); an inclusion proof must put its row under
that checkpoint's root, and must be against --checkpoint when one is given;
a consistency proof must show that the log extends --checkpoint (required
then). Reads the proof from --proof (default: stdin). Needs no database,
no configuration and no secret.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if key == "" {
				return usagef("--key is required")
			}
			vkey, err := readKey(ctx, key)
			if err != nil {
				return err
			}
			raw, err := readSource(ctx, proofSrc)
			if err != nil {
				return err
			}
			var kept []byte
			if checkpoint != "" {
				if kept, err = readSource(ctx, checkpoint); err != nil {
					return err
				}
			}
			res, err := audit.CheckProof(raw, kept, vkey)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(res)
			}
			if res.Format == audit.InclusionFormat {
				fmt.Printf("proof OK: row %d is leaf of %s at %d rows\n", res.RowID, res.Origin, res.TreeSize)
			} else {
				fmt.Printf("proof OK: %s at %d rows extends the kept checkpoint of %d rows\n", res.Origin, res.TreeSize, res.FromSize)
			}
			return nil
		},
	}
	check.Flags().StringVar(&proofSrc, "proof", "-", "the proof (JSON): a file, a URL, or - for stdin")
	check.Flags().StringVar(&checkpoint, "checkpoint", "", "a kept signed checkpoint (file, URL, -)")
	check.Flags().StringVar(&key, "key", "", "the log's note verifier key: the key itself, a file or a URL")
	check.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return check
}

// readKey reads a note verifier key given as a URL, a file, or itself.
func readKey(ctx context.Context, s string) (string, error) {
	if !isURL(s) && !fileExists(s) && s != "-" {
		return strings.TrimSpace(s), nil
	}
	b, err := readSource(ctx, s)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func fileExists(s string) bool {
	_, err := os.Stat(s)
	return err == nil
}

func isURL(s string) bool { return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") }

// readSource reads a file, a URL (GET) or stdin ("-"), at most 16 MiB.
func readSource(ctx context.Context, src string) ([]byte, error) {
	const limit = 16 << 20
	var r io.Reader
	switch {
	case src == "-":
		r = os.Stdin
	case isURL(src):
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, fmt.Errorf("fetch %s: %w", req.URL.Redacted(), err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("fetch %s: status %d", req.URL.Redacted(), resp.StatusCode)
		}
		r = resp.Body
	default:
		f, err := os.Open(src)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if len(b) > limit {
		return nil, errors.New(src + ": larger than 16 MiB")
	}
	return b, nil
}
