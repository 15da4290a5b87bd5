// Command vectabase is the whole product in one binary: the API server, the
// embedded development mode, migrations, key management and the tools
// around them. main only wires; the work lives in the packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	os.Exit(realMain())
}

// usageError is a mistake in how the command was called: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

func realMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) || isCobraUsageError(err) {
		fmt.Fprintf(os.Stderr, "vectabase: %s (see 'vectabase -h')\n", oneLine(err.Error()))
		return 2
	}
	fmt.Fprintf(os.Stderr, "vectabase: %s\n", oneLine(err.Error()))
	return 1
}

// isCobraUsageError recognises the errors cobra itself returns for bad
// arguments before any RunE runs.
func isCobraUsageError(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "flag needs an argument", "invalid argument", "accepts ", "requires at least", "requires at most", "required flag"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "vectabase",
		Short:         "Self-hosted backend on PostgreSQL with operator-held keys",
		SilenceErrors: true,
		SilenceUsage:  true,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
	}
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return usageError{err.Error()} })
	root.AddCommand(
		newDevCmd(),
		newServeCmd(),
		newMigrateCmd(),
		newVersionCmd(),
		newBackupCmd(),
		newSecretsCmd(),
		newAuditCmd(),
		newImportSupabaseCmd(),
		newKeysCmd(),
		newDiscordCmd(),
		newUsersCmd(),
	)
	return root
}

// groupCmd is a command that only holds subcommands: called alone or with
// an unknown subcommand it is a usage error.
func groupCmd(use, short string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return usagef("%s needs a subcommand", cmd.CommandPath())
		},
		RunE: func(cmd *cobra.Command, args []string) error { return nil },
	}
	c.AddCommand(subs...)
	return c
}

// exactArgs is cobra.ExactArgs with our usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s takes %d argument(s), got %d", cmd.CommandPath(), n, len(args))
		}
		return nil
	}
}

// rangeArgs is cobra.RangeArgs with our usage error.
func rangeArgs(lo, hi int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < lo || len(args) > hi {
			return usagef("%s takes %d to %d argument(s), got %d", cmd.CommandPath(), lo, hi, len(args))
		}
		return nil
	}
}
