package tssp

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tensafe/tensafe/privacy"
	"github.com/tensafe/tensafe/seal"
)

var updateEvidenceVector = flag.Bool("update-evidence-vector", false, "rewrite testdata/vector/evidence-v1 and evidence-v2 (new audit keys)")

// TestEvidenceVectors reads the committed evidence vectors
// (docs/TSSP_SPEC.md, "Test vector"): a v1 client-declared evidence and a
// v2 server-poisson evidence, each with the public key of the audit log
// that signed its checkpoint. Both must verify with their key and only
// with it, and v2 must carry the server-poisson record.
func TestEvidenceVectors(t *testing.T) {
	if *updateEvidenceVector {
		writeEvidenceVectors(t)
	}
	for _, c := range []struct {
		dir      string
		format   string
		sampling privacy.Sampling
	}{
		{"evidence-v1", EvidenceFormatV1, privacy.SamplingClientDeclared},
		{"evidence-v2", EvidenceFormatV2, privacy.SamplingServerPoisson},
	} {
		t.Run(c.dir, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(vectorDir, c.dir, "evidence.json"))
			if err != nil {
				t.Fatal(err)
			}
			kt, err := os.ReadFile(filepath.Join(vectorDir, c.dir, "audit.pub"))
			if err != nil {
				t.Fatal(err)
			}
			key, err := seal.ParseVerifyingKeyText(strings.TrimSpace(string(kt)))
			if err != nil {
				t.Fatal(err)
			}
			e, err := ParseEvidence(raw)
			if err != nil {
				t.Fatal(err)
			}
			if e.Format != c.format {
				t.Fatalf("format %q, want %q", e.Format, c.format)
			}
			if err := e.VerifyAudit(key); err != nil {
				t.Fatal(err)
			}
			other, _ := seal.GenerateSigningKey(rand.Reader)
			if err := e.VerifyAudit(other.Public()); !errors.Is(err, ErrEvidence) {
				t.Fatalf("another audit key: %v", err)
			}
			cert := privacy.Certificate{Sampling: c.sampling, DatasetFingerprint: e.Dataset.Fingerprint, Steps: e.Training.OptimSteps, SessionID: "tc-1"}
			if err := e.CheckCertificate(&cert); err != nil {
				t.Fatal(err)
			}
			if c.sampling == privacy.SamplingServerPoisson &&
				(e.Dataset.Fingerprint != testDatasetHash || e.Dataset.ContentHash != testDatasetHash || e.Training.TrainSteps != 3) {
				t.Fatalf("server-poisson vector: dataset %+v, training %+v", e.Dataset, e.Training)
			}
		})
	}
}

func writeEvidenceVectors(t *testing.T) {
	v1, k1 := testEvidence(t)
	v1.Format, v1.Dataset.Sampling = EvidenceFormatV1, ""
	v2, k2 := testServerEvidence(t)
	for dir, v := range map[string]struct {
		ev  *Evidence
		key *seal.VerifyingKey
	}{"evidence-v1": {v1, k1}, "evidence-v2": {v2, k2}} {
		raw, err := json.MarshalIndent(v.ev, "", " ")
		if err != nil {
			t.Fatal(err)
		}
		kt, err := v.key.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		d := filepath.Join(vectorDir, dir)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "evidence.json"), append(raw, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "audit.pub"), append(kt, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
