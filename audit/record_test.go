package audit

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateAcceptsMetadata(t *testing.T) {
	details := []map[string]string{
		{"model": "llama-3.2-1b", "step": "120", "epsilon_spent": "0.734", "delta": "1e-5"},
		{"artifact_id": "art_01HZX3K9QW", "content_hash": "sha256:" + strings.Repeat("ab", 32)},
		{"key_id": "ts1-0123456789abcdef01234567", "kek_version": "3"},
		{"session": "7d9f2c9e-3b8a-4c1d-9e2f-0a1b2c3d4e5f"},
		{"path": "/var/lib/tensafe-data/artifacts/tenant-acme/adapters/run-2026-03-01/step-000120.tssp"},
		{"reason": "privacy budget exhausted: epsilon 8.0 of 8.0 spent"},
		{"key.version": "2", "dataset_id": "ds_42"},
	}
	for _, d := range details {
		r := Record{TenantID: "acme", Actor: "key:ak_1", Operation: "artifact.save", Resource: "artifact/x", Outcome: OutcomeSuccess, Details: d}
		if err := r.Validate(); err != nil {
			t.Errorf("Validate(%v): %v", d, err)
		}
	}
}

func TestValidateRefuses(t *testing.T) {
	long := strings.Repeat("x", MaxDetailValueLen+1)
	tests := []struct {
		name    string
		mod     func(r *Record)
		wantErr string // a substring naming the field
	}{
		{"empty actor", func(r *Record) { r.Actor = "" }, "field actor: required"},
		{"empty operation", func(r *Record) { r.Operation = "" }, "field operation: required"},
		{"operation case", func(r *Record) { r.Operation = "Training.Step" }, "field operation"},
		{"reserved operation", func(r *Record) { r.Operation = "audit.genesis" }, "reserved"},
		{"outcome", func(r *Record) { r.Outcome = "ok" }, "field outcome"},
		{"tenant control", func(r *Record) { r.TenantID = "a\nb" }, "field tenant_id"},
		{"tenant utf8", func(r *Record) { r.TenantID = "a\xffb" }, "field tenant_id: not valid UTF-8"},
		{"long resource", func(r *Record) { r.Resource = strings.Repeat("r", MaxResourceLen+1) }, "field resource"},
		{"too many details", func(r *Record) {
			r.Details = map[string]string{}
			for i := 0; i <= MaxDetails; i++ {
				r.Details[string(rune('a'+i%26))+strings.Repeat("z", i)] = "v"
			}
		}, "field details"},
		{"long value", func(r *Record) { r.Details = map[string]string{"note": long} }, `details["note"]`},
		{"password key", func(r *Record) { r.Details = map[string]string{"db_password": "hunter2"} }, `details["db_password"]: key names secret`},
		{"api key", func(r *Record) { r.Details = map[string]string{"api_key": "x"} }, `details["api_key"]`},
		{"bare key", func(r *Record) { r.Details = map[string]string{"key": "x"} }, `details["key"]`},
		{"dek", func(r *Record) { r.Details = map[string]string{"wrapped.dek": "x"} }, `details["wrapped.dek"]`},
		{"prompt", func(r *Record) { r.Details = map[string]string{"prompt": "hello"} }, `details["prompt"]`},
		{"training data", func(r *Record) { r.Details = map[string]string{"batch_data": "x"} }, `details["batch_data"]`},
		{"sample text", func(r *Record) { r.Details = map[string]string{"sample_text": "x"} }, `details["sample_text"]`},
		{"pem", func(r *Record) {
			r.Details = map[string]string{"cert": "-----BEGIN PRIVATE KEY-----MIIE"}
		}, "a PEM block"},
		{"bearer", func(r *Record) { r.Details = map[string]string{"header": "Bearer abc.def"} }, "authorization header"},
		{"jwt", func(r *Record) {
			r.Details = map[string]string{"session": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig"}
		}, "JSON Web Token"},
		{"hex key", func(r *Record) { r.Details = map[string]string{"blob": strings.Repeat("9f", 32)} }, "key material"},
		{"base64 key", func(r *Record) {
			r.Details = map[string]string{"blob": "q9Jf3TzK0pWc8yXvB2nL4mR7sA1eH6gU5iO0dF9kZ3w="}
		}, "key material"},
		{"base64url key", func(r *Record) {
			r.Details = map[string]string{"blob": "q9Jf3TzK0pWc8yXvB2nL4m-7sA1eH6gU5iO0dF9kZ3w"}
		}, "key material"},
		{"tensafe secret", func(r *Record) {
			r.Details = map[string]string{"k": "tensafe-sign-secret-v1:AQ"}
		}, "TenSafe secret key"},
		{"secret in resource", func(r *Record) { r.Resource = strings.Repeat("Ab3", 20) }, "field resource"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Record{TenantID: "acme", Actor: "key:ak_1", Operation: "artifact.save", Resource: "artifact/x", Outcome: OutcomeSuccess}
			tc.mod(&r)
			err := r.Validate()
			if !errors.Is(err, ErrInvalidRecord) {
				t.Fatalf("Validate = %v, want ErrInvalidRecord", err)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate = %q, want it to mention %q", err, tc.wantErr)
			}
			for _, v := range r.Details {
				if len(v) > 8 && strings.Contains(err.Error(), v) {
					t.Fatalf("error quotes the refused value: %q", err)
				}
			}
		})
	}
}
