package service

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/engine"
	"github.com/tensafe/tensafe/model"
	"github.com/tensafe/tensafe/privacy"
	"github.com/tensafe/tensafe/safetensors"
	"github.com/tensafe/tensafe/seal"
	"github.com/tensafe/tensafe/store"
	"github.com/tensafe/tensafe/tssp"
)

// PackageConfig configures DP certificates and TenSafe Secure Packages
// (Config.Packages).
type PackageConfig struct {
	// Signer signs package manifests. Without it packaging fails with
	// ErrFailedPrecondition and PackageSigner reports none.
	Signer *seal.SigningKey
	// AuditStore is where Config.Audit keeps its entries: certificates and
	// evidence read the training operations' entries from it and prove
	// their inclusion. Without it both fail with ErrFailedPrecondition.
	AuditStore audit.Store
	// Version names the software in certificates and manifests (default
	// "dev").
	Version string
	// AuditKey is the public half of the key that signs Config.Audit's
	// checkpoints, published with the package signer so that receivers can
	// check the evidence's inclusion proofs (optional).
	AuditKey *seal.VerifyingKey
}

// packager holds what packaging keeps between calls.
type packager struct {
	cfg PackageConfig

	mu         sync.Mutex
	baseHashes map[string]string // base model name → tssp.BaseModelHash of its folder
}

func newPackager(cfg PackageConfig) *packager {
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	return &packager{cfg: cfg, baseHashes: map[string]string{}}
}

// settleWait bounds how long a request waits for a just-finished
// operation's audit entry (written right after its future), polling every
// settlePoll.
const (
	settleWait = 2 * time.Second
	settlePoll = 10 * time.Millisecond
)

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// maxLineage bounds how many load_state hops the evidence follows back.
const maxLineage = 64

// PackageSigner returns the public half of the package signing key, or
// ErrFailedPrecondition when the service has none.
func (s *Service) PackageSigner() (*seal.VerifyingKey, error) {
	if s.pkg.cfg.Signer == nil {
		return nil, fmt.Errorf("%w: this server has no package signing key", ErrFailedPrecondition)
	}
	return s.pkg.cfg.Signer.Public(), nil
}

// AuditCheckpointKey returns the audit log's checkpoint verifying key, or nil
// when it was not configured.
func (s *Service) AuditCheckpointKey() *seal.VerifyingKey { return s.pkg.cfg.AuditKey }

// BatchDigest returns the tensafe-batch-digest/v1 of a forward_backward
// batch: "sha256:" and the hex SHA-256 of the RFC 8785 canonical JSON of the
// batch object (keys sorted, no whitespace, absent optional fields
// omitted). The service records it in the operation's audit entry
// (detail tssp.BatchDigestDetail), and the dataset fingerprint of a
// certificate combines them.
func BatchDigest(b api.Batch) string {
	raw, err := json.Marshal(b)
	if err != nil {
		// Batches that passed validation always encode; an error here
		// still yields a digest that cannot collide with a real one.
		raw = []byte(err.Error())
	}
	var v any
	if err := json.Unmarshal(raw, &v); err == nil {
		// Maps encode with sorted keys, float64s in the shortest form:
		// the canonical form for this data (integers below 2^53).
		if c, err := json.Marshal(v); err == nil {
			raw = c
		}
	}
	s := sha256.Sum256(raw)
	return seal.ContentHashPrefix + hex.EncodeToString(s[:])
}

// isTrainingOp reports whether an audit entry's operation is one whose
// entries the evidence proves: those that shaped the weights.
func isTrainingOp(op string) bool {
	switch op {
	case "training.create_client", "training." + store.KindForwardBackward, "training." + kindForwardBackwardCustom,
		"training." + store.KindOptimStep, "training." + store.KindLoadState, "training." + store.KindSaveState,
		opTrainStep:
		return true
	}
	return false
}

// history is what the audit log says about a training run.
type history struct {
	origin  string
	tree    *audit.Tree
	size    uint64
	note    []byte
	entries []audit.Entry // the run's successful training entries, in log order
	clients []string      // oldest first
}

// readHistory reads the audit log and returns the successful training
// entries that led to the state of client at seq until(...) (exclusive):
// the client's since its last load_state, preceded by those of the client
// that saved the checkpoint it loaded, and so on. With prove it first signs
// a checkpoint of the log (unless the log signs none) and reads up to it,
// building the Merkle tree the evidence's proofs come from; without, it
// reads up to the log's current size.
func (s *Service) readHistory(ctx context.Context, tenant, client string, prove bool, until func(entries []audit.Entry) uint64) (*history, error) {
	st := s.pkg.cfg.AuditStore
	if st == nil {
		return nil, fmt.Errorf("%w: this server keeps no readable audit store for evidence", ErrFailedPrecondition)
	}
	h := &history{tree: audit.NewTree(), size: s.audit.Size()}
	if prove {
		hadSigned := s.audit.LatestCheckpoint() != nil
		note, err := s.audit.Checkpoint(ctx)
		switch {
		case err == nil:
			sc, perr := audit.ParseCheckpoint(note)
			if perr != nil {
				return nil, fmt.Errorf("service: audit checkpoint: %w", perr)
			}
			h.size, h.note = sc.Size, note
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case hadSigned:
			return nil, fmt.Errorf("service: sign an audit checkpoint: %w", err)
		default:
			// A log without a signer writes no checkpoints: prove against
			// the unsigned root, which the package signer vouches for.
			h.size = s.audit.Size()
		}
	}
	var all []audit.Entry
	errStop := errors.New("stop")
	err := st.Scan(ctx, 0, func(pos uint64, e audit.Entry) error {
		if pos >= h.size {
			return errStop
		}
		if e.Seq != pos {
			return fmt.Errorf("audit position %d holds seq %d", pos, e.Seq)
		}
		if pos == 0 {
			h.origin = e.Origin()
		}
		h.tree.Append(e.EntryHash)
		if e.TenantID == tenant && e.Outcome == audit.OutcomeSuccess && isTrainingOp(e.Operation) {
			all = append(all, e)
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, fmt.Errorf("service: read audit log: %w", err)
	}
	if h.tree.Size() != h.size {
		return nil, fmt.Errorf("service: read audit log: %d entries, the checkpoint covers %d", h.tree.Size(), h.size)
	}
	if h.note != nil {
		sc, _ := audit.ParseCheckpoint(h.note)
		if sc.Root != h.tree.Root() {
			return nil, fmt.Errorf("service: the audit log's root at size %d differs from its checkpoint's", h.size)
		}
	}
	before := until(all)
	for depth := 0; ; depth++ {
		var own []audit.Entry
		for _, e := range all {
			if e.Resource == client && e.Seq < before {
				own = append(own, e)
			}
		}
		loaded := ""
		for i := len(own) - 1; i >= 0; i-- {
			if own[i].Operation == "training."+store.KindLoadState {
				loaded, own = own[i].Details["artifact_id"], own[i:]
				break
			}
		}
		h.entries = append(own, h.entries...)
		h.clients = append([]string{client}, h.clients...)
		if loaded == "" {
			break
		}
		if depth >= maxLineage {
			return nil, fmt.Errorf("%w: more than %d load_state hops behind the checkpoint", ErrFailedPrecondition, maxLineage)
		}
		save, ok := findSave(all, loaded)
		if !ok {
			return nil, fmt.Errorf("service: the audit log has no save_state of artifact %s, which client %s loaded", loaded, client)
		}
		client, before = save.Resource, save.Seq+1
	}
	return h, nil
}

func findSave(all []audit.Entry, artifactID string) (audit.Entry, bool) {
	for _, e := range all {
		if e.Operation == "training."+store.KindSaveState && e.Details["artifact_id"] == artifactID {
			return e, true
		}
	}
	return audit.Entry{}, false
}

// evidence builds the evidence (tssp.EvidenceFormat, v2) of h, whose
// batches were drawn as sampling says (history.sampling, the DP
// certificate's), with dataset fingerprint fingerprint: for
// server-poisson the content hash of the dataset the train_steps drew
// from, otherwise that of the client batches' digests.
func (s *Service) evidence(ctx context.Context, tenant string, h *history, art tssp.EvidenceArtifact, base string, cfg api.TrainingConfig,
	sampling privacy.Sampling, fingerprint string) (*tssp.Evidence, error) {
	cj, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("service: evidence: %w", err)
	}
	root := h.tree.Root()
	ev := &tssp.Evidence{
		Format:     tssp.EvidenceFormat,
		Checkpoint: art,
		Training:   tssp.EvidenceTraining{BaseModel: base, Config: cj, Clients: h.clients},
		Dataset:    tssp.EvidenceDataset{Sampling: sampling, DigestFormat: tssp.BatchDigestFormat},
		Loss:       tssp.LossSummary{Losses: []float64{}},
		Audit: tssp.EvidenceAudit{Origin: h.origin, TreeSize: h.size, RootHash: root.String(), Checkpoint: string(h.note),
			Proofs: []*audit.InclusionProof{}},
	}
	var digests []string
	var sum float64
	for _, e := range h.entries {
		hs, err := h.tree.InclusionProof(e.Seq, h.size)
		if err != nil {
			return nil, fmt.Errorf("service: evidence: prove entry %d: %w", e.Seq, err)
		}
		ev.Audit.Proofs = append(ev.Audit.Proofs, &audit.InclusionProof{Origin: h.origin, Seq: e.Seq, TreeSize: h.size,
			Entry: e, Root: root, Hashes: hs})
		switch op := strings.TrimPrefix(e.Operation, "training."); op {
		case kindTrainStep:
			// A server-drawn batch and its optimizer step, proven (for
			// server-poisson) by the content hash of the dataset drawn
			// from, which the entry records.
			ev.Training.TrainSteps++
			ev.Training.OptimSteps++
			var n int64
			fmt.Sscan(e.Details["example_count"], &n)
			ev.Training.Examples += n
			if sampling == privacy.SamplingServerPoisson {
				ev.Dataset.Batches++
				if ev.Dataset.DatasetID == "" {
					ev.Dataset.DatasetID = e.Details[tssp.DatasetIDDetail]
				}
			}
			if l, ok := s.trainStepLoss(ctx, tenant, e.Details["operation_id"]); ok {
				addLoss(&ev.Loss, l)
				sum += l
			}
		case store.KindOptimStep:
			ev.Training.OptimSteps++
			var n int64
			fmt.Sscan(e.Details["example_count"], &n)
			ev.Training.Examples += n
		case store.KindForwardBackward, kindForwardBackwardCustom:
			ev.Training.ForwardBackward++
			ev.Dataset.Batches++
			if d, ok := e.Details[tssp.BatchDigestDetail]; ok {
				digests = append(digests, d)
			} else {
				ev.Dataset.BatchesWithoutDigest++
			}
			l, ok := s.operationLoss(ctx, tenant, e.Details["operation_id"])
			if !ok {
				continue
			}
			addLoss(&ev.Loss, l)
			sum += l
		}
	}
	if ev.Loss.Count > 0 {
		ev.Loss.Mean = sum / float64(ev.Loss.Count)
	}
	if sampling == privacy.SamplingServerPoisson {
		// history.sampling said so only when every step is a train_step
		// recording this one hash.
		ev.Dataset.DigestFormat, ev.Dataset.ContentHash, ev.Dataset.Fingerprint = tssp.DatasetHashFormat, fingerprint, fingerprint
		ev.Dataset.BatchesWithoutDigest = 0
	} else {
		ev.Dataset.Fingerprint = tssp.DatasetFingerprint(digests)
	}
	if fingerprint != ev.Dataset.Fingerprint {
		return nil, fmt.Errorf("service: evidence: fingerprint %s, the history gives %s", ev.Dataset.Fingerprint, fingerprint)
	}
	if len(h.entries) > 0 {
		ev.Training.StartedAt = privacy.FormatTime(h.entries[0].Time)
		ev.Training.FinishedAt = privacy.FormatTime(h.entries[len(h.entries)-1].Time)
	}
	return ev, nil
}

// fingerprint is the dataset fingerprint of the batch digests in h.
func (h *history) fingerprint() string {
	var digests []string
	for _, e := range h.entries {
		if d, ok := e.Details[tssp.BatchDigestDetail]; ok && strings.HasPrefix(e.Operation, "training."+store.KindForwardBackward) {
			digests = append(digests, d)
		}
	}
	return tssp.DatasetFingerprint(digests)
}

// span returns the times of the first and last entry of h (now, now when
// it has none).
func (h *history) span() (started, finished time.Time) {
	if len(h.entries) == 0 {
		now := time.Now()
		return now, now
	}
	return h.entries[0].Time, h.entries[len(h.entries)-1].Time
}

// addLoss appends one batch's loss to the summary (Mean is left to the
// caller).
func addLoss(ls *tssp.LossSummary, l float64) {
	if ls.Count == 0 {
		ls.First, ls.Min, ls.Max = l, l, l
	}
	ls.Count++
	ls.Last, ls.Min, ls.Max = l, math.Min(ls.Min, l), math.Max(ls.Max, l)
	ls.Losses = append(ls.Losses, l)
}

// trainStepLoss returns the mean loss a succeeded train_step reported
// over its drawn examples; a noise-only step (no example) has none.
func (s *Service) trainStepLoss(ctx context.Context, tenant, opID string) (float64, bool) {
	if opID == "" {
		return 0, false
	}
	op, err := s.st.GetOperation(ctx, tenant, opID)
	if err != nil || op.State != store.OpSucceeded {
		return 0, false
	}
	var r api.TrainStepResult
	if json.Unmarshal(op.Result, &r) != nil || r.Examples == 0 || math.IsNaN(r.Loss) || math.IsInf(r.Loss, 0) {
		return 0, false
	}
	return r.Loss, true
}

// operationLoss returns the loss a succeeded forward_backward reported.
func (s *Service) operationLoss(ctx context.Context, tenant, opID string) (float64, bool) {
	if opID == "" {
		return 0, false
	}
	op, err := s.st.GetOperation(ctx, tenant, opID)
	if err != nil || op.State != store.OpSucceeded {
		return 0, false
	}
	// A custom loss whose client reported no losses has no loss: its
	// per_example_loss is empty.
	var r struct {
		Loss           *float64  `json:"loss"`
		PerExampleLoss []float64 `json:"per_example_loss"`
	}
	if json.Unmarshal(op.Result, &r) != nil || r.Loss == nil || len(r.PerExampleLoss) == 0 || math.IsNaN(*r.Loss) || math.IsInf(*r.Loss, 0) {
		return 0, false
	}
	return *r.Loss, true
}

// certificate certifies budget for the adapter weights hashing to
// adapterHash, trained as h says.
func (s *Service) certificate(budget *privacy.Budget, cfg api.TrainingConfig, h *history, adapterHash, session string) (*privacy.Certificate, error) {
	if budget.Steps() == 0 {
		return nil, fmt.Errorf("%w: no optim_step has been recorded, so there is no guarantee to certify yet", ErrFailedPrecondition)
	}
	started, finished := h.span()
	sampling, fingerprint := h.sampling(cfg, budget.Steps()) // trainstep.go
	in := privacy.CertificateInput{
		Sampling: sampling, ClippingNorm: cfg.DP.MaxGradNorm, DatasetSize: cfg.DP.DatasetSize,
		TenSafeVersion: s.pkg.cfg.Version, AdapterHash: adapterHash, DatasetFingerprint: fingerprint,
		SessionID: session, StartedAt: started, FinishedAt: finished, IssuedAt: time.Now(),
	}
	if in.IssuedAt.Before(finished) {
		in.IssuedAt = finished
	}
	c, err := privacy.NewCertificate(budget, in)
	if err != nil {
		return nil, fmt.Errorf("service: DP certificate: %w", err)
	}
	return c, nil
}

// adapterFiles renders a LoRA adapter as PEFT's adapter_config.json and
// adapter_model.safetensors, and the SHA-256 of the latter.
func adapterFiles(l *model.LoRA, base string) (config, weights []byte, hash string, err error) {
	if config, err = l.PEFTConfigJSON(base); err != nil {
		return nil, nil, "", err
	}
	var w bytes.Buffer
	if err := l.WriteSafetensors(&w); err != nil {
		return nil, nil, "", err
	}
	sum := sha256.Sum256(w.Bytes())
	return config, w.Bytes(), seal.ContentHashPrefix + hex.EncodeToString(sum[:]), nil
}

// checkpointAdapter renders the LoRA weights of an engine state
// (docs/CHECKPOINT.md: tensors "lora/<name>" and the "tensafe" header) as
// PEFT's adapter_config.json and adapter_model.safetensors, and the SHA-256
// of the latter, without building an engine: the tensor bytes are checked
// against the layout of the base model and copied as they are, so that
// packaging a large adapter costs a few times its size in memory, not the
// engine's optimizer state over again. The bytes equal those adapterFiles
// writes for the same weights.
func checkpointAdapter(state []byte, mc model.Config, base string) (config, weights []byte, hash string, err error) {
	f, err := safetensors.Parse(state)
	if err != nil {
		return nil, nil, "", fmt.Errorf("engine state: %w", err)
	}
	var h struct {
		Format     string           `json:"format"`
		BaseParams string           `json:"base_params"`
		LoRA       model.LoRAConfig `json:"lora"`
	}
	if err := json.Unmarshal([]byte(f.Metadata["tensafe"]), &h); err != nil {
		return nil, nil, "", fmt.Errorf("engine state: header: %w", err)
	}
	// v1 and v2 hold the same "lora/<name>" tensors; v2 only adds the
	// optimizer_state field, which packaging does not read.
	if h.Format != engine.StateFormat && h.Format != engine.StateFormatV1 {
		return nil, nil, "", fmt.Errorf("engine state: format %q, want %q or %q", h.Format, engine.StateFormat, engine.StateFormatV1)
	}
	if h.BaseParams != strconv.FormatInt(mc.Parameters(), 10) {
		return nil, nil, "", fmt.Errorf("engine state: saved for a base model of %s parameters, this one has %d", h.BaseParams, mc.Parameters())
	}
	layout, err := model.NewLoRA(mc, h.LoRA, 0)
	if err != nil {
		return nil, nil, "", fmt.Errorf("engine state: %w", err)
	}
	ts := make(map[string]*safetensors.Tensor, len(layout.Names))
	for _, n := range layout.Names {
		t, ok := f.Tensors["lora/"+n]
		if !ok {
			return nil, nil, "", fmt.Errorf("engine state: missing tensor %q", "lora/"+n)
		}
		if t.DType != safetensors.F32 || !slices.Equal(t.Shape, layout.Shapes[n]) {
			return nil, nil, "", fmt.Errorf("engine state: tensor %q is %s%v, want F32%v", "lora/"+n, t.DType, t.Shape, layout.Shapes[n])
		}
		ts[n] = t
	}
	layout.Values = nil
	if config, err = layout.PEFTConfigJSON(base); err != nil {
		return nil, nil, "", err
	}
	var w bytes.Buffer
	if err := safetensors.Write(&w, ts, map[string]string{"format": "pt"}); err != nil {
		return nil, nil, "", fmt.Errorf("adapter: %w", err)
	}
	sum := sha256.Sum256(w.Bytes())
	return config, w.Bytes(), seal.ContentHashPrefix + hex.EncodeToString(sum[:]), nil
}

// DPCertificate returns the canonical JSON of the DP certificate of client
// id as it stands (docs/DP_CERTIFICATE.md): its accountant's history and ε,
// the SHA-256 of its current adapter in PEFT form, and the fingerprint of
// the batches its forward_backward operations recorded in the audit log. It
// fails with ErrFailedPrecondition while operations are queued or running
// on the client (the adapter and budget would be moving), and before the
// first optim_step.
func (s *Service) DPCertificate(ctx context.Context, tenant, id string) ([]byte, error) {
	sess, err := s.liveSession(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	// A consistent snapshot: no operation runs while sess.mu is held and
	// the queue is empty (a finished operation's audit entry is written
	// before the next starts).
	// The worker marks the session idle only after the last operation's
	// future and audit entry are written: a client that has just seen its
	// last future finish may ask a moment before that.
	sess.mu.Lock()
	for wait := settleWait; sess.running && len(sess.queue) == 0 && wait > 0; wait -= settlePoll {
		sess.mu.Unlock()
		if err := sleepCtx(ctx, settlePoll); err != nil {
			return nil, err
		}
		sess.mu.Lock()
	}
	if sess.running || len(sess.queue) > 0 {
		sess.mu.Unlock()
		return nil, fmt.Errorf("%w: operations are queued or running on the training client; wait for them before asking for its certificate", ErrFailedPrecondition)
	}
	state, err := sess.budget.MarshalBinary()
	lora, cfg, base := sess.eng.Adapter(), sess.plan.cfg, sess.base.name
	logSize := s.audit.Size()
	sess.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("service: budget state: %w", err)
	}
	budget, err := privacy.ParseBudget(state)
	if err != nil {
		return nil, fmt.Errorf("service: budget state: %w", err)
	}
	if budget.Steps() == 0 {
		return nil, fmt.Errorf("%w: no optim_step has been recorded, so there is no guarantee to certify yet", ErrFailedPrecondition)
	}
	_, _, hash, err := adapterFiles(lora, base)
	if err != nil {
		return nil, fmt.Errorf("service: DP certificate: %w", err)
	}
	h, err := s.readHistory(ctx, tenant, id, false, func([]audit.Entry) uint64 { return logSize })
	if err != nil {
		return nil, err
	}
	c, err := s.certificate(budget, cfg, h, hash, id)
	if err != nil {
		return nil, err
	}
	out, err := c.CanonicalJSON()
	if err != nil {
		return nil, fmt.Errorf("service: DP certificate: %w", err)
	}
	s.record(ctx, audit.Record{TenantID: tenant, Actor: actorOf(ctx), Operation: "training.dp_certificate", Resource: id,
		Outcome: audit.OutcomeSuccess, Details: map[string]string{"epsilon": fmt.Sprintf("%.6g", c.Epsilon),
			"steps": fmt.Sprint(c.Steps), "adapter_hash": hash}})
	return out, nil
}

// parseRecipients reads PackageRequest.Recipients.
func parseRecipients(in []string) (rs []*seal.RecipientPublicKey, tenant bool, err error) {
	if len(in) == 0 {
		return nil, false, fieldErr("recipients", `is required: recipient public keys ("tensafe-recipient-pub-v1:…") and/or "tenant"`)
	}
	if len(in) > tssp.MaxRecipients+1 {
		return nil, false, fieldErr("recipients", "%d entries, at most %d keys and \"tenant\"", len(in), tssp.MaxRecipients)
	}
	seen := map[string]int{}
	for i, s := range in {
		field := fmt.Sprintf("recipients[%d]", i)
		s = strings.TrimSpace(s)
		if s == api.RecipientTenant {
			if tenant {
				return nil, false, fieldErr(field, `"tenant" given twice`)
			}
			tenant = true
			continue
		}
		// Never quote the value: a secret key pasted by mistake must not
		// reach an error message or a log.
		if strings.HasPrefix(s, seal.RecipientPublicKeyPrefix) {
			p, err := seal.ParseRecipientPublicKeyText(s)
			if err == nil {
				if j, dup := seen[p.KeyID()]; dup {
					return nil, false, fieldErr(field, "the same key as recipients[%d]", j)
				}
				seen[p.KeyID()] = i
				rs = append(rs, p)
				continue
			}
			return nil, false, fieldErr(field, "is not a valid recipient public key (X25519 + ML-KEM-768, text form %q…)", seal.RecipientPublicKeyPrefix)
		}
		if strings.Contains(strings.ToLower(s), "secret") {
			return nil, false, fieldErr(field, "looks like a secret key; send the recipient's public key (%q…), and treat that secret key as exposed", seal.RecipientPublicKeyPrefix)
		}
		return nil, false, fieldErr(field, `is neither a recipient public key (%q…) nor "tenant"`, seal.RecipientPublicKeyPrefix)
	}
	if len(rs) > tssp.MaxRecipients {
		return nil, false, fieldErr("recipients", "%d keys, at most %d", len(rs), tssp.MaxRecipients)
	}
	return rs, tenant, nil
}

// PackageArtifact makes a TenSafe Secure Package (docs/TSSP_SPEC.md) of
// checkpoint artifactID of tenant and stores it as a new artifact of kind
// "tssp": the checkpoint's LoRA weights as a PEFT adapter encrypted to the
// recipients, the DP certificate of the checkpoint's accountant for exactly
// those weights, and the evidence (configuration, steps, loss summary,
// dataset fingerprint, and the training operations' audit entries with
// inclusion proofs against a signed audit checkpoint), signed with the
// service's package signing key. Another tenant's artifact is ErrNotFound;
// a bad recipient or an artifact that is not a checkpoint is a
// *FieldError. The package is written under the tenant's KEK like every
// artifact; the download is the package file.
func (s *Service) PackageArtifact(ctx context.Context, tenant, artifactID string, req api.PackageRequest) (res api.PackageResult, err error) {
	src, err := s.getArtifact(ctx, tenant, artifactID)
	if err != nil {
		return res, err
	}
	defer func() {
		rcd := auditRecordFor(ctx, tenant, "artifact.package", artifactID, err)
		if rcd.Details == nil {
			rcd.Details = map[string]string{}
		}
		if err == nil {
			rcd.Details["package_artifact_id"] = res.Artifact.ID
			rcd.Details["package_id"] = res.PackageID
			rcd.Details["signer_key_id"] = res.Signer
			rcd.Details["recipient_count"] = fmt.Sprint(len(res.Recipients))
		}
		s.record(ctx, rcd)
	}()
	if src.Kind != store.ArtifactCheckpoint {
		return res, fieldErr("artifact_id", "is a %q artifact; only checkpoints (save_state) can be packaged", src.Kind)
	}
	recipients, forTenant, err := parseRecipients(req.Recipients)
	if err != nil {
		return res, err
	}
	name := req.Name
	if name == "" {
		if name = src.Name + ".tssp"; len(name) > store.MaxNameLen {
			name = src.ID + ".tssp"
		}
	}
	if err := checkName(name); err != nil {
		return res, err
	}
	signer := s.pkg.cfg.Signer
	if signer == nil {
		return res, fmt.Errorf("%w: this server has no package signing key", ErrFailedPrecondition)
	}
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	case <-ctx.Done():
		return res, ctx.Err()
	}

	// The checkpoint: engine state and accountant.
	rc, err := s.openArtifact(ctx, src)
	if err != nil {
		return res, err
	}
	data, err := io.ReadAll(io.LimitReader(rc, maxCheckpointSize+1))
	rc.Close()
	if err != nil {
		return res, fmt.Errorf("service: read checkpoint %s: %w", src.ID, err)
	}
	defer clear(data)
	cp, err := parseCheckpoint(data)
	if err != nil {
		return res, fmt.Errorf("service: checkpoint %s: %w", src.ID, err)
	}
	base, ok := s.models.get(cp.header.BaseModel)
	if !ok {
		return res, fmt.Errorf("%w: checkpoint %s is of base model %q, which is no longer registered", ErrFailedPrecondition, src.ID, cp.header.BaseModel)
	}
	p, err := validateConfig(cp.header.Config)
	if err != nil {
		return res, fmt.Errorf("service: checkpoint %s: config: %w", src.ID, err)
	}
	m, _, err := base.load()
	if err != nil {
		return res, err
	}
	budget, err := privacy.ParseBudget(cp.budget)
	if err != nil {
		return res, fmt.Errorf("service: checkpoint %s: budget: %w", src.ID, err)
	}
	config, weights, weightsHash, err := checkpointAdapter(cp.engine, m.Config, base.name)
	if err != nil {
		return res, fmt.Errorf("service: checkpoint %s: %w", src.ID, err)
	}
	defer clear(weights)

	// Evidence up to the save_state that wrote the checkpoint. Its audit
	// entry is written just after its future is: a client that packages
	// at once may be a moment early.
	var h *history
	for wait := settleWait; ; wait -= settlePoll {
		found := false
		h, err = s.readHistory(ctx, tenant, src.ClientID, true, func(all []audit.Entry) uint64 {
			e, ok := findSave(all, src.ID)
			if ok {
				found = true
				return e.Seq + 1
			}
			return 0
		})
		if err != nil {
			return res, err
		}
		if found || wait <= 0 {
			break
		}
		if err := sleepCtx(ctx, settlePoll); err != nil {
			return res, err
		}
	}
	if len(h.entries) == 0 || h.entries[len(h.entries)-1].Details["artifact_id"] != src.ID {
		return res, fmt.Errorf("%w: the audit log holds no successful save_state of checkpoint %s", ErrFailedPrecondition, src.ID)
	}
	sampling, fingerprint := h.sampling(p.cfg, budget.Steps()) // as the certificate says
	ev, err := s.evidence(ctx, tenant, h, tssp.EvidenceArtifact{ArtifactID: src.ID, ContentHash: src.ContentHash,
		ClientID: src.ClientID, Step: cp.header.Step, CreatedAt: privacy.FormatTime(src.CreatedAt)}, base.name, p.cfg,
		sampling, fingerprint)
	if err != nil {
		return res, err
	}
	evJSON, err := json.Marshal(ev)
	if err != nil {
		return res, fmt.Errorf("service: evidence: %w", err)
	}
	if len(evJSON) > tssp.MaxEvidenceSize {
		return res, fmt.Errorf("%w: the evidence of %d operations is %d bytes, more than a package holds (%d)",
			ErrFailedPrecondition, len(h.entries), len(evJSON), tssp.MaxEvidenceSize)
	}
	cert, err := s.certificate(budget, p.cfg, h, weightsHash, src.ClientID)
	if err != nil {
		return res, err
	}
	certJSON, err := cert.CanonicalJSON()
	if err != nil {
		return res, fmt.Errorf("service: DP certificate: %w", err)
	}
	bm := tssp.BaseModel{Name: base.name}
	if bm.Hash, err = s.baseModelHash(base); err != nil {
		return res, err
	}
	opts := tssp.CreateOptions{
		AdapterConfig: config, Weights: bytes.NewReader(weights), BaseModel: bm,
		Certificate: certJSON, Evidence: evJSON, Signer: signer, Recipients: recipients,
		Producer: "tensafe " + s.pkg.cfg.Version, TempDir: s.dir,
	}
	if forTenant {
		opts.Tenant = &tssp.TenantKey{Provider: s.keys, Tenant: tenant}
	}
	var man *tssp.Manifest
	meta := map[string]any{"format": tssp.Format, "source_artifact_id": src.ID, "signer": signer.Public().KeyID(),
		"epsilon": cert.Epsilon, "delta": cert.Delta, "steps": cert.Steps}
	art, err := s.writeArtifactFunc(ctx, store.Artifact{TenantID: tenant, ClientID: src.ClientID, Kind: api.ArtifactKindTSSP, Name: name},
		func(w io.Writer) (json.RawMessage, error) {
			var err error
			if man, err = tssp.Create(ctx, w, opts); err != nil {
				return nil, err
			}
			meta["package_id"] = man.PackageID
			return json.Marshal(meta)
		})
	if err != nil {
		if errors.Is(err, tssp.ErrCertificate) || errors.Is(err, tssp.ErrAdapterConfig) || errors.Is(err, tssp.ErrEvidence) {
			return res, fmt.Errorf("service: package checkpoint %s: %w", src.ID, err)
		}
		return res, err
	}
	res = api.PackageResult{Artifact: toArtifact(art), PackageID: man.PackageID, Signer: man.Signer,
		WeightsSHA256: man.Weights.PlaintextSHA256, Epsilon: cert.Epsilon, Delta: cert.Delta, Steps: cert.Steps,
		Recipients: []string{}}
	for _, r := range man.Recipients {
		res.Recipients = append(res.Recipients, r.KeyID)
	}
	if man.TenantKEK != nil {
		res.Recipients = append(res.Recipients, man.TenantKEK.KeyID)
	}
	return res, nil
}

// baseModelHash returns the tssp.BaseModelHash of a registered model
// folder, computed once; "" for the built-in model, which has no folder.
func (s *Service) baseModelHash(b *baseModel) (string, error) {
	if b.dir == "" {
		return "", nil
	}
	s.pkg.mu.Lock()
	defer s.pkg.mu.Unlock()
	if h, ok := s.pkg.baseHashes[b.name]; ok {
		return h, nil
	}
	h, err := tssp.BaseModelHash(b.dir)
	if err != nil {
		return "", fmt.Errorf("service: base model %q: %w", b.name, err)
	}
	s.pkg.baseHashes[b.name] = h
	return h, nil
}
