package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newAuditCmd() *cobra.Command {
	var asJSON bool
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Check the audit log's hash chain end to end",
		Long: `Check every audit row's MAC and its link to the row before, and the chain
head that seals the newest row and the row count. Exits 1 naming the first
broken row when a row was changed, deleted, inserted or reordered.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := openCLI(cmd.Context())
			if err != nil {
				return err
			}
			defer d.close()
			res, err := d.auditLog.Verify(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				if err := printJSON(res); err != nil {
					return err
				}
			} else if res.OK {
				fmt.Printf("audit log OK: %d rows, chain intact\n", res.Rows)
			}
			if !res.OK {
				return fmt.Errorf("audit log broken at %s", res.Reason)
			}
			return nil
		},
	}
	verify.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return groupCmd("audit", "The audit trail", verify)
}
