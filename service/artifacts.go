package service

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/engine"
	"github.com/tensafe/tensafe/keys"
	"github.com/tensafe/tensafe/privacy"
	"github.com/tensafe/tensafe/seal"
	"github.com/tensafe/tensafe/store"
)

// maxCheckpointSize bounds the plaintext of a checkpoint a load reads.
const maxCheckpointSize = engine.MaxStateSize + maxBudgetState + maxCheckpointHeader + 64

func checkName(name string) error {
	if len(name) > store.MaxNameLen {
		return fieldErr("name", "%d bytes, at most %d allowed", len(name), store.MaxNameLen)
	}
	for _, c := range name {
		if c == unicode.ReplacementChar || unicode.Is(unicode.Cc, c) || unicode.Is(unicode.Cf, c) {
			return fieldErr("name", "contains a control, format or invalid character")
		}
	}
	return nil
}

// SaveState queues a save_state on client id: the adapter, optimizer state
// and accountant state in one checkpoint, sealed under the tenant's KEK and
// recorded as an artifact with its content hash. It fails (code
// failed_precondition) while gradients are accumulated since the last
// optim_step: TenSafe never stores un-noised gradients.
func (s *Service) SaveState(ctx context.Context, tenant, id string, req api.SaveStateRequest) (api.Future, error) {
	sess, err := s.liveSession(ctx, tenant, id)
	if err != nil {
		return api.Future{}, err
	}
	if err := checkName(req.Name); err != nil {
		return api.Future{}, err
	}
	var metadata json.RawMessage
	if len(req.Metadata) > 0 && string(req.Metadata) != "null" {
		if err := checkMetadata(req.Metadata); err != nil {
			return api.Future{}, err
		}
		// Compact: the stored bytes do not depend on the caller's spacing.
		var b bytes.Buffer
		if err := json.Compact(&b, req.Metadata); err != nil {
			return api.Future{}, fieldErr("metadata", "must be a JSON object")
		}
		metadata = b.Bytes()
	}
	skipOptimizer := req.IncludeOptimizer != nil && !*req.IncludeOptimizer
	return s.submit(ctx, sess, store.KindSaveState, nil, nil, func(ctx context.Context, det map[string]string) (any, error) {
		var eb bytes.Buffer
		if err := sess.eng.SaveWith(&eb, engine.SaveOptions{SkipOptimizer: skipOptimizer}); err != nil {
			return nil, engineErr(err)
		}
		sess.mu.Lock()
		b, p, base := sess.budget, sess.plan, sess.rec.BaseModel
		sess.mu.Unlock()
		bs, err := b.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("service: budget state: %w", err)
		}
		sp, err := b.Spent()
		if err != nil {
			return nil, fmt.Errorf("service: privacy budget: %w", err)
		}
		step := int64(sess.eng.Step())
		payload, err := marshalCheckpoint(checkpointHeader{BaseModel: base, Config: p.cfg, Step: step, Metadata: metadata, SavedBy: sess.id}, bs, eb.Bytes())
		if err != nil {
			return nil, err
		}
		name := req.Name
		if name == "" {
			name = fmt.Sprintf("checkpoint-step-%d", step)
		}
		// The artifact record is not encrypted: the caller's metadata stays
		// inside the checkpoint.
		meta, err := json.Marshal(map[string]any{"format": CheckpointFormat, "base_model": base, "step": step,
			"epsilon_spent": sp.Epsilon, "delta": sp.Delta, "accountant": sp.Accountant, "optimizer_state": !skipOptimizer})
		if err != nil {
			return nil, err
		}
		art, err := s.writeArtifact(ctx, store.Artifact{TenantID: sess.tenant, ClientID: sess.id,
			Kind: store.ArtifactCheckpoint, Name: name, Metadata: meta}, payload)
		if err != nil {
			return nil, err
		}
		det["artifact_id"] = art.ID
		det["content_hash"] = art.ContentHash
		det["step"] = fmt.Sprint(step)
		det["include_optimizer"] = fmt.Sprint(!skipOptimizer)
		return api.SaveStateResult{ArtifactID: art.ID, ContentHash: art.ContentHash, Size: art.Size, Step: step}, nil
	})
}

// writeArtifact seals payload into a new file of the artifact directory
// and records it with a's metadata. On error nothing is left behind.
func (s *Service) writeArtifact(ctx context.Context, a store.Artifact, payload []byte) (store.Artifact, error) {
	meta := a.Metadata
	return s.writeArtifactFunc(ctx, a, func(w io.Writer) (json.RawMessage, error) {
		if _, err := w.Write(payload); err != nil {
			return nil, fmt.Errorf("service: seal artifact: %w", err)
		}
		return meta, nil
	})
}

// writeArtifactFunc seals what write streams into the sealing writer into a
// new file of the artifact directory and records it; write returns the
// artifact's metadata. On error nothing is left behind.
func (s *Service) writeArtifactFunc(ctx context.Context, a store.Artifact, write func(io.Writer) (json.RawMessage, error)) (store.Artifact, error) {
	id, err := store.NewID("art")
	if err != nil {
		return a, err
	}
	a.ID, a.Location, a.KeyID = id, id+".tsenv", keys.KeyIDFor(a.TenantID)
	f, err := os.CreateTemp(s.dir, ".tmp-"+id+"-*")
	if err != nil {
		return a, fmt.Errorf("service: write artifact: %w", err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	w, err := keys.SealTo(ctx, s.keys, f, seal.Binding{TenantID: a.TenantID, ArtifactID: id})
	if err != nil {
		return a, fmt.Errorf("service: seal artifact: %w", err)
	}
	if a.Metadata, err = write(w); err != nil {
		return a, err
	}
	if err := w.Close(); err != nil {
		return a, fmt.Errorf("service: seal artifact: %w", err)
	}
	if err := f.Sync(); err != nil {
		return a, fmt.Errorf("service: write artifact: %w", err)
	}
	if err := f.Close(); err != nil {
		return a, fmt.Errorf("service: write artifact: %w", err)
	}
	final := filepath.Join(s.dir, a.Location)
	if err := os.Rename(tmp, final); err != nil {
		return a, fmt.Errorf("service: write artifact: %w", err)
	}
	syncDir(s.dir)
	a.ContentHash, a.Size = w.ContentHash(), w.Size()
	out, err := s.st.CreateArtifact(context.WithoutCancel(ctx), a)
	if err != nil {
		os.Remove(final)
		return a, fmt.Errorf("service: record artifact: %w", err)
	}
	ok = true
	return out, nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// openArtifact returns the decrypted, hash-checked plaintext stream of a.
func (s *Service) openArtifact(ctx context.Context, a store.Artifact) (io.ReadCloser, error) {
	if a.Location == "" || filepath.Base(a.Location) != a.Location || strings.HasPrefix(a.Location, ".") {
		return nil, fmt.Errorf("service: artifact %s: bad location", a.ID)
	}
	f, err := os.Open(filepath.Join(s.dir, a.Location))
	if err != nil {
		return nil, fmt.Errorf("service: open artifact %s: %w", a.ID, err)
	}
	r, err := keys.Open(ctx, s.keys, f, seal.Binding{TenantID: a.TenantID, ArtifactID: a.ID}, a.ContentHash)
	if err != nil {
		f.Close()
		return nil, integrityErr(a.ID, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{verifyingReader{r, a.ID}, f}, nil
}

// integrityErr classifies an error opening or reading an artifact: one that
// does not authenticate, or whose tenant keys are gone, is a failed
// precondition the tenant is told about; the rest are internal.
func integrityErr(id string, err error) error {
	for _, e := range []error{seal.ErrMalformedHeader, seal.ErrUnsupported, seal.ErrHeaderAuth, seal.ErrSegmentAuth,
		seal.ErrTruncated, seal.ErrTrailingData, seal.ErrContentHash, seal.ErrUnwrap, keys.ErrUnwrap, keys.ErrWrongTenant} {
		if errors.Is(err, e) {
			return fmt.Errorf("%w: artifact %s does not verify (altered or corrupted): %w", ErrFailedPrecondition, id, e)
		}
	}
	for _, e := range []error{keys.ErrShredded, keys.ErrUnknownVersion, keys.ErrUnknownTenant} {
		if errors.Is(err, e) {
			return fmt.Errorf("%w: artifact %s: %w", ErrFailedPrecondition, id, e)
		}
	}
	return fmt.Errorf("service: open artifact %s: %w", id, err)
}

// verifyingReader classifies the errors of a decrypting reader.
type verifyingReader struct {
	r  io.Reader
	id string
}

func (v verifyingReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	if err != nil && err != io.EOF {
		err = integrityErr(v.id, err)
	}
	return n, err
}

func (s *Service) getArtifact(ctx context.Context, tenant, id string) (store.Artifact, error) {
	a, err := s.st.GetArtifact(ctx, tenant, id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
			return a, fmt.Errorf("%w: artifact", ErrNotFound)
		}
		return a, fmt.Errorf("service: get artifact: %w", err)
	}
	return a, nil
}

// LoadState queues a load_state on client id from checkpoint artifactID of
// the same tenant: the envelope is opened under the tenant's KEK, its
// content hash checked, and the adapter, optimizer state and training
// configuration replace the client's. The checkpoint must be of the same
// base model and LoRA layout. Loading into a new client is
// CreateTrainingClient followed by LoadState.
//
// The client's ε spent never decreases: its accountant after the load is
// the composition of everything that touched data through it and through
// the loaded weights (loadedBudget, docs/PRIVACY_ACCOUNTING.md). A load
// whose composed ε exceeds the target is refused (privacy_budget_exceeded)
// and changes nothing.
func (s *Service) LoadState(ctx context.Context, tenant, id string, req api.LoadStateRequest) (api.Future, error) {
	sess, err := s.session(ctx, tenant, id)
	if err != nil {
		return api.Future{}, err
	}
	if req.ArtifactID == "" {
		return api.Future{}, fieldErr("artifact_id", "is required")
	}
	art, err := s.getArtifact(ctx, tenant, req.ArtifactID)
	if err != nil {
		return api.Future{}, err
	}
	if art.Kind != store.ArtifactCheckpoint {
		return api.Future{}, fieldErr("artifact_id", "is a %q artifact, not a checkpoint", art.Kind)
	}
	return s.submit(ctx, sess, store.KindLoadState, nil, nil, func(ctx context.Context, det map[string]string) (any, error) {
		det["artifact_id"] = art.ID
		det["content_hash"] = art.ContentHash
		rc, err := s.openArtifact(ctx, art)
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(io.LimitReader(rc, maxCheckpointSize+1))
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("service: read checkpoint %s: %w", art.ID, err)
		}
		cp, err := parseCheckpoint(data)
		if err != nil {
			return nil, fmt.Errorf("service: checkpoint %s: %w", art.ID, err)
		}
		if cp.header.BaseModel != sess.base.name {
			return nil, fmt.Errorf("%w: checkpoint %s is of base model %q, the client trains %q", ErrFailedPrecondition, art.ID, cp.header.BaseModel, sess.base.name)
		}
		p, err := validateConfig(cp.header.Config)
		if err != nil {
			return nil, fmt.Errorf("service: checkpoint %s: config: %w", art.ID, err)
		}
		p.cfg.BaseModel = sess.base.name
		sess.mu.Lock()
		cur := sess.plan.engine.LoRA
		sess.mu.Unlock()
		if l := p.engine.LoRA; l.Rank != cur.Rank || !slices.Equal(l.Modules(), cur.Modules()) {
			return nil, fmt.Errorf("%w: checkpoint %s has LoRA rank %d on %v; the client has rank %d on %v",
				ErrFailedPrecondition, art.ID, l.Rank, l.Modules(), cur.Rank, cur.Modules())
		}
		ckBudget, err := privacy.ParseBudget(cp.budget)
		if err != nil {
			return nil, fmt.Errorf("service: checkpoint %s: budget: %w", art.ID, err)
		}
		sess.mu.Lock()
		curBudget := sess.budget // changed only by operations, which run one at a time: this one now
		sess.mu.Unlock()
		budget, how, err := loadedBudget(curBudget, ckBudget, cp.header.SavedBy != "" && cp.header.SavedBy == sess.id)
		if err != nil {
			return nil, fmt.Errorf("service: checkpoint %s: budget: %w", art.ID, err)
		}
		sp, err := budget.Spent()
		switch {
		case errors.Is(err, privacy.ErrUnbounded):
			sp.Epsilon = math.Inf(1)
		case errors.Is(err, privacy.ErrDomainTooLarge):
			return nil, fmt.Errorf("%w: the %s accountant cannot bound the composition of the client's %d steps and checkpoint %s's %d: %w; nothing was changed",
				ErrFailedPrecondition, budget.Config().Accountant, curBudget.Steps(), art.ID, ckBudget.Steps(), err)
		case err != nil:
			return nil, fmt.Errorf("service: privacy budget: %w", err)
		}
		if target := budget.Config().TargetEpsilon; !(sp.Epsilon <= target) {
			var what string
			switch how {
			case historyComposed:
				what = fmt.Sprintf("the client's %d steps composed with the checkpoint's %d (not of the client's lineage)", curBudget.Steps(), ckBudget.Steps())
			case historyKept:
				what = fmt.Sprintf("the client's %d steps, which include the checkpoint's %d", curBudget.Steps(), ckBudget.Steps())
			default:
				what = fmt.Sprintf("the checkpoint's %d steps", ckBudget.Steps())
			}
			return nil, fmt.Errorf("%w: loading checkpoint %s would leave the client at ε = %.4g > the checkpoint's target ε = %.4g (δ = %g) after %s; nothing was changed",
				ErrBudgetExceeded, art.ID, sp.Epsilon, target, budget.Config().Delta, what)
		}
		m, _, _ := sess.base.load()
		eng, err := engine.New(m, p.engine)
		if err != nil {
			return nil, fmt.Errorf("service: checkpoint %s: %w", art.ID, err)
		}
		if err := eng.Load(bytes.NewReader(cp.engine)); err != nil {
			return nil, fmt.Errorf("service: checkpoint %s: %w", art.ID, err)
		}
		restored, err := engine.StateHasOptimizer(cp.engine)
		if err != nil {
			return nil, fmt.Errorf("service: checkpoint %s: %w", art.ID, err)
		}
		cj, err := json.Marshal(p.cfg)
		if err != nil {
			return nil, err
		}
		bs, err := budget.MarshalBinary()
		if err != nil {
			return nil, err
		}
		// The record write is the last step that can fail: a state stored
		// and then reported failed would be behind the audit log, and the
		// rollback check (docs/STORE.md §8) would refuse the client.
		sess.mu.Lock()
		rec := sess.rec
		rec.Config, rec.Step, rec.BudgetState = cj, int64(eng.Step()), bs
		if err := s.updateClient(ctx, sess, rec); err != nil {
			sess.mu.Unlock()
			return nil, err
		}
		sess.eng, sess.budget, sess.plan, sess.lost = eng, budget, p, false
		sess.mu.Unlock()
		det["step"] = fmt.Sprint(eng.Step())
		det["epsilon_spent"] = fmt.Sprintf("%.6g", sp.Epsilon)
		det["accountant_steps"] = fmt.Sprint(budget.Steps())
		det["accountant_history"] = how
		return api.LoadStateResult{ArtifactID: art.ID, Step: int64(eng.Step()), EpsilonSpent: sp.Epsilon,
			Metadata: cp.header.Metadata, OptimizerRestored: restored}, nil
	})
}

// How loadedBudget formed a client's accountant (the load_state audit
// entry's accountant_history detail).
const (
	historyCheckpoint = "checkpoint" // a client without steps took the checkpoint's
	historyKept       = "kept"       // the checkpoint's history is a prefix of the client's own
	historyComposed   = "composed"   // the client's steps followed by the checkpoint's
)

// loadedBudget returns a client's accountant after it loads a checkpoint:
// the composition of everything that touched data through the client (cur)
// and through the loaded weights (ck), so that the ε the client has spent
// never decreases (outputs it released before the load consumed privacy
// whatever weights it holds next). own says the checkpoint was saved by
// this client.
//
//   - A client with no steps takes the checkpoint's history.
//   - A checkpoint of the client's own lineage, whose history is therefore
//     already contained in the client's, leaves the history as it is: it
//     was saved by this client (histories only grow, so a checkpoint saved
//     by the client is a prefix of its current history) and its history is
//     a prefix of the current one. Equal values alone do not prove a
//     lineage (two clients of the same configuration have the same
//     history), so a prefix saved by another client is composed.
//   - Otherwise the histories are composed: the client's steps followed by
//     the checkpoint's (RDP and PRV compose by concatenation). This counts
//     an ancestry the two runs share twice, which can only raise ε.
//
// The result has the checkpoint's accountant configuration (target, δ,
// accountant), the configuration the client trains under after the load.
func loadedBudget(cur, ck *privacy.Budget, own bool) (*privacy.Budget, string, error) {
	ch, kh := cur.History(), ck.History()
	cfg := ck.Config()
	switch {
	case len(ch) == 0:
		return ck, historyCheckpoint, nil
	case own && privacy.HistoryHasPrefix(ch, kh):
		b, err := privacy.NewBudgetWithHistory(cfg, ch)
		return b, historyKept, err
	}
	h, err := privacy.ComposeHistories(ch, kh)
	if err != nil {
		return nil, "", err
	}
	b, err := privacy.NewBudgetWithHistory(cfg, h)
	return b, historyComposed, err
}

// GetArtifact returns artifact id of tenant.
func (s *Service) GetArtifact(ctx context.Context, tenant, id string) (api.Artifact, error) {
	a, err := s.getArtifact(ctx, tenant, id)
	if err != nil {
		return api.Artifact{}, err
	}
	return toArtifact(a), nil
}

// ListArtifacts returns tenant's artifacts, oldest first.
func (s *Service) ListArtifacts(ctx context.Context, tenant string) ([]api.Artifact, error) {
	as, err := s.st.ListArtifacts(ctx, tenant)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
			return nil, fmt.Errorf("%w: tenant", ErrNotFound)
		}
		return nil, fmt.Errorf("service: list artifacts: %w", err)
	}
	out := make([]api.Artifact, len(as))
	for i, a := range as {
		out[i] = toArtifact(a)
	}
	return out, nil
}

// OpenArtifact returns the decrypted content of artifact id of tenant. The
// reader fails, and releases no unauthenticated byte, if the stored bytes
// do not match the recorded content hash. The caller closes it. The access
// is audited.
func (s *Service) OpenArtifact(ctx context.Context, tenant, id string) (io.ReadCloser, api.Artifact, error) {
	a, err := s.getArtifact(ctx, tenant, id)
	if err != nil {
		return nil, api.Artifact{}, err
	}
	rc, err := s.openArtifact(ctx, a)
	rcd := auditRecordFor(ctx, tenant, "artifact.download", id, err)
	s.record(ctx, rcd)
	if err != nil {
		return nil, api.Artifact{}, err
	}
	return rc, toArtifact(a), nil
}

func toArtifact(a store.Artifact) api.Artifact {
	return api.Artifact{ID: a.ID, ClientID: a.ClientID, Kind: a.Kind, Name: a.Name, Size: a.Size,
		ContentHash: a.ContentHash, KeyID: a.KeyID, CreatedAt: a.CreatedAt}
}
