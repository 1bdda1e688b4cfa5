package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"

	"github.com/spf13/cobra"

	"github.com/tensafe/tensafe/compliance"
)

// Exit statuses of compliance scan.
const (
	complianceExitFound = 1 // PII or secrets were found
	complianceExitError = 2 // the scan could not be done
)

func newComplianceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "compliance",
		Short: "Scan datasets, logs and artifacts for personal data and secrets",
	}
	cmd.AddCommand(newComplianceScanCmd())
	return cmd
}

func newComplianceScanCmd() *cobra.Command {
	var (
		asJSON      bool
		region      string
		skipPII     bool
		skipSecrets bool
		maxFindings int
	)
	cmd := &cobra.Command{
		Use:   "scan PATH... [--json]",
		Short: "Find personal data and secrets in files and directories",
		Long: `Scan reads files (JSONL, CSV, plain text; directories recursively) and
reports e-mail addresses, phone numbers, payment cards, US SSNs, IBANs, IPv4
and IPv6 addresses, dates of birth, private keys, provider API tokens, JWTs,
high-entropy strings and secrets in .env files (docs/compliance/SCANNERS.md).

Findings are reported by type and location (file, line, column); the matched
values are never printed. Counts per type are always exact; --max-findings
bounds how many locations are listed.

Exit status: 0 when nothing was found, 1 when PII or secrets were found,
2 when the scan could not be done (the reason is on stderr).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := compliance.NewScanner(compliance.Options{
				PhoneRegion: region, SkipPII: skipPII, SkipSecrets: skipSecrets, MaxFindings: maxFindings,
			})
			if err != nil {
				return &exitError{complianceExitError, err}
			}
			rep, err := s.ScanPaths(cmd.Context(), args...)
			if err != nil {
				return &exitError{complianceExitError, err}
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return &exitError{complianceExitError, err}
				}
			} else {
				writeScanText(out, rep)
			}
			if !rep.Clean() {
				return &exitError{complianceExitFound, fmt.Errorf("compliance scan: found %d PII and %d secret findings", rep.PII, rep.Secrets)}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON (format "+compliance.ReportFormat+")")
	cmd.Flags().StringVar(&region, "region", "US", "region assumed for phone numbers without a +country code")
	cmd.Flags().BoolVar(&skipPII, "no-pii", false, "do not look for personal data")
	cmd.Flags().BoolVar(&skipSecrets, "no-secrets", false, "do not look for secrets")
	cmd.Flags().IntVar(&maxFindings, "max-findings", 10000, "list at most this many findings (counts stay exact; 0 lists all)")
	return cmd
}

func writeScanText(w io.Writer, rep *compliance.Report) {
	for _, f := range rep.Findings {
		fmt.Fprintf(w, "%s:%d:%d: %s (%s)\n", f.File, f.Line, f.Column, f.Kind, f.Kind.Category())
	}
	for _, s := range rep.Skipped {
		fmt.Fprintf(w, "skipped %s: %s\n", s.File, s.Reason)
	}
	kinds := make([]string, 0, len(rep.Counts))
	for k := range rep.Counts {
		kinds = append(kinds, string(k))
	}
	sort.Strings(kinds)
	if rep.FindingsOmitted > 0 {
		fmt.Fprintf(w, "%d more findings not listed (--max-findings)\n", rep.FindingsOmitted)
	}
	fmt.Fprintf(w, "scanned %d files, %d bytes: %d PII, %d secrets\n", rep.Files, rep.Bytes, rep.PII, rep.Secrets)
	for _, k := range kinds {
		fmt.Fprintf(w, "  %-22s %d\n", k, rep.Counts[compliance.Kind(k)])
	}
}
