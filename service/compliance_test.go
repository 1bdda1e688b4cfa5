package service

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/audit"
)

func TestComplianceCategory(t *testing.T) {
	for _, c := range []struct {
		r    audit.Record
		want string
	}{
		{audit.Record{Operation: "training.save_state", Outcome: audit.OutcomeSuccess}, api.CategoryEncryption},
		{audit.Record{Operation: "training.load_state", Outcome: audit.OutcomeFailure}, api.CategoryEncryption},
		{audit.Record{Operation: "training.create_client", Outcome: audit.OutcomeSuccess}, api.CategoryChange},
		{audit.Record{Operation: "training.delete_client", Outcome: audit.OutcomeSuccess}, api.CategoryChange},
		{audit.Record{Operation: "admin.create_api_key", Outcome: audit.OutcomeSuccess}, api.CategoryChange},
		{audit.Record{Operation: "training.optim_step", Outcome: audit.OutcomeDenied}, api.CategoryAccess},
		{audit.Record{Operation: "artifact.download", Outcome: audit.OutcomeFailure,
			Details: map[string]string{"error_code": api.CodePermissionDenied}}, api.CategoryAccess},
		{audit.Record{Operation: OpComplianceAuditVerify, Outcome: audit.OutcomeSuccess}, api.CategoryAuditLog},
		{audit.Record{Operation: OpRetentionDelete, Outcome: audit.OutcomeSuccess}, api.CategoryRetention},
		{audit.Record{Operation: OpCompliancePIIScan, Outcome: audit.OutcomeSuccess}, api.CategoryPIIScan},
		{audit.Record{Operation: OpComplianceSecretsScan, Outcome: audit.OutcomeSuccess}, api.CategorySecretsScan},
		{audit.Record{Operation: "training.forward_backward", Outcome: audit.OutcomeSuccess}, ""},
		{audit.Record{Operation: "training.optim_step", Outcome: audit.OutcomeSuccess}, ""},
		{audit.Record{Operation: OpIntegrityFailure, Outcome: audit.OutcomeFailure}, api.CategoryEncryption},
		{audit.Record{Operation: "auth.denied", Outcome: audit.OutcomeDenied}, api.CategoryAccess},
		{audit.Record{Operation: "training.unknown", Outcome: audit.OutcomeSuccess}, ""},
	} {
		if got := ComplianceCategory(c.r); got != c.want {
			t.Errorf("%s/%s: %q, want %q", c.r.Operation, c.r.Outcome, got, c.want)
		}
		in := c.r
		out := categorize(in)
		if out.Details[api.ComplianceCategoryKey] != c.want || in.Details[api.ComplianceCategoryKey] != "" {
			t.Errorf("%s: categorize %v (input changed: %v)", c.r.Operation, out.Details, in.Details)
		}
	}
	for op := range complianceCategories {
		r := categorize(audit.Record{Actor: "system", Operation: op, Outcome: audit.OutcomeSuccess})
		if err := r.Validate(); err != nil && !strings.HasPrefix(op, "audit.") {
			t.Errorf("%s: tagged record does not validate: %v", op, err)
		}
	}
}

// TestComplianceMetrics: the service's metrics come from real checks:
// artifacts are opened, an artifact replaced by plaintext (or a plaintext
// file dropped in the directory) fails the encryption check, the
// determinism run samples the real engine, and ε is read per client.
func TestComplianceMetrics(t *testing.T) {
	f := newFixture(t)
	s := f.svc
	ctx := context.Background()
	sv := savedArtifact(t, s, f.tenA)
	m, err := s.ComplianceMetrics(ctx, "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if e := m.Encryption; !e.AllVerified || e.ArtifactsRecorded != 1 || e.ArtifactsVerified != 1 || e.FilesOnDisk != 1 {
		t.Fatalf("encryption %+v", e)
	}
	if d := m.Determinism; !d.Checked || !d.Greedy || !d.Seeded || d.Error != "" || !strings.HasPrefix(d.OutputHash, "sha256:") {
		t.Fatalf("determinism %+v", d)
	}
	if len(m.TrainingClients) != 1 || m.TrainingClients[0].EpsilonSpent <= 0 || m.TrainingClients[0].Steps != 1 ||
		m.TrainingClients[0].NoiseMultiplier != 1 || m.TrainingClients[0].Error != "" {
		t.Fatalf("clients %+v", m.TrainingClients)
	}
	if k := m.KeyRotation; !k.Observable || len(k.Tenants) != 1 || k.Tenants[0].TenantID != f.tenA || k.Tenants[0].AgeDays > 1 {
		t.Fatalf("keys %+v", k)
	}
	if len(m.Artifacts) != 1 || m.Artifacts[0].ContentHash != sv.ContentHash {
		t.Fatalf("artifacts %+v", m.Artifacts)
	}
	// Tenant scope: tenant B sees none of A's.
	mb, err := s.ComplianceMetrics(ctx, f.tenB, time.Now())
	if err != nil || mb.Scope != "tenant" || len(mb.Artifacts) != 0 || len(mb.TrainingClients) != 0 || mb.Encryption.ArtifactsRecorded != 0 {
		t.Fatalf("tenant B metrics %+v, %v", mb, err)
	}

	// A plaintext file beside the artifacts is not an envelope.
	stray := filepath.Join(s.dir, "stray.tsenv")
	if err := os.WriteFile(stray, []byte("plain text, not sealed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err = s.ComplianceMetrics(ctx, "", time.Now())
	if err != nil || m.Encryption.AllVerified || len(m.Encryption.Failures) != 1 || m.Encryption.Failures[0].File != "stray.tsenv" {
		t.Fatalf("stray plaintext: %+v, %v", m.Encryption, err)
	}
	os.Remove(stray)

	// The artifact replaced by its plaintext.
	path := filepath.Join(s.dir, sv.ArtifactID+".tsenv")
	if err := os.WriteFile(path, []byte("TSSVCKP1 plaintext checkpoint"), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err = s.ComplianceMetrics(ctx, "", time.Now())
	if err != nil || m.Encryption.AllVerified || m.Encryption.ArtifactsVerified != 0 || len(m.Encryption.Failures) != 1 ||
		m.Encryption.Failures[0].ArtifactID != sv.ArtifactID || !strings.Contains(m.Encryption.Failures[0].Reason, "not a sealed envelope") {
		t.Fatalf("plaintext artifact: %+v, %v", m.Encryption, err)
	}
	// The file deleted behind the service's back: still recorded, missing.
	os.Remove(path)
	m, err = s.ComplianceMetrics(ctx, "", time.Now())
	if err != nil || m.Encryption.AllVerified || len(m.Encryption.Failures) != 1 || m.Encryption.Failures[0].Reason != "file missing" {
		t.Fatalf("missing file: %+v, %v", m.Encryption, err)
	}
}

func TestRecordComplianceEvent(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	seq, err := f.svc.RecordComplianceEvent(ctx, f.tenA, "key_x", OpCompliancePIIScan, "data.jsonl", audit.OutcomeSuccess,
		map[string]string{"files_scanned": "1"})
	if err != nil || seq == 0 {
		t.Fatalf("record: %d, %v", seq, err)
	}
	for _, c := range []struct {
		op  string
		det map[string]string
	}{
		{"training.save_state", nil},                                // not a compliance operation
		{"compliance.unknown", nil},                                 // unknown
		{OpCompliancePIIScan, map[string]string{"api_secret": "x"}}, // refused detail key
	} {
		if _, err := f.svc.RecordComplianceEvent(ctx, f.tenA, "key_x", c.op, "r", audit.OutcomeSuccess, c.det); err == nil {
			t.Errorf("%s %v: recorded", c.op, c.det)
		}
	}
	found := false
	auditScan(f, func(e audit.Entry) {
		if e.Seq == seq {
			found = e.Details[api.ComplianceCategoryKey] == api.CategoryPIIScan && e.Actor == "key_x"
		}
	})
	if !found {
		t.Fatal("PII_SCAN event not in the audit log")
	}
}

// BenchmarkComplianceMetrics measures one collection of the service's
// compliance metrics over 4 checkpoints (every artifact decrypted, the
// determinism run, key ages, accountant states).
func BenchmarkComplianceMetrics(b *testing.B) {
	f := newFixture(b)
	s := f.svc
	ctx := context.Background()
	tc, err := s.CreateTrainingClient(ctx, f.tenA, tinyConfig(1, 8, 2, 100))
	if err != nil {
		b.Fatal(err)
	}
	for range 4 {
		vf, err := s.SaveState(ctx, f.tenA, tc.ID, api.SaveStateRequest{})
		await(b, s, f.tenA, vf, err, nil)
	}
	for b.Loop() {
		m, err := s.ComplianceMetrics(ctx, "", time.Now())
		if err != nil || !m.Encryption.AllVerified || m.Encryption.ArtifactsVerified != 4 {
			b.Fatalf("%+v, %v", m.Encryption, err)
		}
	}
}
