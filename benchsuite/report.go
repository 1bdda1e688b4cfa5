package benchsuite

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Files names the two files WriteFiles writes in a report's folder.
const (
	FileJSON     = "report.json"
	FileMarkdown = "report.md"
)

// WriteFiles writes rep as dir/report.json and dir/report.md, creating dir,
// and returns their paths.
func WriteFiles(dir string, rep *Report) (jsonPath, mdPath string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("benchsuite: report folder: %w", err)
	}
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return "", "", fmt.Errorf("benchsuite: encode report: %w", err)
	}
	jsonPath = filepath.Join(dir, FileJSON)
	if err := os.WriteFile(jsonPath, append(data, '\n'), 0o644); err != nil {
		return "", "", fmt.Errorf("benchsuite: write report: %w", err)
	}
	var md strings.Builder
	WriteMarkdown(&md, rep)
	mdPath = filepath.Join(dir, FileMarkdown)
	if err := os.WriteFile(mdPath, []byte(md.String()), 0o644); err != nil {
		return "", "", fmt.Errorf("benchsuite: write report: %w", err)
	}
	return jsonPath, mdPath, nil
}

// ReadReport reads a report.json.
func ReadReport(path string) (*Report, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("benchsuite: read report: %w", err)
	}
	var rep Report
	if err := json.Unmarshal(data, &rep); err != nil {
		return nil, fmt.Errorf("benchsuite: decode report %s: %w", path, err)
	}
	if rep.Format != Format {
		return nil, fmt.Errorf("benchsuite: report %s: format %q, want %q", path, rep.Format, Format)
	}
	return &rep, nil
}

// WriteMarkdown writes rep as Markdown: the machine, one table per group
// (ours beside the original's published figure, with the ratio), the ratios
// and what was skipped.
func WriteMarkdown(w io.Writer, rep *Report) {
	m := rep.Machine
	fmt.Fprintf(w, "# TenSafe benchmark %s\n\n", rep.ID)
	fmt.Fprintf(w, "`%s`%s — started %s, %.0f s.\n\n", rep.Command, map[bool]string{true: " (quick)", false: ""}[rep.Quick],
		rep.Started.Format("2006-01-02 15:04:05 UTC"), rep.DurationS)
	fmt.Fprintf(w, "| machine | |\n|---|---|\n")
	fmt.Fprintf(w, "| CPU | %s |\n| cores (GOMAXPROCS) | %d (%d) |\n", m.CPUModel, m.Cores, m.GOMAXPROCS)
	if m.MemTotalMiB > 0 {
		fmt.Fprintf(w, "| memory | %.1f GiB |\n", float64(m.MemTotalMiB)/1024)
	}
	fmt.Fprintf(w, "| Go | %s %s/%s |\n| ML backend | %s |\n| GPU | %s |\n", m.GoVersion, m.OS, m.Arch, m.Backend, m.GPU)
	fmt.Fprintf(w, "| load average (1/5/15 min) at start | %.2f / %.2f / %.2f |\n", m.LoadAvg[0], m.LoadAvg[1], m.LoadAvg[2])
	fmt.Fprintf(w, "| load average at end | %.2f / %.2f / %.2f |\n", rep.LoadAvgEnd[0], rep.LoadAvgEnd[1], rep.LoadAvgEnd[2])
	if m.Note != "" {
		fmt.Fprintf(w, "| note | %s |\n", m.Note)
	}
	if len(rep.Params) > 0 {
		keys := make([]string, 0, len(rep.Params))
		for k := range rep.Params {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		fmt.Fprintf(w, "\nWorkload: ")
		for i, k := range keys {
			if i > 0 {
				fmt.Fprint(w, "; ")
			}
			fmt.Fprintf(w, "%s = %s", k, rep.Params[k])
		}
		fmt.Fprintln(w)
	}
	var groups []string
	byGroup := map[string][]*Result{}
	for _, r := range rep.Results {
		if _, ok := byGroup[r.Group]; !ok {
			groups = append(groups, r.Group)
		}
		byGroup[r.Group] = append(byGroup[r.Group], r)
	}
	for _, g := range groups {
		fmt.Fprintf(w, "\n## %s\n\n", g)
		fmt.Fprintf(w, "| operation | p50 ms | p95 ms | mean ms | n | original p50 | ours / original | what one op is |\n")
		fmt.Fprintf(w, "|---|---:|---:|---:|---:|---:|---:|---|\n")
		for _, r := range byGroup[g] {
			name := r.Name
			if r.Derived {
				name += " ‡"
			}
			orig, ratio := "", ""
			if r.Published != nil {
				orig = r.Published.Text
				if r.OursOverOriginal > 0 {
					ratio = FormatRatio(r.OursOverOriginal)
				}
			}
			what := r.Unit
			if r.Note != "" {
				if what != "" {
					what += "; "
				}
				what += r.Note
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %d | %s | %s | %s |\n", name, FormatMS(r.P50), FormatMS(r.P95), FormatMS(r.Mean),
				r.Iterations, orig, ratio, strings.ReplaceAll(what, "|", "/"))
		}
	}
	if hasDerived(rep) {
		fmt.Fprintf(w, "\n‡ derived: the paired difference of two measured operations (the operation cannot be timed alone in the real code path).\n")
	}
	if len(rep.Ratios) > 0 {
		fmt.Fprintf(w, "\n## Ratios\n\n| ratio | ours | of | original |\n|---|---:|---|---:|\n")
		for _, r := range rep.Ratios {
			orig := ""
			if r.Original != nil {
				orig = fmt.Sprintf("%s (%s)", FormatRatio(r.Original.Value), r.Original.Text)
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s |\n", r.Name, FormatRatio(r.Value), r.Of, orig)
		}
	}
	if len(rep.Skipped) > 0 {
		fmt.Fprintf(w, "\n## Not measured\n\n")
		for _, s := range rep.Skipped {
			fmt.Fprintf(w, "- %s: not available: %s\n", s.Group, s.Reason)
		}
	}
}

func hasDerived(rep *Report) bool {
	for _, r := range rep.Results {
		if r.Derived {
			return true
		}
	}
	return false
}

// FormatRatio prints a ratio with three significant digits (whole numbers
// from 100 on).
func FormatRatio(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 100:
		return fmt.Sprintf("%.0f×", v)
	case a >= 10:
		return fmt.Sprintf("%.1f×", v)
	case a >= 1:
		return fmt.Sprintf("%.2f×", v)
	default:
		return fmt.Sprintf("%.3g×", v)
	}
}
