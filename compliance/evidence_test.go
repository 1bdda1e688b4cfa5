package compliance

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tensafe/tensafe/api"
)

var update = flag.Bool("update", false, "rewrite docs/compliance/CONTROL_MATRIX.md from Controls()")

const matrixDoc = "../docs/compliance/CONTROL_MATRIX.md"

// TestControlMatrixDoc: the documented matrix is the one the code checks.
func TestControlMatrixDoc(t *testing.T) {
	want := MatrixMarkdown()
	if *update {
		if err := os.WriteFile(matrixDoc, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(matrixDoc)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("%s differs from compliance.Controls(); run go test ./compliance/ -run TestControlMatrixDoc -update", matrixDoc)
	}
}

func TestControlsWellFormed(t *testing.T) {
	seen := map[string]bool{}
	rules := statusRules()
	for _, c := range Controls() {
		if seen[c.ID] || c.Title == "" || c.Metric == "" || c.check == nil || len(c.ISO27001) == 0 || len(c.SOC2) == 0 {
			t.Errorf("control %+v", c)
		}
		seen[c.ID] = true
		if _, ok := rules[c.ID]; !ok {
			t.Errorf("%s: no status rules documented", c.ID)
		}
		for _, id := range c.ISO27001 {
			if !strings.HasPrefix(id, "A.5.") && !strings.HasPrefix(id, "A.6.") && !strings.HasPrefix(id, "A.7.") && !strings.HasPrefix(id, "A.8.") {
				t.Errorf("%s: %q is not an ISO/IEC 27001:2022 Annex A id", c.ID, id)
			}
		}
		for _, id := range c.SOC2 {
			ok := false
			for _, p := range []string{"CC6.", "CC7.", "CC8.", "C1.", "PI1.", "P1.", "P2.", "P3.", "P4.", "P5.", "P6.", "P7.", "P8."} {
				ok = ok || strings.HasPrefix(id, p)
			}
			if !ok {
				t.Errorf("%s: %q is not a SOC 2 criterion of the matrix's series", c.ID, id)
			}
		}
	}
	if len(rules) != len(seen) {
		t.Errorf("%d status rules for %d controls", len(rules), len(seen))
	}
}

// healthy returns inputs under which every control has its evidence.
func healthy() Inputs {
	now := time.Now()
	last := now.Add(-time.Second)
	return Inputs{
		Metrics: &api.ComplianceMetrics{
			Authentication:  api.AuthenticationMetric{Method: "bearer_api_key", TokenStorage: "sha256", ActiveKeys: 2, FailuresAudited: true},
			Authorization:   api.AuthorizationMetric{Model: "rbac", Roles: []string{"admin", "trainer", "viewer"}, TenantIsolation: true, Tenants: 2},
			Encryption:      api.EncryptionMetric{Envelope: "TSENV1", ArtifactsRecorded: 1, ArtifactsVerified: 1, FilesOnDisk: 1, AllVerified: true},
			AuditLog:        api.AuditLogMetric{Verified: true, Size: 10, Root: "ab", Checkpoints: 1, SignaturesChecked: true},
			KeyRotation:     api.KeyRotationMetric{Observable: true, Tenants: []api.TenantKeyAge{{TenantID: "tn_a", AgeDays: 1}}, MaxAgeDays: 1},
			Retention:       api.RetentionMetric{ArtifactTTLSeconds: 3600, SweepIntervalSecs: 60, SweeperRunning: true, LastSweep: &last},
			Artifacts:       []api.ArtifactHash{{ID: "art_1", ContentHash: "sha256:" + strings.Repeat("ab", 32)}},
			TrainingClients: []api.ClientPrivacyMetric{{ID: "tc_1", NoiseMultiplier: 1, MaxGradNorm: 1, TargetEpsilon: 8, EpsilonSpent: 0.5}},
			Determinism:     api.DeterminismMetric{Checked: true, Greedy: true, Seeded: true, Runs: 2},
		},
		Events:       []api.ComplianceEvent{{Category: api.CategoryChange}, {Category: api.CategoryEncryption}, {Category: api.CategoryAuditLog}},
		PIIScan:      &Report{Files: 1, Bytes: 10, Counts: map[Kind]int{}},
		SecretsScan:  &Report{Files: 1, Bytes: 10, Counts: map[Kind]int{}},
		Minimization: []MinimizationReport{{Policy: DefaultPolicy(), OutputSHA256: "sha256:" + strings.Repeat("cd", 32)}},
	}
}

// TestControlStatuses: each status follows from the inputs; breaking the
// evidence of a control makes it a Gap (or Partial) and leaves the others.
func TestControlStatuses(t *testing.T) {
	in := healthy()
	p := BuildPack("t", "", time.Now(), in)
	for _, c := range p.Evidence.Controls {
		if c.Status != StatusPresent {
			t.Errorf("healthy %s: %s (%s)", c.ID, c.Status, c.Reason)
		}
	}
	for _, c := range []struct {
		control string
		want    Status
		breakIt func(*Inputs)
	}{
		{"TS-AUD-1", StatusGap, func(in *Inputs) { in.Metrics.AuditLog = api.AuditLogMetric{Error: "first bad seq 3: modified"} }},
		{"TS-AUD-1", StatusPartial, func(in *Inputs) { in.Metrics.AuditLog.Checkpoints = 0 }},
		{"TS-ENC-1", StatusGap, func(in *Inputs) {
			in.Metrics.Encryption.AllVerified = false
			in.Metrics.Encryption.Failures = []api.ArtifactCheckFailure{{ArtifactID: "art_1", Reason: "not a sealed envelope"}}
		}},
		{"TS-ENC-1", StatusPartial, func(in *Inputs) { in.Metrics.Encryption = api.EncryptionMetric{AllVerified: true} }},
		{"TS-AUTH-1", StatusPartial, func(in *Inputs) { in.Metrics.Authentication.FailuresAudited = false }},
		{"TS-AUTHZ-1", StatusGap, func(in *Inputs) { in.Metrics.Authorization.TenantIsolation = false }},
		{"TS-KEY-1", StatusPartial, func(in *Inputs) { in.Metrics.KeyRotation.Tenants[0].AgeDays = 400 }},
		{"TS-KEY-1", StatusGap, func(in *Inputs) { in.Metrics.KeyRotation.Observable = false }},
		{"TS-RET-1", StatusGap, func(in *Inputs) { in.Metrics.Retention.ArtifactTTLSeconds = 0 }},
		{"TS-RET-1", StatusGap, func(in *Inputs) { in.Metrics.Retention.Overdue = 2 }},
		{"TS-RET-1", StatusPartial, func(in *Inputs) { in.Metrics.Retention.LastSweep = nil }},
		{"TS-MIN-1", StatusGap, func(in *Inputs) { in.Minimization = nil }},
		{"TS-MIN-1", StatusPartial, func(in *Inputs) {
			in.Minimization[0].Policy.PII = map[Kind]Action{KindSSN: ActionAllow}
			in.Minimization[0].AllowedByKind = map[Kind]int{KindSSN: 3}
		}},
		{"TS-PII-1", StatusPartial, func(in *Inputs) { in.PIIScan.PII = 4 }},
		{"TS-PII-1", StatusGap, func(in *Inputs) { in.PIIScan = nil }},
		{"TS-SEC-1", StatusGap, func(in *Inputs) { in.SecretsScan.Secrets = 1 }},
		{"TS-LIN-1", StatusPartial, func(in *Inputs) { in.Metrics.Artifacts = nil }},
		{"TS-DP-1", StatusGap, func(in *Inputs) { in.Metrics.TrainingClients[0].EpsilonSpent = 9 }},
		{"TS-DP-1", StatusGap, func(in *Inputs) { in.Metrics.TrainingClients[0].NoiseMultiplier = 0 }},
		{"TS-DET-1", StatusGap, func(in *Inputs) { in.Metrics.Determinism.Greedy = false }},
		{"TS-EVT-1", StatusGap, func(in *Inputs) { in.Events = nil }},
		{"TS-EVT-1", StatusPartial, func(in *Inputs) { in.Events = in.Events[:1] }},
	} {
		in := healthy()
		c.breakIt(&in)
		p := BuildPack("t", "", time.Now(), in)
		for _, r := range p.Evidence.Controls {
			want := StatusPresent
			if r.ID == c.control {
				want = c.want
			} else if c.control == "TS-MIN-1" && c.want == StatusGap && r.ID == "TS-LIN-1" {
				want = StatusPartial // no minimization report: no dataset hash either
			}
			if r.Status != want {
				t.Errorf("broken %s (%s): %s is %s (%s), want %s", c.control, c.want, r.ID, r.Status, r.Reason, want)
			}
		}
	}
	// No server at all: every deployment control is a Gap.
	in = healthy()
	in.Metrics = nil
	p = BuildPack("t", "", time.Now(), in)
	for _, id := range []string{"TS-AUTH-1", "TS-AUTHZ-1", "TS-ENC-1", "TS-AUD-1", "TS-KEY-1", "TS-RET-1", "TS-DP-1", "TS-DET-1"} {
		if r, _ := p.Control(id); r.Status != StatusGap {
			t.Errorf("no server: %s is %s", id, r.Status)
		}
	}
}

func TestPackWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pack")
	p := BuildPack("20260101T000000Z-00000000", "http://127.0.0.1:1", time.Now(), healthy())
	if err := p.Write(dir); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{FileMetrics, FileEvidence, FileEvidenceMD, FileEvents, FilePIIScan, FileSecretsScan} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || len(b) == 0 {
			t.Fatalf("%s: %v", f, err)
		}
		if strings.HasSuffix(f, ".json") && !json.Valid(b) {
			t.Errorf("%s is not JSON", f)
		}
	}
	e, err := ReadEvidence(dir)
	if err != nil || len(e.Controls) != len(Controls()) || e.Summary[StatusPresent] != len(Controls()) {
		t.Fatalf("evidence %+v, %v", e, err)
	}
	md, _ := os.ReadFile(filepath.Join(dir, FileEvidenceMD))
	if !strings.Contains(string(md), "## Executive summary") || !strings.Contains(string(md), "TS-ENC-1") {
		t.Errorf("evidence.md:\n%s", md)
	}
	// A pack is itself clean of secrets.
	s, _ := NewScanner(Options{SkipPII: true})
	rep, err := s.ScanPaths(t.Context(), dir)
	if err != nil || rep.Secrets != 0 {
		t.Fatalf("secrets in the pack: %+v, %v", rep, err)
	}
}
