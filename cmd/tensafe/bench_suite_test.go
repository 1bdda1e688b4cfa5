package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tensafe/tensafe/benchsuite"
)

// runBenchCLI runs `tensafe bench ARGS` and returns the report it wrote.
func runBenchCLI(t *testing.T, args ...string) (*benchsuite.Report, string) {
	t.Helper()
	out := t.TempDir()
	root := newRootCmd()
	var stdout, stderr bytes.Buffer
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	root.SetArgs(append(append([]string{"bench"}, args...), "--out", out))
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("tensafe bench %v: %v\n%s", args, err, stderr.String())
	}
	dirs, err := os.ReadDir(out)
	if err != nil || len(dirs) != 1 {
		t.Fatalf("bench wrote %v (%v), want one report folder", dirs, err)
	}
	dir := filepath.Join(out, dirs[0].Name())
	rep, err := benchsuite.ReadReport(filepath.Join(dir, benchsuite.FileJSON))
	if err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, benchsuite.FileMarkdown))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "wrote ") {
		t.Errorf("stdout does not say where the report is: %q", stdout.String())
	}
	return rep, string(md)
}

func resultsByName(rep *benchsuite.Report) map[string]*benchsuite.Result {
	m := map[string]*benchsuite.Result{}
	for _, r := range rep.Results {
		m[r.Name] = r
	}
	return m
}

// TestBenchSecurityParts runs the fast parts of the suite through the CLI
// and checks that every component of the original's tables they cover is
// measured, positive, and set beside the published figure.
func TestBenchSecurityParts(t *testing.T) {
	for _, tt := range []struct {
		part      string
		originals []string
	}{
		{"privacy", []string{"account_step", "rdp_accounting", "convert_to_dp"}},
		{"crypto", []string{"generate_dek", "wrap_key", "unwrap_key", "encrypt_store", "decrypt_retrieve",
			"ed25519_sign", "ed25519_verify", "mldsa65_sign", "mldsa65_verify"}},
		{"audit", []string{"append_entry", "verify_chain"}},
		{"tssp", []string{"create_package", "sign_manifest", "verify_signature"}},
	} {
		t.Run(tt.part, func(t *testing.T) {
			rep, md := runBenchCLI(t, tt.part, "--quick", "--note", "test run")
			if rep.Machine.Cores < 1 || rep.Machine.GoVersion == "" || rep.Machine.Note != "test run" || !rep.Quick {
				t.Errorf("machine/quick not recorded: %+v", rep.Machine)
			}
			covered := map[string]bool{}
			for _, r := range rep.Results {
				if r.Group != tt.part {
					t.Errorf("result %q in group %q, want %q", r.Name, r.Group, tt.part)
				}
				if r.Iterations < 1 || r.P50 <= 0 || r.P95 < r.P50 || r.Mean <= 0 {
					t.Errorf("%s: implausible figures %+v", r.Name, r.Stats)
				}
				if r.Original != "" {
					covered[r.Original] = true
					if r.Published == nil {
						t.Errorf("%s: names original %q but carries no published figure", r.Name, r.Original)
					}
				}
			}
			for _, o := range tt.originals {
				if !covered[o] {
					t.Errorf("the original's %s is not measured", o)
				}
			}
			if !strings.Contains(md, "## "+tt.part) || !strings.Contains(md, "| operation | p50 ms |") {
				t.Errorf("report.md lacks the %s table:\n%s", tt.part, md)
			}
		})
	}
}

func TestBenchCryptoRatios(t *testing.T) {
	rep, _ := runBenchCLI(t, "crypto", "--quick")
	got := map[string]float64{}
	for _, r := range rep.Ratios {
		got[r.Name] = r.Value
	}
	for _, name := range []string{"store 1 MiB encrypted / plain", "retrieve 1 MiB encrypted / plain"} {
		if got[name] <= 0 {
			t.Errorf("ratio %q = %v", name, got[name])
		}
	}
}

// TestBenchComparison runs a tiny comparison: both arms, alternating, with
// the ratios the issue asks for.
func TestBenchComparison(t *testing.T) {
	rep, md := runBenchCLI(t, "comparison", "--steps", "2", "--checkpoints", "2", "--batch", "2", "--seq", "8")
	res := resultsByName(rep)
	for _, name := range []string{"training step (private)", "training step (baseline)", "checkpoint (encrypted + audited)",
		"checkpoint (plaintext)", "audit appends (private)", "budget check + record (private)"} {
		r := res[name]
		if r == nil || r.Iterations != 2 || r.P50 <= 0 {
			t.Errorf("%s: %+v", name, r)
		}
	}
	ratios := map[string]benchsuite.Ratio{}
	for _, r := range rep.Ratios {
		ratios[r.Name] = r
	}
	for _, name := range []string{"DP step / plain step", "checkpoint encrypted / plaintext", "throughput baseline / private"} {
		if ratios[name].Value <= 0 {
			t.Errorf("ratio %q missing or zero: %+v", name, ratios[name])
		}
	}
	if ratios["DP step / plain step"].Original == nil {
		t.Error("DP step / plain step is not set beside the original's ratio")
	}
	if !strings.Contains(md, "## Ratios") {
		t.Error("report.md has no ratios table")
	}
}

func TestBenchBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"privacy", "--shape", "huge"},
		{"comparison", "--batch", "0"},
		{"comparison", "--steps", "-1"},
	} {
		root := newRootCmd()
		root.SetOut(&bytes.Buffer{})
		root.SetErr(&bytes.Buffer{})
		root.SetArgs(append(append([]string{"bench"}, args...), "--out", t.TempDir()))
		err := root.ExecuteContext(context.Background())
		if err == nil || exitCode(err) != 2 {
			t.Errorf("bench %v: err = %v (exit %d), want a usage error", args, err, exitCode(err))
		}
	}
}
