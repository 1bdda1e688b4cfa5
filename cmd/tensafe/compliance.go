package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/client"
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
		Short: "Scan for personal data and secrets, minimize datasets, build evidence packs",
	}
	cmd.AddCommand(newComplianceScanCmd(), newComplianceFilterCmd(), newComplianceEvidenceCmd())
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

func newComplianceFilterCmd() *cobra.Command {
	var (
		out, policyPath, reportPath, region string
		dropFields                          []string
	)
	cmd := &cobra.Command{
		Use:   "filter IN.jsonl --out OUT.jsonl [--policy FILE] [--drop-fields a,b]",
		Short: "Minimize a JSONL dataset with a PII policy and write a minimization report",
		Long: `filter reads a JSONL dataset (one JSON object per line), removes the --drop-fields
(dotted paths reach nested fields), and applies a PII policy to every string value: per
personal-data kind allow, redact (the match becomes "[REDACTED:<kind>]") or drop-example, and one
action for every secret kind. Without --policy the default policy redacts e-mail addresses, phone
numbers, IP addresses and dates of birth, and drops examples holding payment cards, US SSNs,
IBANs or secrets (docs/compliance/EVIDENCE.md, "Data minimization").

It writes OUT.jsonl and a report (default OUT.jsonl.minimization.json): fields dropped, examples
dropped and values redacted per kind, the SHA-256 of input and output and of the policy. The
report holds counts and hashes, never a value; ` + "`tensafe compliance evidence --minimization`" + ` reads it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return errors.New("compliance filter: --out is required")
			}
			p := compliance.DefaultPolicy()
			if policyPath != "" {
				b, err := os.ReadFile(policyPath)
				if err != nil {
					return fmt.Errorf("compliance filter: --policy: %w", err)
				}
				if p, err = compliance.ParsePolicy(b); err != nil {
					return fmt.Errorf("compliance filter: --policy %s: %w", policyPath, err)
				}
			}
			for _, f := range dropFields {
				if f = strings.TrimSpace(f); f != "" {
					p.DropFields = append(p.DropFields, f)
				}
			}
			if reportPath == "" {
				reportPath = out + ".minimization.json"
			}
			rep, err := runFilter(cmd.Context(), args[0], out, p, region)
			if err != nil {
				return err
			}
			b, err := json.MarshalIndent(rep, "", "  ")
			if err != nil {
				return err
			}
			if err := writeAtomic(reportPath, append(b, '\n')); err != nil {
				return fmt.Errorf("compliance filter: report: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d examples in, %d out (%d dropped); report %s\n",
				rep.ExamplesIn, rep.ExamplesOut, rep.ExamplesDropped, reportPath)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "where to write the minimized dataset (required)")
	f.StringVar(&policyPath, "policy", "", "PII policy file (JSON, format "+compliance.PolicyFormat+"; default: the built-in policy)")
	f.StringSliceVar(&dropFields, "drop-fields", nil, "fields removed from every example (comma-separated; a.b for nested)")
	f.StringVar(&reportPath, "report", "", "where to write the minimization report (default OUT.minimization.json)")
	f.StringVar(&region, "region", "US", "region assumed for phone numbers without a +country code")
	return cmd
}

// runFilter minimizes in into out (written to a temporary file, renamed
// into place on success).
func runFilter(ctx context.Context, in, out string, p compliance.Policy, region string) (*compliance.MinimizationReport, error) {
	s, err := compliance.NewScanner(compliance.Options{PhoneRegion: region})
	if err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	src, err := os.Open(in)
	if err != nil {
		return nil, fmt.Errorf("compliance filter: %w", err)
	}
	defer src.Close()
	if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
		return nil, fmt.Errorf("compliance filter: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), ".filter-*")
	if err != nil {
		return nil, fmt.Errorf("compliance filter: %w", err)
	}
	defer os.Remove(tmp.Name())
	rep, err := s.Minimize(ctx, src, tmp, p)
	if err != nil {
		tmp.Close()
		return nil, fmt.Errorf("compliance filter: %s: %w", in, err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("compliance filter: %w", err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return nil, fmt.Errorf("compliance filter: %w", err)
	}
	rep.Input, rep.Output, rep.CreatedAt = filepath.Base(in), filepath.Base(out), time.Now().UTC()
	return rep, nil
}

func writeAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

type evidenceOptions struct {
	server, apiKey, apiKeyFile, out, region string
	scan, minimization                      []string
	keyRotationDays                         float64
	eventsSince                             time.Duration // 0: every event
}

func newComplianceEvidenceCmd() *cobra.Command {
	var o evidenceOptions
	cmd := &cobra.Command{
		Use:   "evidence [--server URL --api-key KEY] --out DIR [--scan PATH...] [--minimization REPORT...]",
		Short: "Build a compliance evidence pack from a running deployment",
		Long: `evidence collects what a running TenSafe deployment measures of its controls
(GET /api/v1/compliance/metrics: artifacts opened and authenticated, the audit log verified,
key ages, retention, DP per training client, a determinism run), its compliance events, PII and
secrets scans of the --scan paths (recorded in the server's audit log as PII_SCAN and
SECRETS_SCAN events) and the --minimization reports of ` + "`tensafe compliance filter`" + `, and writes
an evidence pack to --out (default reports/compliance/<id>/): metrics.json, evidence.json,
evidence.md, events.json, pii_scan.json, secrets_scan.json. Every control's status (Evidence
Present, Partial, Gap) is computed from those measurements (docs/compliance/CONTROL_MATRIX.md).

The API key (an admin key; the operator's sees the whole deployment) comes from --api-key,
--api-key-file or $TENSAFE_API_KEY; it is never written to the pack. Without --server only the
scans and reports are evaluated and every deployment control is a Gap.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, dir, err := runEvidence(cmd.Context(), o)
			if err != nil {
				return err
			}
			e := p.Evidence
			fmt.Fprintf(cmd.OutOrStdout(), "evidence pack %s written to %s: %d Evidence Present, %d Partial, %d Gap\n",
				e.ID, dir, e.Summary[compliance.StatusPresent], e.Summary[compliance.StatusPartial], e.Summary[compliance.StatusGap])
			for _, c := range e.Controls {
				fmt.Fprintf(cmd.OutOrStdout(), "  %-11s %-17s %s\n", c.ID, c.Status, c.Title)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.server, "server", "", "base URL of the TenSafe server (e.g. http://127.0.0.1:8080)")
	f.StringVar(&o.apiKey, "api-key", "", "admin API key (default $TENSAFE_API_KEY)")
	f.StringVar(&o.apiKeyFile, "api-key-file", "", "file holding the admin API key (e.g. <data-dir>/admin.key)")
	f.StringVar(&o.out, "out", "", "pack directory (default reports/compliance/<id>)")
	f.StringSliceVar(&o.scan, "scan", nil, "datasets, logs or artifacts to scan for PII and secrets (repeatable)")
	f.StringSliceVar(&o.minimization, "minimization", nil, "minimization reports of `tensafe compliance filter` (repeatable)")
	f.StringVar(&o.region, "region", "US", "region assumed for phone numbers without a +country code")
	f.Float64Var(&o.keyRotationDays, "key-rotation-days", compliance.DefaultKeyRotationDays, "KEK rotation policy in days")
	f.DurationVar(&o.eventsSince, "events-since", 0, "export only the compliance events of this last period, e.g. 2160h (default: all)")
	return cmd
}

// runEvidence builds and writes a pack; it returns the pack and its
// directory.
func runEvidence(ctx context.Context, o evidenceOptions) (*compliance.Pack, string, error) {
	now := time.Now()
	id, err := compliance.NewPackID(now)
	if err != nil {
		return nil, "", err
	}
	dir := o.out
	if dir == "" {
		dir = filepath.Join("reports", "compliance", id)
	}
	in := compliance.Inputs{KeyRotationDays: o.keyRotationDays}
	for _, path := range o.minimization {
		r, err := compliance.ReadMinimizationReport(path)
		if err != nil {
			return nil, "", err
		}
		in.Minimization = append(in.Minimization, r)
	}
	var cl *client.ServiceClient
	if o.server != "" {
		key := o.apiKey
		if key == "" && o.apiKeyFile != "" {
			b, err := os.ReadFile(o.apiKeyFile)
			if err != nil {
				return nil, "", fmt.Errorf("compliance evidence: --api-key-file: %w", err)
			}
			key = strings.TrimSpace(string(b))
		}
		if key == "" {
			key = os.Getenv("TENSAFE_API_KEY")
		}
		if key == "" {
			return nil, "", errors.New("compliance evidence: --server needs an admin API key (--api-key, --api-key-file or $TENSAFE_API_KEY)")
		}
		if cl, err = client.New(o.server, key); err != nil {
			return nil, "", fmt.Errorf("compliance evidence: %w", err)
		}
	}
	if len(o.scan) > 0 {
		if in.PIIScan, err = scanFor(ctx, o.scan, o.region, true); err != nil {
			return nil, "", err
		}
		if in.SecretsScan, err = scanFor(ctx, o.scan, o.region, false); err != nil {
			return nil, "", err
		}
		if cl != nil {
			target := strings.Join(o.scan, " ")
			if len(target) > 256 {
				target = target[:253] + "..."
			}
			for kind, r := range map[string]*compliance.Report{"pii": in.PIIScan, "secrets": in.SecretsScan} {
				if _, err := cl.RecordScan(ctx, scanSummary(kind, target, r)); err != nil {
					return nil, "", fmt.Errorf("compliance evidence: record %s scan: %w", kind, err)
				}
			}
		}
	}
	if cl != nil {
		if in.Metrics, err = cl.ComplianceMetrics(ctx); err != nil {
			return nil, "", fmt.Errorf("compliance evidence: metrics: %w", err)
		}
		ef := client.EventFilter{}
		if o.eventsSince > 0 {
			ef.Since = now.Add(-o.eventsSince)
		}
		if in.Events, err = cl.AllComplianceEvents(ctx, ef); err != nil {
			return nil, "", fmt.Errorf("compliance evidence: events: %w", err)
		}
	}
	source := ""
	if cl != nil {
		source = cl.BaseURL
	}
	p := compliance.BuildPack(id, source, now, in)
	if err := p.Write(dir); err != nil {
		return nil, "", err
	}
	return p, dir, nil
}

// scanFor scans paths for PII only (pii) or secrets only.
func scanFor(ctx context.Context, paths []string, region string, pii bool) (*compliance.Report, error) {
	s, err := compliance.NewScanner(compliance.Options{PhoneRegion: region, SkipPII: !pii, SkipSecrets: pii})
	if err != nil {
		return nil, err
	}
	r, err := s.ScanPaths(ctx, paths...)
	if err != nil {
		return nil, fmt.Errorf("compliance evidence: scan: %w", err)
	}
	return r, nil
}

func scanSummary(kind, target string, r *compliance.Report) api.ScanSummaryRequest {
	req := api.ScanSummaryRequest{Kind: kind, Target: target, Files: r.Files, Bytes: r.Bytes, Findings: r.PII + r.Secrets,
		Counts: map[string]int{}}
	for k, n := range r.Counts {
		req.Counts[string(k)] = n
	}
	var b bytes.Buffer
	if json.NewEncoder(&b).Encode(r) == nil {
		h := sha256.Sum256(b.Bytes())
		req.ReportSHA256 = "sha256:" + hex.EncodeToString(h[:])
	}
	return req
}
