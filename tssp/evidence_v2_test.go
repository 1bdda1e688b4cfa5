package tssp

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"testing"

	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/privacy"
	"github.com/tensafe/tensafe/seal"
)

const (
	testDatasetHash  = "sha256:5f1e0b1b6d2a8c3f9e47a0d4c2b6e8f1a3c5e7d9b0f2a4c6e8d0b2f4a6c8e0d2"
	otherDatasetHash = "sha256:0000000000000000000000000000000000000000000000000000000000000001"
)

// evEntry is one audit entry of a test run; proven entries go into the
// evidence.
type evEntry struct {
	op     string
	det    map[string]string
	proven bool
}

// buildEvidence appends entries to a real signed audit log (with an
// unrelated tenant's entry after each), signs a checkpoint, and returns ev
// with the audit section filled in: every proven entry with its inclusion
// proof.
func buildEvidence(t testing.TB, ev Evidence, entries []evEntry) (*Evidence, *seal.VerifyingKey) {
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
	const origin = "tensafe.test/evidence-v2"
	lg, err := audit.Open(ctx, st, audit.Options{Origin: origin, Signer: key})
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	var seqs []uint64
	for _, en := range entries {
		e, err := lg.Append(ctx, audit.Record{TenantID: "tn-a", Actor: "key-1", Operation: en.op, Resource: "tc-1",
			Outcome: audit.OutcomeSuccess, Details: en.det})
		if err != nil {
			t.Fatal(err)
		}
		if en.proven {
			seqs = append(seqs, e.Seq)
		}
		if _, err := lg.Append(ctx, audit.Record{TenantID: "tn-b", Actor: "key-2", Operation: "training.sample", Resource: "tc-2",
			Outcome: audit.OutcomeSuccess}); err != nil {
			t.Fatal(err)
		}
	}
	note, err := lg.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := audit.ParseCheckpoint(note)
	if err != nil {
		t.Fatal(err)
	}
	ev.Audit = EvidenceAudit{Origin: origin, TreeSize: sc.Size, RootHash: sc.Root.String(), Checkpoint: string(note)}
	for _, seq := range seqs {
		p, err := lg.InclusionProof(ctx, seq, sc.Size)
		if err != nil {
			t.Fatal(err)
		}
		p.Checkpoint = nil
		ev.Audit.Proofs = append(ev.Audit.Proofs, p)
	}
	return &ev, key.Public()
}

// trainStepEntry is the audit entry of a train_step drawing n examples
// from the dataset of hash.
func trainStepEntry(step int, n, hash string) evEntry {
	return evEntry{op: "training.train_step", proven: true, det: map[string]string{
		"step": string(rune('0' + step)), "example_count": n, "loss_type": "cross_entropy",
		DatasetIDDetail: "ds-1", DatasetHashDetail: hash}}
}

// serverEntries is a server-sampled run: create, three train_steps from
// the dataset of testDatasetHash, save_state.
func serverEntries() []evEntry {
	return []evEntry{
		{op: "training.create_client", proven: true},
		trainStepEntry(1, "3", testDatasetHash),
		trainStepEntry(2, "0", testDatasetHash), // a noise-only step
		trainStepEntry(3, "5", testDatasetHash),
		{op: "training.save_state", proven: true, det: map[string]string{"artifact_id": "art-1"}},
	}
}

// serverTemplate is the evidence the service writes for serverEntries.
func serverTemplate() Evidence {
	return Evidence{
		Format:     EvidenceFormatV2,
		Checkpoint: EvidenceArtifact{ArtifactID: "art-1", ContentHash: otherDatasetHash, ClientID: "tc-1", Step: 3, CreatedAt: "2026-11-27T08:00:00Z"},
		Training: EvidenceTraining{BaseModel: "tensafe-tiny", Config: json.RawMessage(`{"base_model":"tensafe-tiny"}`), Clients: []string{"tc-1"},
			OptimSteps: 3, TrainSteps: 3, Examples: 8, StartedAt: "2026-11-27T07:00:00Z", FinishedAt: "2026-11-27T08:00:00Z"},
		Loss: LossSummary{Count: 2, First: 5.5, Last: 5.25, Min: 5.25, Max: 5.5, Mean: 5.375, Losses: []float64{5.5, 5.25}},
		Dataset: EvidenceDataset{Sampling: privacy.SamplingServerPoisson, DatasetID: "ds-1", ContentHash: testDatasetHash,
			Fingerprint: testDatasetHash, DigestFormat: DatasetHashFormat, Batches: 3},
	}
}

// testServerEvidence is server-poisson evidence of serverEntries.
func testServerEvidence(t testing.TB) (*Evidence, *seal.VerifyingKey) {
	return buildEvidence(t, serverTemplate(), serverEntries())
}

func reparse(t *testing.T, e *Evidence) *Evidence {
	t.Helper()
	raw, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	out, err := ParseEvidence(raw)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestEvidenceV2ServerPoisson(t *testing.T) {
	ev, key := testServerEvidence(t)
	e := reparse(t, ev)
	if err := e.VerifyAudit(key); err != nil {
		t.Fatal(err)
	}
	cert := privacy.Certificate{Sampling: privacy.SamplingServerPoisson, DatasetFingerprint: testDatasetHash, Steps: 3, SessionID: "tc-1"}
	if err := e.CheckCertificate(&cert); err != nil {
		t.Fatal(err)
	}
	declared := cert
	declared.Sampling = privacy.SamplingClientDeclared
	if err := e.CheckCertificate(&declared); !errors.Is(err, ErrEvidence) || !errors.Is(err, ErrSampling) {
		t.Fatalf("a client-declared certificate with server-poisson evidence: %v", err)
	}
}

// TestEvidenceTamperMatrixV2: every way server-poisson evidence can lie
// about how its batches were drawn fails verification with ErrEvidence and
// the specific error.
func TestEvidenceTamperMatrixV2(t *testing.T) {
	slipped := serverEntries()
	slipped = append(slipped[:2], append([]evEntry{
		{op: "training.forward_backward", proven: true, det: map[string]string{BatchDigestDetail: otherDatasetHash}},
	}, slipped[2:]...)...)
	slippedOptim := serverEntries()
	slippedOptim = append(slippedOptim[:3], append([]evEntry{
		{op: "training.optim_step", proven: true, det: map[string]string{"example_count": "1"}},
	}, slippedOptim[3:]...)...)
	slippedCustom := serverEntries()
	slippedCustom = append(slippedCustom[:1], append([]evEntry{
		{op: "training.forward_backward_custom", proven: true, det: map[string]string{BatchDigestDetail: otherDatasetHash}},
	}, slippedCustom[1:]...)...)
	otherData := serverEntries()
	otherData[2] = trainStepEntry(2, "0", otherDatasetHash)
	noHash := serverEntries()
	delete(noHash[3].det, DatasetHashDetail)

	for _, c := range []struct {
		name    string
		entries []evEntry
		change  func(e *Evidence)
		want    error // besides ErrEvidence
	}{
		{"client forward_backward slipped in", slipped, nil, ErrClientStep},
		{"client optim_step slipped in", slippedOptim, nil, ErrClientStep},
		{"client forward_backward_custom slipped in", slippedCustom, nil, ErrClientStep},
		{"a train_step from another dataset", otherData, nil, ErrDatasetHash},
		{"a train_step without dataset hash", noHash, nil, ErrDatasetHash},
		{"wrong dataset hash", nil, func(e *Evidence) { e.Dataset.ContentHash, e.Dataset.Fingerprint = otherDatasetHash, otherDatasetHash }, ErrDatasetHash},
		{"wrong content hash only", nil, func(e *Evidence) { e.Dataset.ContentHash = otherDatasetHash }, ErrDatasetHash},
		{"fingerprint not the hash", nil, func(e *Evidence) { e.Dataset.Fingerprint = otherDatasetHash }, ErrDatasetHash},
		{"fingerprint of no batches", nil, func(e *Evidence) { e.Dataset.Fingerprint = DatasetFingerprint(nil) }, ErrDatasetHash},
		{"relabelled client-declared", nil, func(e *Evidence) {
			e.Dataset.Sampling, e.Dataset.DatasetID, e.Dataset.ContentHash = privacy.SamplingClientDeclared, "", ""
		}, nil},
		{"relabelled v1", nil, func(e *Evidence) {
			e.Format, e.Dataset.Sampling, e.Dataset.DatasetID, e.Dataset.ContentHash, e.Training.TrainSteps = EvidenceFormatV1, "", "", "", 0
		}, ErrSampling},
		{"no train_step proven", nil, func(e *Evidence) { e.Audit.Proofs = append(e.Audit.Proofs[:1], e.Audit.Proofs[4:]...) }, ErrSampling},
		{"train_step dropped", nil, func(e *Evidence) { e.Audit.Proofs = append(e.Audit.Proofs[:2], e.Audit.Proofs[3:]...) }, nil},
		{"batch count", nil, func(e *Evidence) { e.Dataset.Batches = 4 }, nil},
		{"optim_steps count", nil, func(e *Evidence) { e.Training.OptimSteps = 4 }, nil},
		{"train_steps count", nil, func(e *Evidence) { e.Training.TrainSteps = 2 }, nil},
		{"examples count", nil, func(e *Evidence) { e.Training.Examples = 9 }, nil},
		{"digest format", nil, func(e *Evidence) { e.Dataset.DigestFormat = BatchDigestFormat }, nil},
		{"altered train_step", nil, func(e *Evidence) { e.Audit.Proofs[1].Entry.Details["example_count"] = "30" }, audit.ErrProof},
		{"train_step hash rewritten", nil, func(e *Evidence) {
			for _, p := range e.Audit.Proofs {
				if p.Entry.Operation == "training.train_step" {
					p.Entry.Details[DatasetHashDetail] = otherDatasetHash
				}
			}
			e.Dataset.ContentHash, e.Dataset.Fingerprint = otherDatasetHash, otherDatasetHash
		}, audit.ErrProof},
	} {
		t.Run(c.name, func(t *testing.T) {
			entries := c.entries
			if entries == nil {
				entries = serverEntries()
			}
			ev, key := buildEvidence(t, serverTemplate(), entries)
			e := reparse(t, ev)
			if c.change != nil {
				c.change(e)
			}
			err := e.VerifyAudit(key)
			if !errors.Is(err, ErrEvidence) || c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("got %v, want ErrEvidence and %v", err, c.want)
			}
		})
	}
}

// TestEvidenceV2ClientDeclaredMixed: a client-declared v2 run may hold
// train_steps (a run that mixed client batches and server draws); its
// fingerprint is the client batches' digests, and a v1 evidence may not
// prove a train_step.
func TestEvidenceV2ClientDeclaredMixed(t *testing.T) {
	d := "sha256:d0d57bd8a21d986fb8360542f865d72bcb3aedad52a6111f448279c5977cebae"
	entries := []evEntry{
		{op: "training.create_client", proven: true},
		{op: "training.forward_backward", proven: true, det: map[string]string{BatchDigestDetail: d}},
		{op: "training.optim_step", proven: true, det: map[string]string{"example_count": "2"}},
		trainStepEntry(2, "3", testDatasetHash),
	}
	tmpl := serverTemplate()
	tmpl.Training.OptimSteps, tmpl.Training.TrainSteps, tmpl.Training.ForwardBackward, tmpl.Training.Examples = 2, 1, 1, 5
	tmpl.Dataset = EvidenceDataset{Sampling: privacy.SamplingClientDeclared, Fingerprint: DatasetFingerprint([]string{d}),
		DigestFormat: BatchDigestFormat, Batches: 1}
	ev, key := buildEvidence(t, tmpl, entries)
	e := reparse(t, ev)
	if err := e.VerifyAudit(key); err != nil {
		t.Fatal(err)
	}
	cert := privacy.Certificate{Sampling: privacy.SamplingClientDeclared, DatasetFingerprint: e.Dataset.Fingerprint, Steps: 2, SessionID: "tc-1"}
	if err := e.CheckCertificate(&cert); err != nil {
		t.Fatal(err)
	}
	cert.Sampling = privacy.SamplingServerPoisson
	if err := e.CheckCertificate(&cert); !errors.Is(err, ErrSampling) {
		t.Fatalf("a server-poisson certificate with client-declared evidence: %v", err)
	}
	// The same proofs as v1: the train_step cannot be proven.
	e.Format, e.Dataset.Sampling, e.Training.TrainSteps = EvidenceFormatV1, "", 0
	if err := e.VerifyAudit(key); !errors.Is(err, ErrEvidence) || !errors.Is(err, ErrSampling) {
		t.Fatalf("v1 evidence with a train_step: %v", err)
	}
}

// TestEvidenceV1StillVerifies: evidence in the v1 schema, as servers wrote
// it before v2, parses and verifies, and pairs only with a client-declared
// certificate.
func TestEvidenceV1StillVerifies(t *testing.T) {
	ev, key := testEvidence(t)
	ev.Format, ev.Dataset.Sampling = EvidenceFormatV1, ""
	raw, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	e, err := ParseEvidence(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.VerifyAudit(key); err != nil {
		t.Fatal(err)
	}
	cert := privacy.Certificate{Sampling: privacy.SamplingClientDeclared, DatasetFingerprint: e.Dataset.Fingerprint, Steps: 2, SessionID: "tc-1"}
	if err := e.CheckCertificate(&cert); err != nil {
		t.Fatal(err)
	}
	cert.Sampling = privacy.SamplingServerPoisson
	if err := e.CheckCertificate(&cert); !errors.Is(err, ErrSampling) {
		t.Fatalf("a server-poisson certificate with v1 evidence: %v", err)
	}
}

func TestParseEvidenceVersions(t *testing.T) {
	for _, c := range []struct {
		name string
		doc  string
		want error // besides ErrEvidence; nil: only ErrEvidence
	}{
		{"v1 with sampling", `{"format":"tensafe-tssp-evidence/v1","dataset":{"sampling":"client-declared"}}`, ErrSampling},
		{"v1 with dataset id", `{"format":"tensafe-tssp-evidence/v1","dataset":{"dataset_id":"ds-1"}}`, nil},
		{"v1 with train_steps", `{"format":"tensafe-tssp-evidence/v1","training":{"train_steps":1}}`, nil},
		{"v2 without sampling", `{"format":"tensafe-tssp-evidence/v2"}`, ErrSampling},
		{"v2 unknown sampling", `{"format":"tensafe-tssp-evidence/v2","dataset":{"sampling":"client-poisson"}}`, ErrSampling},
		{"v2 server-poisson without dataset", `{"format":"tensafe-tssp-evidence/v2","dataset":{"sampling":"server-poisson","content_hash":"` + testDatasetHash + `"}}`, nil},
		{"v2 server-poisson bad hash", `{"format":"tensafe-tssp-evidence/v2","dataset":{"sampling":"server-poisson","dataset_id":"ds-1","content_hash":"sha256:AB"}}`, nil},
		{"v2 client-declared with hash", `{"format":"tensafe-tssp-evidence/v2","dataset":{"sampling":"client-declared","content_hash":"` + testDatasetHash + `"}}`, ErrSampling},
		{"v3", `{"format":"tensafe-tssp-evidence/v3"}`, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseEvidence([]byte(c.doc))
			if !errors.Is(err, ErrEvidence) || c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("got %v, want ErrEvidence and %v", err, c.want)
			}
		})
	}
}
