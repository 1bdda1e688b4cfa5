package tssp

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/privacy"
	"github.com/tensafe/tensafe/seal"
)

// testEvidence builds evidence the way the service does, over a real
// signed audit log: a client's create, two forward_backward (with batch
// digests) and two optim_steps, proven in a checkpoint of the whole log.
func testEvidence(t testing.TB) (*Evidence, *seal.VerifyingKey) {
	t.Helper()
	ctx := context.Background()
	st, err := audit.OpenFileStore(t.TempDir(), audit.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	key, err := seal.GenerateSigningKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	lg, err := audit.Open(ctx, st, audit.Options{Origin: "tensafe.test/evidence", Signer: key})
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	digests := []string{
		"sha256:d0d57bd8a21d986fb8360542f865d72bcb3aedad52a6111f448279c5977cebae",
		"sha256:2dc87ecf68ab13ce41f47919864e480fea1e2626e2a495d6c5a393b7c0bcd229",
	}
	var seqs []uint64
	add := func(op string, det map[string]string) {
		e, err := lg.Append(ctx, audit.Record{TenantID: "tn-a", Actor: "key-1", Operation: op, Resource: "tc-1",
			Outcome: audit.OutcomeSuccess, Details: det})
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, e.Seq)
	}
	add("training.create_client", nil)
	for _, d := range digests {
		add("training.forward_backward", map[string]string{BatchDigestDetail: d, "batch_size": "2"})
		// An unrelated entry between the run's entries.
		if _, err := lg.Append(ctx, audit.Record{TenantID: "tn-b", Actor: "key-2", Operation: "training.sample", Resource: "tc-2",
			Outcome: audit.OutcomeSuccess}); err != nil {
			t.Fatal(err)
		}
		add("training.optim_step", map[string]string{"example_count": "2"})
	}
	note, err := lg.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := audit.ParseCheckpoint(note)
	if err != nil {
		t.Fatal(err)
	}
	ev := &Evidence{
		Format:     EvidenceFormat,
		Checkpoint: EvidenceArtifact{ArtifactID: "art-1", ContentHash: digests[0], ClientID: "tc-1", Step: 2, CreatedAt: "2026-11-27T08:00:00Z"},
		Training: EvidenceTraining{BaseModel: "tensafe-tiny", Config: json.RawMessage(`{"base_model":"tensafe-tiny"}`), Clients: []string{"tc-1"},
			OptimSteps: 2, ForwardBackward: 2, Examples: 4, StartedAt: "2026-11-27T07:00:00Z", FinishedAt: "2026-11-27T08:00:00Z"},
		Loss:    LossSummary{Count: 2, First: 5.5, Last: 5.25, Min: 5.25, Max: 5.5, Mean: 5.375, Losses: []float64{5.5, 5.25}},
		Dataset: EvidenceDataset{Sampling: privacy.SamplingClientDeclared, Fingerprint: DatasetFingerprint(digests), DigestFormat: BatchDigestFormat, Batches: 2},
		Audit:   EvidenceAudit{Origin: "tensafe.test/evidence", TreeSize: sc.Size, RootHash: sc.Root.String(), Checkpoint: string(note)},
	}
	for _, seq := range seqs {
		p, err := lg.InclusionProof(ctx, seq, sc.Size)
		if err != nil {
			t.Fatal(err)
		}
		p.Checkpoint = nil
		ev.Audit.Proofs = append(ev.Audit.Proofs, p)
	}
	return ev, key.Public()
}

func TestEvidenceVerifyAudit(t *testing.T) {
	good, key := testEvidence(t)
	raw, err := json.Marshal(good)
	if err != nil {
		t.Fatal(err)
	}
	fresh := func() *Evidence {
		e, err := ParseEvidence(raw)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	if err := fresh().VerifyAudit(key); err != nil {
		t.Fatal(err)
	}
	if err := fresh().VerifyAudit(nil); err != nil {
		t.Fatal(err)
	}
	other, _ := seal.GenerateSigningKey(rand.Reader)
	for _, c := range []struct {
		name   string
		key    *seal.VerifyingKey
		change func(e *Evidence)
		want   error // besides ErrEvidence
	}{
		{"another audit key", other.Public(), func(*Evidence) {}, audit.ErrForgedCheckpoint},
		{"no checkpoint", key, func(e *Evidence) { e.Audit.Checkpoint = "" }, nil},
		{"altered entry", key, func(e *Evidence) { e.Audit.Proofs[1].Entry.Details["batch_size"] = "3" }, audit.ErrProof},
		{"altered digest", key, func(e *Evidence) {
			e.Audit.Proofs[1].Entry.Details[BatchDigestDetail] = e.Audit.Proofs[3].Entry.Details[BatchDigestDetail]
		}, audit.ErrProof},
		{"proof dropped", key, func(e *Evidence) { e.Audit.Proofs = append(e.Audit.Proofs[:1], e.Audit.Proofs[2:]...) }, nil},
		{"proofs reordered", key, func(e *Evidence) { e.Audit.Proofs[1], e.Audit.Proofs[2] = e.Audit.Proofs[2], e.Audit.Proofs[1] }, nil},
		{"another root", key, func(e *Evidence) { e.Audit.RootHash = e.Audit.Proofs[0].Entry.EntryHash.String() }, nil},
		{"another tree size", key, func(e *Evidence) { e.Audit.TreeSize-- }, nil},
		{"fingerprint", key, func(e *Evidence) { e.Dataset.Fingerprint = DatasetFingerprint(nil) }, nil},
		{"batch count", key, func(e *Evidence) { e.Dataset.Batches = 3 }, nil},
		{"proof path", key, func(e *Evidence) { e.Audit.Proofs[0].Hashes[0][0] ^= 1 }, audit.ErrProof},
		{"null proof", nil, func(e *Evidence) { e.Audit.Proofs[0] = nil }, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := fresh()
			c.change(e)
			err := e.VerifyAudit(c.key)
			if !errors.Is(err, ErrEvidence) || c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("got %v, want ErrEvidence and %v", err, c.want)
			}
		})
	}
	for _, bad := range []string{`{}`, `{"format":"tensafe-tssp-evidence/v2"}`, string(raw) + `{}`, `{"format":"tensafe-tssp-evidence/v1","extra":1}`, `[]`} {
		if _, err := ParseEvidence([]byte(bad)); !errors.Is(err, ErrEvidence) {
			t.Errorf("ParseEvidence(%.40q) = %v", bad, err)
		}
	}
}

// FuzzParseEvidence feeds arbitrary bytes to the evidence parser and the
// audit verification: nothing may panic.
func FuzzParseEvidence(f *testing.F) {
	ev, key := testEvidence(f)
	raw, err := json.Marshal(ev)
	if err != nil {
		f.Fatal(err)
	}
	sev, skey := testServerEvidence(f)
	sraw, err := json.Marshal(sev)
	if err != nil {
		f.Fatal(err)
	}
	if os.Getenv("TSSP_WRITE_EVIDENCE_SEED") != "" {
		// Regenerates the committed v2 seeds (the corpus file format of go
		// test); "service-evidence" is the v1 seed, kept as written.
		dir := filepath.Join("testdata", "fuzz", "FuzzParseEvidence")
		os.MkdirAll(dir, 0o755)
		for name, b := range map[string][]byte{"service-evidence-v2-client-declared": raw, "service-evidence-v2-server-poisson": sraw} {
			os.WriteFile(filepath.Join(dir, name), []byte("go test fuzz v1\n[]byte("+strconv.Quote(string(b))+")\n"), 0o644)
		}
	}
	f.Add(raw)
	f.Add(sraw)
	f.Add([]byte(`{"format":"tensafe-tssp-evidence/v2","dataset":{"sampling":"server-poisson","dataset_id":"ds-1","content_hash":"` + testDatasetHash + `"},"audit":{"proofs":[null]}}`))
	f.Add([]byte(`{"format":"tensafe-tssp-evidence/v1","audit":{"proofs":[null]}}`))
	f.Add([]byte(`{"format":"tensafe-tssp-evidence/v1","audit":{"root_hash":"00","proofs":[{"v":1}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseEvidence(b)
		if err != nil {
			if !errors.Is(err, ErrEvidence) {
				t.Fatalf("error %v does not wrap ErrEvidence", err)
			}
			return
		}
		// With the key when the note is the seed's (the note parser is
		// fuzzed in package audit); the rest of the checks without it.
		var k *seal.VerifyingKey
		switch e.Audit.Checkpoint {
		case ev.Audit.Checkpoint:
			k = key
		case sev.Audit.Checkpoint:
			k = skey
		}
		if err := e.VerifyAudit(k); err != nil && !errors.Is(err, ErrEvidence) {
			t.Fatalf("VerifyAudit: error %v does not wrap ErrEvidence", err)
		}
		c := privacy.Certificate{Sampling: e.Dataset.Sampling, DatasetFingerprint: e.Dataset.Fingerprint, Steps: e.Training.OptimSteps, SessionID: "tc-1"}
		if err := e.CheckCertificate(&c); err != nil && !errors.Is(err, ErrEvidence) {
			t.Fatalf("CheckCertificate: error %v does not wrap ErrEvidence", err)
		}
	})
}

func TestEvidenceCheckCertificate(t *testing.T) {
	ev, _ := testEvidence(t)
	good := privacy.Certificate{Sampling: privacy.SamplingClientDeclared, DatasetFingerprint: ev.Dataset.Fingerprint, Steps: 2, SessionID: "tc-1"}
	if err := ev.CheckCertificate(&good); err != nil {
		t.Fatal(err)
	}
	for name, change := range map[string]func(c *privacy.Certificate){
		"fingerprint": func(c *privacy.Certificate) { c.DatasetFingerprint = DatasetFingerprint(nil) },
		"steps":       func(c *privacy.Certificate) { c.Steps = 3 },
		"session":     func(c *privacy.Certificate) { c.SessionID = "tc-2" },
		"sampling":    func(c *privacy.Certificate) { c.Sampling = privacy.SamplingServerPoisson },
	} {
		c := good
		change(&c)
		if err := ev.CheckCertificate(&c); !errors.Is(err, ErrEvidence) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
