package compliance

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tensafe/tensafe/api"
)

// Formats of the evidence pack files (docs/compliance/EVIDENCE.md).
const (
	EvidenceFormat     = "tensafe.compliance.evidence/v1"
	PackMetricsFormat  = "tensafe.compliance.pack-metrics/v1"
	EventsExportFormat = "tensafe.compliance.events/v1"
)

// Files of an evidence pack.
const (
	FileMetrics     = "metrics.json"
	FileEvidence    = "evidence.json"
	FileEvidenceMD  = "evidence.md"
	FileEvents      = "events.json"
	FilePIIScan     = "pii_scan.json"
	FileSecretsScan = "secrets_scan.json"
)

// PackMetrics is metrics.json: the deployment's metrics and the evidence
// gathered outside it.
type PackMetrics struct {
	Format           string                 `json:"format"`
	Deployment       *api.ComplianceMetrics `json:"deployment"`
	DataMinimization []MinimizationReport   `json:"data_minimization"`
	PIIScan          *ScanSummary           `json:"pii_scan"`
	SecretsScan      *ScanSummary           `json:"secrets_scan"`
}

// ScanSummary is the counts of a scan report.
type ScanSummary struct {
	Files    int          `json:"files_scanned"`
	Bytes    int64        `json:"bytes_scanned"`
	Findings int          `json:"findings"`
	Counts   map[Kind]int `json:"counts"`
}

func summarize(r *Report) *ScanSummary {
	if r == nil {
		return nil
	}
	return &ScanSummary{Files: r.Files, Bytes: r.Bytes, Findings: r.PII + r.Secrets, Counts: r.Counts}
}

// ControlResult is one control's row of evidence.json.
type ControlResult struct {
	ID       string   `json:"id"`
	Title    string   `json:"title"`
	Status   Status   `json:"status"`
	Reason   string   `json:"reason"`
	Metric   string   `json:"metric"`
	ISO27701 []string `json:"iso27701"`
	ISO27001 []string `json:"iso27001"`
	SOC2     []string `json:"soc2"`
}

// Evidence is evidence.json.
type Evidence struct {
	Format      string          `json:"format"`
	ID          string          `json:"id"`
	GeneratedAt time.Time       `json:"generated_at"`
	Source      string          `json:"source"` // the server asked, or "" when none
	Summary     map[Status]int  `json:"summary"`
	Controls    []ControlResult `json:"controls"`
}

// EventsExport is events.json.
type EventsExport struct {
	Format string                `json:"format"`
	Counts map[string]int        `json:"counts"`
	Events []api.ComplianceEvent `json:"events"`
}

// Pack is an evidence pack in memory.
type Pack struct {
	Evidence    Evidence
	Metrics     PackMetrics
	Events      EventsExport
	PIIScan     *Report
	SecretsScan *Report
}

// NewPackID returns a pack id: the UTC time and 4 random bytes
// ("20260102T150405Z-1a2b3c4d").
func NewPackID(now time.Time) (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:]), nil
}

// BuildPack evaluates every control on in and assembles the pack.
func BuildPack(id, source string, now time.Time, in Inputs) *Pack {
	p := &Pack{
		Evidence: Evidence{Format: EvidenceFormat, ID: id, GeneratedAt: now.UTC(), Source: source,
			Summary: map[Status]int{StatusPresent: 0, StatusPartial: 0, StatusGap: 0}},
		Metrics: PackMetrics{Format: PackMetricsFormat, Deployment: in.Metrics, DataMinimization: in.Minimization,
			PIIScan: summarize(in.PIIScan), SecretsScan: summarize(in.SecretsScan)},
		Events:      EventsExport{Format: EventsExportFormat, Counts: map[string]int{}, Events: in.Events},
		PIIScan:     in.PIIScan,
		SecretsScan: in.SecretsScan,
	}
	if p.Metrics.DataMinimization == nil {
		p.Metrics.DataMinimization = []MinimizationReport{}
	}
	if p.Events.Events == nil {
		p.Events.Events = []api.ComplianceEvent{}
	}
	for _, e := range in.Events {
		p.Events.Counts[e.Category]++
	}
	for _, c := range Controls() {
		r := c.Check(&in)
		p.Evidence.Summary[r.Status]++
		p.Evidence.Controls = append(p.Evidence.Controls, ControlResult{ID: c.ID, Title: c.Title, Status: r.Status,
			Reason: r.Reason, Metric: c.Metric, ISO27701: nonNil(c.ISO27701), ISO27001: nonNil(c.ISO27001), SOC2: nonNil(c.SOC2)})
	}
	return p
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Control returns the result of control id (ok false when unknown).
func (p *Pack) Control(id string) (ControlResult, bool) {
	for _, c := range p.Evidence.Controls {
		if c.ID == id {
			return c, true
		}
	}
	return ControlResult{}, false
}

// Write writes the pack's six files into dir (created, mode 0700). A file
// that exists is replaced.
func (p *Pack) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("compliance: evidence pack: %w", err)
	}
	empty := func(r *Report) *Report {
		if r == nil {
			return newReport()
		}
		return r
	}
	for _, f := range []struct {
		name string
		v    any
	}{
		{FileMetrics, p.Metrics},
		{FileEvidence, p.Evidence},
		{FileEvents, p.Events},
		{FilePIIScan, empty(p.PIIScan)},
		{FileSecretsScan, empty(p.SecretsScan)},
	} {
		b, err := json.MarshalIndent(f.v, "", "  ")
		if err != nil {
			return fmt.Errorf("compliance: evidence pack: %s: %w", f.name, err)
		}
		if err := writePackFile(filepath.Join(dir, f.name), append(b, '\n')); err != nil {
			return err
		}
	}
	return writePackFile(filepath.Join(dir, FileEvidenceMD), []byte(p.Markdown()))
}

func writePackFile(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("compliance: evidence pack: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compliance: evidence pack: %w", err)
	}
	return nil
}

// ReadEvidence reads the evidence.json of a pack directory.
func ReadEvidence(dir string) (*Evidence, error) {
	b, err := os.ReadFile(filepath.Join(dir, FileEvidence))
	if err != nil {
		return nil, fmt.Errorf("compliance: %w", err)
	}
	var e Evidence
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("compliance: %s: %w", FileEvidence, err)
	}
	if e.Format != EvidenceFormat {
		return nil, fmt.Errorf("compliance: %s: format %q, want %q", FileEvidence, e.Format, EvidenceFormat)
	}
	return &e, nil
}

// ReadMinimizationReport reads a report written by `tensafe compliance
// filter`.
func ReadMinimizationReport(path string) (MinimizationReport, error) {
	var r MinimizationReport
	b, err := os.ReadFile(path)
	if err != nil {
		return r, fmt.Errorf("compliance: %w", err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("compliance: minimization report %s: %w", path, err)
	}
	if r.Format != MinimizationFormat {
		return r, fmt.Errorf("compliance: minimization report %s: format %q, want %q", path, r.Format, MinimizationFormat)
	}
	if err := r.Policy.Validate(); err != nil {
		return r, fmt.Errorf("compliance: minimization report %s: %w", path, err)
	}
	return r, nil
}

// Markdown renders evidence.md: an executive summary and the status of
// every control with its reason and mapping.
func (p *Pack) Markdown() string {
	var b strings.Builder
	e := p.Evidence
	fmt.Fprintf(&b, "# TenSafe compliance evidence %s\n\n", e.ID)
	fmt.Fprintf(&b, "Generated %s", e.GeneratedAt.Format(time.RFC3339))
	if e.Source != "" {
		fmt.Fprintf(&b, " from %s", e.Source)
	}
	b.WriteString(". Evidence for audit preparation (ISO/IEC 27701, ISO/IEC 27001:2022 Annex A, SOC 2), not a certification.\n\n")
	b.WriteString("## Executive summary\n\n")
	fmt.Fprintf(&b, "%d controls: **%d Evidence Present**, **%d Partial**, **%d Gap**.\n\n",
		len(e.Controls), e.Summary[StatusPresent], e.Summary[StatusPartial], e.Summary[StatusGap])
	if d := p.Metrics.Deployment; d != nil {
		fmt.Fprintf(&b, "- Audit log: verified %v, %d entries, head root `%s`.\n", d.AuditLog.Verified, d.AuditLog.Size, d.AuditLog.Root)
		fmt.Fprintf(&b, "- Encryption at rest: %d of %d artifacts verified as sealed envelopes.\n", d.Encryption.ArtifactsVerified, d.Encryption.ArtifactsRecorded)
		dp, _ := p.Control("TS-DP-1")
		fmt.Fprintf(&b, "- Training clients: %d (differential privacy: %s).\n", len(d.TrainingClients), dp.Status)
	}
	var gaps []string
	for _, c := range e.Controls {
		if c.Status == StatusGap {
			gaps = append(gaps, fmt.Sprintf("- **%s %s**: %s", c.ID, c.Title, c.Reason))
		}
	}
	if len(gaps) > 0 {
		b.WriteString("\nGaps to close:\n\n" + strings.Join(gaps, "\n") + "\n")
	}
	b.WriteString("\n## Status per control\n\n")
	b.WriteString("| Control | Status | Why | ISO/IEC 27701 | ISO/IEC 27001 | SOC 2 |\n|---|---|---|---|---|---|\n")
	for _, c := range e.Controls {
		fmt.Fprintf(&b, "| %s %s | %s | %s | %s | %s | %s |\n", c.ID, c.Title, c.Status, mdEscape(c.Reason),
			ids(c.ISO27701), ids(c.ISO27001), ids(c.SOC2))
	}
	b.WriteString("\n## Files\n\n")
	b.WriteString("- `metrics.json`: the deployment's measured metrics, scan summaries, minimization reports\n")
	b.WriteString("- `evidence.json`: this table as data\n")
	b.WriteString("- `events.json`: compliance events from the audit log\n")
	b.WriteString("- `pii_scan.json`, `secrets_scan.json`: scan reports (kinds and locations, never values)\n")
	return b.String()
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", "\\|", "\n", " ").Replace(s)
}
