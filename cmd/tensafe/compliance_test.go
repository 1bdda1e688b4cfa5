package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tensafe/tensafe/compliance"
)

func runComplianceCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestComplianceScanCLI(t *testing.T) {
	dir := t.TempDir()
	clean := filepath.Join(dir, "clean")
	dirty := filepath.Join(dir, "dirty")
	for _, d := range []string{clean, dirty} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const email, card, token = "zed.quist@example.org", "4012 8888 8888 1881", "ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R"
	if err := os.WriteFile(filepath.Join(clean, "a.txt"), []byte("hello world\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dirty, "b.jsonl"), []byte(`{"text": "mail `+email+` card `+card+`"}`+"\n"+token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	out, err := runComplianceCLI(t, "compliance", "scan", clean)
	if err != nil || !strings.Contains(out, "0 PII, 0 secrets") {
		t.Fatalf("clean scan: %v\n%s", err, out)
	}

	for _, args := range [][]string{{"compliance", "scan", dirty}, {"compliance", "scan", "--json", clean, dirty}} {
		out, err = runComplianceCLI(t, args...)
		if exitCode(err) != complianceExitFound {
			t.Fatalf("%v: exit %d (%v), want %d", args, exitCode(err), err, complianceExitFound)
		}
		for _, v := range []string{email, card, token, "zed.quist", "8888"} {
			if strings.Contains(out, v) || strings.Contains(err.Error(), v) {
				t.Errorf("%v: output or error shows a matched value", args)
			}
		}
	}
	var rep compliance.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	if rep.Format != compliance.ReportFormat || rep.Files != 2 || rep.PII != 2 || rep.Secrets != 1 ||
		rep.Counts[compliance.KindEmail] != 1 || rep.Counts[compliance.KindPaymentCard] != 1 || rep.Counts[compliance.KindGitHubToken] != 1 {
		t.Errorf("report %+v", rep)
	}
	if f := rep.Findings[0]; f.Kind != compliance.KindEmail || f.Line != 1 || f.Column != 16 {
		t.Errorf("first finding %+v", f)
	}

	_, err = runComplianceCLI(t, "compliance", "scan", filepath.Join(dir, "missing"))
	if exitCode(err) != complianceExitError {
		t.Errorf("missing path: exit %d (%v)", exitCode(err), err)
	}
	out, err = runComplianceCLI(t, "compliance", "scan", "--max-findings", "1", dirty)
	if exitCode(err) != complianceExitFound || !strings.Contains(out, "2 more findings not listed") || strings.Count(out, "b.jsonl:") != 1 {
		t.Errorf("--max-findings 1: exit %d\n%s", exitCode(err), out)
	}
	_, err = runComplianceCLI(t, "compliance", "scan", "--region", "XX", clean)
	if exitCode(err) != complianceExitError || !strings.Contains(err.Error(), "PhoneRegion") {
		t.Errorf("bad region: exit %d (%v)", exitCode(err), err)
	}
}
