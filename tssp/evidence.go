package tssp

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/privacy"
	"github.com/tensafe/tensafe/seal"
)

// Evidence formats (docs/TSSP_SPEC.md, "Evidence").
const (
	// EvidenceFormat names the schema of evidence.json that the TenSafe
	// service writes.
	EvidenceFormat = "tensafe-tssp-evidence/v1"
	// BatchDigestFormat names how one forward_backward batch is digested:
	// SHA-256 of the RFC 8785 canonical JSON of the request's batch
	// object, recorded as the "batch_digest" detail of the operation's
	// audit entry.
	BatchDigestFormat = "tensafe-batch-digest/v1"
	// BatchDigestDetail is the audit detail key holding a batch digest.
	BatchDigestDetail = "batch_digest"
)

// Evidence is the training provenance the service packages with a
// checkpoint: what was trained, how, on which batches (by digest), and the
// audit log entries of the training operations with inclusion proofs
// against a signed audit checkpoint.
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
	// OptimSteps and ForwardBackward count the successful operations;
	// Examples sums the examples the optimizer steps consumed.
	OptimSteps      int64  `json:"optim_steps"`
	ForwardBackward int64  `json:"forward_backward"`
	Examples        int64  `json:"examples"`
	StartedAt       string `json:"started_at"`
	FinishedAt      string `json:"finished_at"`
}

// LossSummary summarises the loss forward_backward reported (the mean
// over each batch), in operation order.
type LossSummary struct {
	Count  int       `json:"count"`
	First  float64   `json:"first"`
	Last   float64   `json:"last"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Mean   float64   `json:"mean"`
	Losses []float64 `json:"losses"`
}

// EvidenceDataset fingerprints the training data by the digests of its
// batches.
type EvidenceDataset struct {
	// Fingerprint is DatasetFingerprint of the batch digests recorded in
	// the forward_backward entries of Audit.Proofs, in log order; the DP
	// certificate's dataset_fingerprint is the same value.
	Fingerprint  string `json:"fingerprint"`
	DigestFormat string `json:"digest_format"`
	Batches      int64  `json:"batches"`
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

// ParseEvidence decodes evidence.json in the EvidenceFormat schema,
// refusing unknown fields and trailing data.
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
	if e.Format != EvidenceFormat {
		return nil, fmt.Errorf("%w: format %q, want %q", ErrEvidence, e.Format, EvidenceFormat)
	}
	return &e, nil
}

// VerifyAudit checks the audit half of the evidence: every proof is for
// the tree of Audit.TreeSize entries with root Audit.RootHash, each entry
// hashes to its entry hash and its audit path leads to the root, and the
// dataset fingerprint is the one the proven forward_backward entries'
// batch digests give. With key (the audit log's checkpoint verifying
// key), the checkpoint must be signed by it for Audit.Origin and commit to
// that size and root; without key the root is only as good as the
// package's signer, who vouches for it.
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
	var digests []string
	var fb, missing int64
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
		if op := p.Entry.Operation; op == "training.forward_backward" || strings.HasPrefix(op, "training.forward_backward_") {
			fb++
			if d, ok := p.Entry.Details[BatchDigestDetail]; ok {
				digests = append(digests, d)
			} else {
				missing++
			}
		}
	}
	if got := DatasetFingerprint(digests); got != e.Dataset.Fingerprint {
		return fmt.Errorf("%w: dataset.fingerprint %s, the proven batch digests give %s", ErrEvidence, e.Dataset.Fingerprint, got)
	}
	if fb != e.Dataset.Batches || missing != e.Dataset.BatchesWithoutDigest {
		return fmt.Errorf("%w: dataset counts %d batches (%d without digest), the proofs hold %d (%d)",
			ErrEvidence, e.Dataset.Batches, e.Dataset.BatchesWithoutDigest, fb, missing)
	}
	return nil
}

// CheckCertificate checks that the evidence and a DP certificate describe
// the same run: the same dataset fingerprint, as many optimizer steps as
// the accountant recorded, and the certificate's session among the
// evidence's training clients (the last, which saved the checkpoint).
func (e *Evidence) CheckCertificate(c *privacy.Certificate) error {
	switch {
	case c.DatasetFingerprint != e.Dataset.Fingerprint:
		return fmt.Errorf("%w: the certificate's dataset_fingerprint %s differs from the evidence's %s", ErrEvidence, c.DatasetFingerprint, e.Dataset.Fingerprint)
	case c.Steps != e.Training.OptimSteps:
		return fmt.Errorf("%w: the certificate counts %d steps, the evidence proves %d optim_steps", ErrEvidence, c.Steps, e.Training.OptimSteps)
	case len(e.Training.Clients) == 0 || c.SessionID != e.Training.Clients[len(e.Training.Clients)-1]:
		return fmt.Errorf("%w: the certificate's session %q is not the client that saved the checkpoint (%v)", ErrEvidence, c.SessionID, e.Training.Clients)
	}
	return nil
}
