package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/vectabase/vectabase/server/auth"
)

func newUsersCmd() *cobra.Command {
	var asJSON bool
	run := func(fn func(ctx context.Context, op *auth.Operator, args []string) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			d, err := openCLI(cmd.Context())
			if err != nil {
				return err
			}
			defer d.close()
			return cliError(fn(cmd.Context(), auth.NewOperator(d.db, d.auditLog, auth.OWASPArgon2), args))
		}
	}
	createAdmin := &cobra.Command{
		Use:   "create-admin EMAIL",
		Short: "Create an admin user (password from stdin, or generated and printed once)",
		Long: `Create a user with the admin role, audited as the local operator: the
way in after 'import-supabase --replace', or when every admin is locked out.

The password is read from stdin: without echo on a terminal, otherwise
everything up to EOF with one trailing newline dropped. An empty password
(or no stdin) makes one up and prints it once as 'admin password: ...'.
An email that already has a user is refused (exit 1): promote that user
with 'vectabase users set-role EMAIL admin', which keeps its password.`,
		Args: exactArgs(1),
		RunE: run(func(ctx context.Context, op *auth.Operator, args []string) error {
			password, err := readSecret("password (empty: generate one): ", 4096)
			if err != nil {
				return err
			}
			generated := len(password) == 0
			if generated {
				pw, err := auth.RandomPassword(24)
				if err != nil {
					return err
				}
				password = []byte(pw)
			}
			u, err := op.CreateAdmin(ctx, args[0], string(password))
			if err != nil {
				return err
			}
			if asJSON {
				out := map[string]any{"id": u.ID, "email": u.Email, "role": u.Role}
				if generated {
					out["password"] = string(password)
				}
				return printJSON(out)
			}
			fmt.Printf("admin email: %s\n", *u.Email)
			if generated {
				fmt.Printf("admin password: %s\n", password)
			}
			return nil
		}),
	}
	setRole := &cobra.Command{
		Use:   "set-role EMAIL admin|user",
		Short: "Change a user's role (admin, developer or user); it holds from the user's next request",
		Args: func(cmd *cobra.Command, args []string) error {
			if err := exactArgs(2)(cmd, args); err != nil {
				return err
			}
			if !slices.Contains(auth.Roles, args[1]) {
				return usagef("role %q is not one of %s", args[1], strings.Join(auth.Roles, ", "))
			}
			return nil
		},
		RunE: run(func(ctx context.Context, op *auth.Operator, args []string) error {
			u, previous, err := op.SetRole(ctx, args[0], args[1])
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(map[string]any{"id": u.ID, "email": u.Email, "role": u.Role, "previousRole": previous})
			}
			fmt.Printf("%s: role %s (was %s)\n", *u.Email, u.Role, previous)
			return nil
		}),
	}
	cmd := groupCmd("users", "User administration as the local operator (every change is audited)", createAdmin, setRole)
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

// readSecret reads a password or secret value from stdin: without echo
// from a terminal (after prompt, on stderr), otherwise everything up to EOF
// (at most limit bytes) with one trailing newline removed. A closed stdin
// reads as empty.
func readSecret(prompt string, limit int64) ([]byte, error) {
	v, err := readStdin(prompt, limit+1)
	if errors.Is(err, syscall.EBADF) || errors.Is(err, os.ErrClosed) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read from stdin: %w", err)
	}
	if int64(len(v)) > limit {
		return nil, fmt.Errorf("stdin holds more than %d bytes", limit)
	}
	return v, nil
}
