package tssp

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/privacy"
	"github.com/tensafe/tensafe/seal"
)

// Evidence formats (docs/TSSP_SPEC.md, "Evidence").
const (
	// EvidenceFormatV1 names the first schema of evidence.json: batches
	// proven by the digests of client-built batches only.
	EvidenceFormatV1 = "tensafe-tssp-evidence/v1"
	// EvidenceFormatV2 adds how the batches were drawn (dataset.sampling):
	// a server-poisson run is proven by its train_step entries and the
	// content hash of the dataset they drew from.
	EvidenceFormatV2 = "tensafe-tssp-evidence/v2"
	// EvidenceFormat is the schema the TenSafe service writes. Readers
	// accept EvidenceFormatV1 and EvidenceFormatV2.
	EvidenceFormat = EvidenceFormatV2
	// BatchDigestFormat names how one forward_backward batch is digested:
	// SHA-256 of the RFC 8785 canonical JSON of the request's batch
	// object, recorded as the "batch_digest" detail of the operation's
	// audit entry.
	BatchDigestFormat = "tensafe-batch-digest/v1"
	// BatchDigestDetail is the audit detail key holding a batch digest.
	BatchDigestDetail = "batch_digest"
	// DatasetHashFormat is the digest_format of server-poisson evidence:
	// the fingerprint is the content hash of the dataset in this format
	// (docs/API.md, "Server-sampled training").
	DatasetHashFormat = "tensafe-dataset/v1"
	// DatasetHashDetail and DatasetIDDetail are the audit detail keys of a
	// train_step entry naming the dataset it drew from.
	DatasetHashDetail = "dataset_hash"
	DatasetIDDetail   = "dataset_id"
)

// Audit operations the evidence interprets.
const (
	opForwardBackward       = "training.forward_backward"
	opForwardBackwardPrefix = "training.forward_backward_"
	opOptimStep             = "training.optim_step"
	opTrainStep             = "training.train_step"
)

// Errors of evidence v2 verification that callers tell apart; each comes
// wrapped together with ErrEvidence.
var (
	// ErrSampling: the evidence's sampling disagrees with its format, its
	// proofs or the DP certificate.
	ErrSampling = errors.New("tssp: evidence sampling inconsistent")
	// ErrClientStep: server-poisson evidence proves a client-declared
	// training step (forward_backward, forward_backward_custom or
	// optim_step), whose batch the client chose.
	ErrClientStep = errors.New("tssp: a client-declared training step in server-poisson evidence")
	// ErrDatasetHash: a train_step drew from a dataset whose content hash
	// is not the evidence's, or the fingerprint is not that hash.
	ErrDatasetHash = errors.New("tssp: dataset content hash mismatch")
)

// Evidence is the training provenance the service packages with a
// checkpoint: what was trained, how, how its batches were drawn (client
// batches by digest, or server Poisson draws from a dataset by its content
// hash), and the audit log entries of the training operations with
// inclusion proofs against a signed audit checkpoint. One type reads both
// schemas; Format says which.
type Evidence struct {
	Format     string           `json:"format"`
	Checkpoint EvidenceArtifact `json:"checkpoint"`
	Training   EvidenceTraining `json:"training"`
	Loss       LossSummary      `json:"loss_summary"`
	Dataset    EvidenceDataset  `json:"dataset"`
	Audit      EvidenceAudit    `json:"audit"`
}

// EvidenceArtifact names the checkpoint artifact the package was made from.
type EvidenceArtifact struct {
	ArtifactID  string `json:"artifact_id"`
	ContentHash string `json:"content_hash"`
	ClientID    string `json:"client_id"`
	Step        int64  `json:"step"`
	CreatedAt   string `json:"created_at"`
}

// EvidenceTraining summarises the training run.
type EvidenceTraining struct {
	BaseModel string `json:"base_model"`
	// Config is the training client's configuration (the API's
	// TrainingConfig, defaults filled in).
	Config json.RawMessage `json:"config"`
	// Clients are the training clients whose operations produced the
	// checkpoint, oldest first (more than one when a client loaded
	// another's checkpoint).
	Clients []string `json:"clients"`
	// OptimSteps counts the optimizer steps (optim_step and, in v2,
	// train_step operations); ForwardBackward the client batches
	// (forward_backward and forward_backward_custom); Examples sums the
	// examples the optimizer steps consumed.
	OptimSteps      int64 `json:"optim_steps"`
	ForwardBackward int64 `json:"forward_backward"`
	// TrainSteps counts the train_step operations (v2; absent in v1 and
	// when zero): server-drawn batches, each with its optimizer step.
	TrainSteps int64  `json:"train_steps,omitempty"`
	Examples   int64  `json:"examples"`
	StartedAt  string `json:"started_at"`
	FinishedAt string `json:"finished_at"`
}

// LossSummary summarises the loss forward_backward and train_step
// reported (the mean over each batch; a noise-only train_step has none),
// in operation order.
type LossSummary struct {
	Count  int       `json:"count"`
	First  float64   `json:"first"`
	Last   float64   `json:"last"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Mean   float64   `json:"mean"`
	Losses []float64 `json:"losses"`
}

// EvidenceDataset says how the training batches were drawn and
// fingerprints them.
type EvidenceDataset struct {
	// Sampling (v2) is the DP certificate's sampling: "server-poisson"
	// when every step is a train_step drawn by the server from the
	// dataset of ContentHash, "client-declared" otherwise. Absent in v1,
	// which is client-declared.
	Sampling privacy.Sampling `json:"sampling,omitempty"`
	// DatasetID and ContentHash (v2, server-poisson only) name the
	// dataset the train_steps drew from; ContentHash is what the proven
	// train_step entries record and the fingerprint.
	DatasetID   string `json:"dataset_id,omitempty"`
	ContentHash string `json:"content_hash,omitempty"`
	// Fingerprint is the DP certificate's dataset_fingerprint: for
	// server-poisson, ContentHash; otherwise DatasetFingerprint of the
	// batch digests recorded in the forward_backward entries of
	// Audit.Proofs, in log order.
	Fingerprint string `json:"fingerprint"`
	// DigestFormat is BatchDigestFormat, or DatasetHashFormat for
	// server-poisson.
	DigestFormat string `json:"digest_format"`
	// Batches counts the proven forward_backward operations, or for
	// server-poisson the train_steps (one Poisson draw each).
	Batches int64 `json:"batches"`
	// BatchesWithoutDigest counts forward_backward operations whose entry
	// holds no digest (recorded before digests were).
	BatchesWithoutDigest int64 `json:"batches_without_digest"`
}

// EvidenceAudit proves the training operations are in the audit log.
type EvidenceAudit struct {
	Origin   string `json:"origin"`
	TreeSize uint64 `json:"tree_size"`
	RootHash string `json:"root_hash"`
	// Checkpoint is the signed checkpoint note of TreeSize and RootHash
	// (docs/AUDIT_LOG.md §5); empty when the log signs none.
	Checkpoint string `json:"checkpoint,omitempty"`
	// Proofs hold each training operation's entry and its inclusion proof
	// in the tree of TreeSize entries (docs/AUDIT_LOG.md §6), without the
	// checkpoint, which is given once above.
	Proofs []*audit.InclusionProof `json:"proofs"`
}

// DatasetFingerprint combines batch digests ("sha256:<hex>" each) in
// order: "sha256:" and the hex SHA-256 of the digests, each followed by a
// newline.
func DatasetFingerprint(digests []string) string {
	h := sha256.New()
	for _, d := range digests {
		h.Write([]byte(d))
		h.Write([]byte{'\n'})
	}
	return hashString(h)
}

// ParseEvidence decodes evidence.json in the EvidenceFormatV1 or
// EvidenceFormatV2 schema, refusing unknown fields, trailing data, and v2
// fields in v1 evidence.
func ParseEvidence(b []byte) (*Evidence, error) {
	if len(b) > MaxEvidenceSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrEvidence, len(b), MaxEvidenceSize)
	}
	var e Evidence
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrEvidence, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the object", ErrEvidence)
	}
	d := &e.Dataset
	switch e.Format {
	case EvidenceFormatV1:
		switch {
		case d.Sampling != "":
			return nil, fmt.Errorf("%w: %w: dataset.sampling is a %s field; %s evidence is client-declared", ErrEvidence, ErrSampling, EvidenceFormatV2, EvidenceFormatV1)
		case d.DatasetID != "" || d.ContentHash != "":
			return nil, fmt.Errorf("%w: dataset.dataset_id and dataset.content_hash are %s fields", ErrEvidence, EvidenceFormatV2)
		case e.Training.TrainSteps != 0:
			return nil, fmt.Errorf("%w: training.train_steps is a %s field", ErrEvidence, EvidenceFormatV2)
		}
	case EvidenceFormatV2:
		switch d.Sampling {
		case privacy.SamplingServerPoisson:
			if d.DatasetID == "" {
				return nil, fmt.Errorf("%w: dataset.dataset_id: required with sampling %q", ErrEvidence, d.Sampling)
			}
			if !validHash(d.ContentHash) {
				return nil, fmt.Errorf("%w: dataset.content_hash: %q is not \"sha256:\" and 64 lowercase hex digits", ErrEvidence, d.ContentHash)
			}
		case privacy.SamplingClientDeclared:
			if d.DatasetID != "" || d.ContentHash != "" {
				return nil, fmt.Errorf("%w: %w: dataset.dataset_id and dataset.content_hash are for sampling %q only", ErrEvidence, ErrSampling, privacy.SamplingServerPoisson)
			}
		default:
			return nil, fmt.Errorf("%w: %w: dataset.sampling %q, want %q or %q", ErrEvidence, ErrSampling, d.Sampling,
				privacy.SamplingServerPoisson, privacy.SamplingClientDeclared)
		}
	default:
		return nil, fmt.Errorf("%w: format %q, want %q or %q", ErrEvidence, e.Format, EvidenceFormatV2, EvidenceFormatV1)
	}
	return &e, nil
}

// validHash reports whether s is "sha256:" and 64 lowercase hex digits.
func validHash(s string) bool {
	h, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(h) != 64 {
		return false
	}
	for _, c := range h {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// serverPoisson reports whether the evidence claims server-poisson
// sampling.
func (e *Evidence) serverPoisson() bool {
	return e.Format == EvidenceFormatV2 && e.Dataset.Sampling == privacy.SamplingServerPoisson
}

// VerifyAudit checks the audit half of the evidence: every proof is for
// the tree of Audit.TreeSize entries with root Audit.RootHash, each entry
// hashes to its entry hash and its audit path leads to the root, and the
// dataset record is the one the proven entries give. For client-declared
// evidence (v1, or v2 with that sampling) the fingerprint is that of the
// proven forward_backward entries' batch digests; v1 proves no train_step.
// For server-poisson evidence every proven training step is a train_step
// (ErrClientStep otherwise) that drew from the dataset of
// dataset.content_hash, which is the fingerprint (ErrDatasetHash
// otherwise). In v2 the counts of training must be those of the proofs.
// With key (the audit log's checkpoint verifying key), the checkpoint
// must be signed by it for Audit.Origin and commit to that size and root;
// without key the root is only as good as the package's signer, who
// vouches for it.
func (e *Evidence) VerifyAudit(key *seal.VerifyingKey) error {
	root, err := audit.ParseHash(e.Audit.RootHash)
	if err != nil {
		return fmt.Errorf("%w: audit.root_hash: %v", ErrEvidence, err)
	}
	var note []byte
	if e.Audit.Checkpoint != "" {
		note = []byte(e.Audit.Checkpoint)
	}
	if key != nil {
		if note == nil {
			return fmt.Errorf("%w: audit.checkpoint: none to check the root against", ErrEvidence)
		}
		c, err := audit.OpenCheckpoint(note, e.Audit.Origin, key)
		if err != nil {
			return fmt.Errorf("%w: audit.checkpoint: %w", ErrEvidence, err)
		}
		if c.Size != e.Audit.TreeSize || c.Root != root {
			return fmt.Errorf("%w: audit.checkpoint commits to size %d root %s, the evidence to size %d root %s",
				ErrEvidence, c.Size, c.Root, e.Audit.TreeSize, root)
		}
	}
	server := e.serverPoisson()
	var digests []string
	var fb, missing, optim, train, examples int64
	for i, p := range e.Audit.Proofs {
		if p == nil {
			return fmt.Errorf("%w: audit.proofs[%d]: null", ErrEvidence, i)
		}
		if p.TreeSize != e.Audit.TreeSize || p.Root != root || p.Origin != e.Audit.Origin {
			return fmt.Errorf("%w: audit.proofs[%d]: for another tree (size %d, root %s)", ErrEvidence, i, p.TreeSize, p.Root)
		}
		if i > 0 && p.Seq <= e.Audit.Proofs[i-1].Seq {
			return fmt.Errorf("%w: audit.proofs[%d]: not in log order", ErrEvidence, i)
		}
		if err := p.Verify(nil); err != nil {
			return fmt.Errorf("%w: audit.proofs[%d] (seq %d): %w", ErrEvidence, i, p.Seq, err)
		}
		op := p.Entry.Operation
		switch {
		case op == opForwardBackward || strings.HasPrefix(op, opForwardBackwardPrefix), op == opOptimStep:
			if server {
				return fmt.Errorf("%w: %w: audit.proofs[%d] (seq %d) is a %s, whose batch the client chose",
					ErrEvidence, ErrClientStep, i, p.Seq, op)
			}
			if op == opOptimStep {
				optim++
				examples += count(p.Entry.Details["example_count"])
				continue
			}
			fb++
			if d, ok := p.Entry.Details[BatchDigestDetail]; ok {
				digests = append(digests, d)
			} else {
				missing++
			}
		case op == opTrainStep:
			if e.Format == EvidenceFormatV1 {
				return fmt.Errorf("%w: %w: audit.proofs[%d] (seq %d) is a train_step, which %s cannot prove",
					ErrEvidence, ErrSampling, i, p.Seq, EvidenceFormatV1)
			}
			if server {
				if h := p.Entry.Details[DatasetHashDetail]; h != e.Dataset.ContentHash {
					return fmt.Errorf("%w: %w: audit.proofs[%d] (seq %d) is a train_step on dataset %q, the evidence's dataset.content_hash is %s",
						ErrEvidence, ErrDatasetHash, i, p.Seq, h, e.Dataset.ContentHash)
				}
			}
			train++
			examples += count(p.Entry.Details["example_count"])
		}
	}
	if server {
		switch {
		case e.Dataset.Fingerprint != e.Dataset.ContentHash:
			return fmt.Errorf("%w: %w: dataset.fingerprint %s is not dataset.content_hash %s", ErrEvidence, ErrDatasetHash, e.Dataset.Fingerprint, e.Dataset.ContentHash)
		case e.Dataset.DigestFormat != DatasetHashFormat:
			return fmt.Errorf("%w: dataset.digest_format %q, want %q with sampling %q", ErrEvidence, e.Dataset.DigestFormat, DatasetHashFormat, e.Dataset.Sampling)
		case train == 0:
			return fmt.Errorf("%w: %w: sampling %q, but no train_step is proven", ErrEvidence, ErrSampling, e.Dataset.Sampling)
		case e.Dataset.Batches != train || e.Dataset.BatchesWithoutDigest != 0:
			return fmt.Errorf("%w: dataset counts %d batches (%d without digest), the proofs hold %d train_steps", ErrEvidence, e.Dataset.Batches, e.Dataset.BatchesWithoutDigest, train)
		}
	} else {
		if got := DatasetFingerprint(digests); got != e.Dataset.Fingerprint {
			return fmt.Errorf("%w: dataset.fingerprint %s, the proven batch digests give %s", ErrEvidence, e.Dataset.Fingerprint, got)
		}
		if fb != e.Dataset.Batches || missing != e.Dataset.BatchesWithoutDigest {
			return fmt.Errorf("%w: dataset counts %d batches (%d without digest), the proofs hold %d (%d)",
				ErrEvidence, e.Dataset.Batches, e.Dataset.BatchesWithoutDigest, fb, missing)
		}
		if e.Format == EvidenceFormatV2 && e.Dataset.DigestFormat != BatchDigestFormat {
			return fmt.Errorf("%w: dataset.digest_format %q, want %q with sampling %q", ErrEvidence, e.Dataset.DigestFormat, BatchDigestFormat, e.Dataset.Sampling)
		}
	}
	if e.Format == EvidenceFormatV2 {
		t := &e.Training
		if t.OptimSteps != optim+train || t.ForwardBackward != fb || t.TrainSteps != train || t.Examples != examples {
			return fmt.Errorf("%w: training counts %d optim_steps, %d forward_backward, %d train_steps, %d examples; the proofs hold %d, %d, %d, %d",
				ErrEvidence, t.OptimSteps, t.ForwardBackward, t.TrainSteps, t.Examples, optim+train, fb, train, examples)
		}
	}
	return nil
}

// count parses an audit detail holding a count; anything else counts 0.
func count(s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// CheckCertificate checks that the evidence and a DP certificate describe
// the same run: the same sampling (v1 evidence is client-declared) and
// dataset fingerprint, as many optimizer steps as the accountant
// recorded, and the certificate's session among the evidence's training
// clients (the last, which saved the checkpoint).
func (e *Evidence) CheckCertificate(c *privacy.Certificate) error {
	switch {
	case e.Format == EvidenceFormatV2 && c.Sampling != e.Dataset.Sampling:
		return fmt.Errorf("%w: %w: the certificate's sampling %q differs from the evidence's %q", ErrEvidence, ErrSampling, c.Sampling, e.Dataset.Sampling)
	case e.Format != EvidenceFormatV2 && c.Sampling == privacy.SamplingServerPoisson:
		return fmt.Errorf("%w: %w: the certificate says %q, which %s evidence cannot prove", ErrEvidence, ErrSampling, c.Sampling, e.Format)
	case c.DatasetFingerprint != e.Dataset.Fingerprint:
		return fmt.Errorf("%w: the certificate's dataset_fingerprint %s differs from the evidence's %s", ErrEvidence, c.DatasetFingerprint, e.Dataset.Fingerprint)
	case c.Steps != e.Training.OptimSteps:
		return fmt.Errorf("%w: the certificate counts %d steps, the evidence proves %d optim_steps", ErrEvidence, c.Steps, e.Training.OptimSteps)
	case len(e.Training.Clients) == 0 || c.SessionID != e.Training.Clients[len(e.Training.Clients)-1]:
		return fmt.Errorf("%w: the certificate's session %q is not the client that saved the checkpoint (%v)", ErrEvidence, c.SessionID, e.Training.Clients)
	}
	return nil
}
