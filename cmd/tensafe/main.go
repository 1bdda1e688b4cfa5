// Command tensafe is TenSafe's one binary: the training server, the
// quickstart, and the tools around it (privacy accounting, keys, audit,
// packages, models).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "tensafe:", err)
		os.Exit(exitCode(err))
	}
}

// exitError carries a specific exit status out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	if e, ok := err.(*exitError); ok {
		return e.code
	}
	return 1
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "tensafe",
		Short:         "Privacy-first fine-tuning: DP-SGD, encrypted artifacts, audited operations",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// Subcommands, one file each.
	root.AddCommand(
		newVersionCmd(),
		newPrivacyCmd(),
		newModelCmd(),
		newSampleCmd(),
		newQuickstartCmd(),
		newTokenizeCmd(),
		newKeysCmd(),
		newAuditCmd(),
		newHECmd(),
		newComplianceCmd(),
		newBenchCmd(),
		newPackageCmd(),
		newServeCmd(),
		newTrainCmd(),
	)
	return root
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the TenSafe version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), "tensafe", version)
			return nil
		},
	}
}
