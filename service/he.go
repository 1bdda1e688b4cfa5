package service

// Homomorphic encryption (package he) for tenants that do not want the
// service to see activations: evaluation keys, plaintext LoRA adapters and
// HE-friendly models are registered per tenant and kept as artifacts sealed
// under the tenant's KEK; encrypted deltas and private inference run on
// ciphertext bundles and return ciphertext bundles. The secret key never
// reaches the service: the key decoder accepts public, relinearization and
// Galois keys only.
//
// Evaluators are cached (hecache.go): the first call under a key unseals
// the key bundle and builds an he.Evaluator, later calls reuse it with the
// adapters and models already registered on it. Every call still finds what
// it names in the store, so the cache changes latency, never results; it
// holds no secret key and nothing a restart would miss.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/he"
	"github.com/tensafe/tensafe/model"
	"github.com/tensafe/tensafe/safetensors"
	"github.com/tensafe/tensafe/store"
)

// Artifact kinds of the HE objects of a tenant.
const (
	ArtifactHEKeys    = "he_evaluation_keys"
	ArtifactHEAdapter = "he_adapter"
	ArtifactHEModel   = "he_model"
)

// Bounds of the HE calls.
const (
	// MaxHEModules bounds the modules of one delta request.
	MaxHEModules = 64
	// maxHEAdapterBytes bounds a stored adapter or model (its CBOR).
	maxHEAdapterBytes = 1 << 30
)

// heLimits bounds the bundles of HE requests: the server's body limit
// already bounds their encoded size.
func heLimits() he.Limits { return he.DefaultLimits() }

// heKeyMeta is the metadata of an evaluation-key artifact.
type heKeyMeta struct {
	KeyID        string          `json:"key_id"`
	Params       string          `json:"params"`
	Capabilities he.Capabilities `json:"capabilities"`
	Created      time.Time       `json:"created"`
	Bytes        int             `json:"bytes"`
	GaloisKeys   int             `json:"galois_keys"`
}

type heKey struct {
	info he.KeyInfo
	art  store.Artifact
}

// heKeys returns the tenant's evaluation keys, oldest first: the newest is
// active, every other retired (when the next one was stored).
func (s *Service) heKeys(ctx context.Context, tenant string) ([]heKey, error) {
	as, err := s.st.ListArtifacts(ctx, tenant)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
			return nil, fmt.Errorf("%w: tenant", ErrNotFound)
		}
		return nil, fmt.Errorf("service: list he keys: %w", err)
	}
	var out []heKey
	for _, a := range as {
		if a.Kind != ArtifactHEKeys {
			continue
		}
		var m heKeyMeta
		if err := json.Unmarshal(a.Metadata, &m); err != nil {
			return nil, fmt.Errorf("service: he key artifact %s: metadata: %w", a.ID, err)
		}
		out = append(out, heKey{art: a, info: he.KeyInfo{ID: m.KeyID, State: he.KeyRetired, Params: m.Params,
			Capabilities: m.Capabilities, Created: m.Created, Stored: a.CreatedAt, Bytes: m.Bytes}})
	}
	for i := range out {
		if i == len(out)-1 {
			out[i].info.State = he.KeyActive
		} else {
			t := out[i+1].art.CreatedAt
			out[i].info.Retired = &t
		}
	}
	return out, nil
}

// heKey finds key id of tenant; another tenant's key is not found.
func (s *Service) heKey(ctx context.Context, tenant, id string) (heKey, error) {
	ks, err := s.heKeys(ctx, tenant)
	if err != nil {
		return heKey{}, err
	}
	for i := len(ks) - 1; i >= 0; i-- {
		if ks[i].info.ID == id {
			return ks[i], nil
		}
	}
	return heKey{}, fmt.Errorf("%w: HE key %s", ErrNotFound, id)
}

// RegisterHEKeys stores a tenant's evaluation keys (he.EvaluationKeys in
// their binary format), sealed under the tenant's KEK. The new key becomes
// active; the previous active key is retired (rotation). Registering a key
// id twice is a conflict.
func (s *Service) RegisterHEKeys(ctx context.Context, tenant string, req he.RegisterKeysRequest) (he.RegisterKeysResponse, error) {
	var res he.RegisterKeysResponse
	if len(req.EvaluationKeys) == 0 {
		return res, fieldErr("evaluation_keys", "is required")
	}
	k, err := he.UnmarshalEvaluationKeys(req.EvaluationKeys, 0)
	if err != nil {
		return res, fieldErr("evaluation_keys", "%v", err)
	}
	ks, err := s.heKeys(ctx, tenant)
	if err != nil {
		return res, err
	}
	for _, x := range ks {
		if x.info.ID == k.ID {
			return res, fmt.Errorf("%w: HE key %s is already registered", store.ErrConflict, k.ID)
		}
	}
	meta, err := json.Marshal(heKeyMeta{KeyID: k.ID, Params: k.Params.Name(), Capabilities: k.Capabilities,
		Created: k.Created, Bytes: len(req.EvaluationKeys), GaloisKeys: len(k.Galois)})
	if err != nil {
		return res, fmt.Errorf("service: he key metadata: %w", err)
	}
	art, err := s.writeArtifact(ctx, store.Artifact{TenantID: tenant, Kind: ArtifactHEKeys, Name: k.ID, Metadata: meta}, req.EvaluationKeys)
	rcd := audit.Record{TenantID: tenant, Actor: actorOf(ctx), Operation: "he.register_keys", Resource: k.ID,
		Outcome: audit.OutcomeSuccess, Details: map[string]string{"params": k.Params.Name(),
			"galois_key_count": fmt.Sprint(len(k.Galois)), "relinearization_key_count": fmt.Sprint(btoi(k.Relin != nil)),
			"bytes": fmt.Sprint(len(req.EvaluationKeys))}}
	if err != nil {
		rcd.Outcome = audit.OutcomeFailure
		s.record(ctx, rcd)
		return res, err
	}
	rcd.Details["artifact_id"] = art.ID
	rcd.Details["content_hash"] = art.ContentHash
	s.record(ctx, rcd)
	if len(ks) > 0 {
		s.heCache.dropKey(tenant, ks[len(ks)-1].info.ID)
		rcd := audit.Record{TenantID: tenant, Actor: actorOf(ctx), Operation: "he.retire_key", Resource: ks[len(ks)-1].info.ID,
			Outcome: audit.OutcomeSuccess, Details: map[string]string{"replaced_by": k.ID}}
		s.record(ctx, rcd)
	}
	return he.RegisterKeysResponse{Key: he.KeyInfo{ID: k.ID, State: he.KeyActive, Params: k.Params.Name(),
		Capabilities: k.Capabilities, Created: k.Created, Stored: art.CreatedAt, Bytes: len(req.EvaluationKeys)}}, nil
}

// ListHEKeys returns the tenant's evaluation keys, oldest first.
func (s *Service) ListHEKeys(ctx context.Context, tenant string) ([]he.KeyInfo, error) {
	ks, err := s.heKeys(ctx, tenant)
	if err != nil {
		return nil, err
	}
	out := make([]he.KeyInfo, len(ks))
	for i, k := range ks {
		out[i] = k.info
	}
	return out, nil
}

// GetHEKey describes evaluation key id of tenant.
func (s *Service) GetHEKey(ctx context.Context, tenant, id string) (he.KeyInfo, error) {
	if !he.ValidKeyID(id) {
		return he.KeyInfo{}, fmt.Errorf("%w: HE key", ErrNotFound)
	}
	k, err := s.heKey(ctx, tenant, id)
	if err != nil {
		return he.KeyInfo{}, err
	}
	return k.info, nil
}

// heActive finds key id of tenant for new work: it must exist (for this
// tenant) and be active. field names the request field carrying id.
func (s *Service) heActive(ctx context.Context, tenant, id, field string) (heKey, error) {
	if id == "" {
		return heKey{}, fieldErr(field, "is required")
	}
	if !he.ValidKeyID(id) {
		return heKey{}, fieldErr(field, "is not an HE key id (hek_ and 32 hex digits)")
	}
	k, err := s.heKey(ctx, tenant, id)
	if err != nil {
		return heKey{}, err
	}
	if k.info.State != he.KeyActive {
		return heKey{}, fmt.Errorf("%w: HE key %s is retired; encrypt under the active key", ErrFailedPrecondition, id)
	}
	return k, nil
}

// heEntryOf finds key id of tenant for new work (it must be active) and
// returns its cached evaluator entry.
func (s *Service) heEntryOf(ctx context.Context, tenant, id, field string) (*heEntry, error) {
	k, err := s.heActive(ctx, tenant, id, field)
	if err != nil {
		return nil, err
	}
	return s.heFullEntry(ctx, k)
}

func (s *Service) readHEArtifact(ctx context.Context, a store.Artifact, limit int64) ([]byte, error) {
	rc, err := s.openArtifact(ctx, a)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("service: read artifact %s: %w", a.ID, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("service: artifact %s exceeds %d bytes", a.ID, limit)
	}
	return data, nil
}

// heFieldErr turns a validation error of package he into a *FieldError
// under prefix (the request field holding the value).
func heFieldErr(prefix string, err error) error {
	var fe *he.FieldError
	if errors.As(err, &fe) {
		return fieldErr(prefix+"."+fe.Field, "%v", fe.Err)
	}
	return fieldErr(prefix, "%v", err)
}

// RegisterHEAdapter registers (or replaces) the tenant's plaintext LoRA
// adapter of a module for encrypted deltas: A (rank×d_in), B (d_out×rank)
// and scale, sealed under the tenant's KEK. The response lists the packings
// it can serve under the tenant's active key: feature_major always,
// interleaved when the key declares the shape.
func (s *Service) RegisterHEAdapter(ctx context.Context, tenant string, req he.RegisterAdapterRequest) (he.RegisterAdapterResponse, error) {
	var res he.RegisterAdapterResponse
	if !he.ValidName(req.Module) {
		return res, fieldErr("module", "must be 1 to 128 letters, digits and . _ / -, starting with a letter or digit")
	}
	var srcDetails map[string]string
	if req.Source != nil {
		if req.A != nil || req.B != nil || req.Scale != 0 {
			return res, fieldErr("source", "give either source or a, b and scale, not both")
		}
		a, det, err := s.loraFromSource(ctx, tenant, *req.Source)
		if err != nil {
			return res, err
		}
		req.A, req.B, req.Scale, req.Source, srcDetails = a.A, a.B, a.Scale, nil, det
	}
	shape, err := req.Adapter().Shape()
	if err != nil {
		var fe *he.FieldError
		if errors.As(err, &fe) {
			return res, fieldErr(fe.Field, "%v", fe.Err)
		}
		return res, fieldErr("a", "%v", err)
	}
	ks, err := s.heKeys(ctx, tenant)
	if err != nil {
		return res, err
	}
	packings := []he.Packing{he.PackingThroughput}
	if len(ks) > 0 && slices.Contains(ks[len(ks)-1].info.Capabilities.LoRA, shape) {
		packings = append(packings, he.PackingLatency)
	}
	payload, err := he.MarshalWireCBOR(req)
	if err != nil {
		return res, err
	}
	meta, err := json.Marshal(map[string]any{"module": req.Module, "shape": shape})
	if err != nil {
		return res, err
	}
	art, err := s.writeArtifact(ctx, store.Artifact{TenantID: tenant, Kind: ArtifactHEAdapter, Name: req.Module, Metadata: meta}, payload)
	rcd := audit.Record{TenantID: tenant, Actor: actorOf(ctx), Operation: "he.register_adapter", Resource: req.Module,
		Outcome: audit.OutcomeSuccess, Details: map[string]string{"d_in": fmt.Sprint(shape.DIn), "d_out": fmt.Sprint(shape.DOut),
			"rank": fmt.Sprint(shape.Rank)}}
	maps.Copy(rcd.Details, srcDetails)
	if err != nil {
		rcd.Outcome = audit.OutcomeFailure
		s.record(ctx, rcd)
		return res, err
	}
	// The replaced registration is stale: give its memory back now.
	s.heCache.dropNamed(tenant, ArtifactHEAdapter, req.Module)
	rcd.Details["artifact_id"] = art.ID
	rcd.Details["content_hash"] = art.ContentHash
	s.record(ctx, rcd)
	return he.RegisterAdapterResponse{Module: req.Module, Shape: shape, Packings: packings}, nil
}

func (s *Service) heAdapterOf(ctx context.Context, art store.Artifact) (he.Adapter, error) {
	raw, err := s.readHEArtifact(ctx, art, maxHEAdapterBytes)
	if err != nil {
		return he.Adapter{}, err
	}
	var req he.RegisterAdapterRequest
	if err := he.UnmarshalWireCBOR(raw, &req); err != nil {
		return he.Adapter{}, fmt.Errorf("service: HE adapter %q: %w", art.Name, err)
	}
	return req.Adapter(), nil
}

// adapterShape reads the shape an adapter artifact's metadata records.
func adapterShape(a store.Artifact) (he.LoRAShape, bool) {
	var m struct {
		Shape he.LoRAShape `json:"shape"`
	}
	if err := json.Unmarshal(a.Metadata, &m); err != nil || m.Shape.DIn == 0 {
		return he.LoRAShape{}, false
	}
	return m.Shape, true
}

// heNamedMany returns the newest artifact of kind for each of names, from
// one listing of the tenant's artifacts; a missing one is not found.
func (s *Service) heNamedMany(ctx context.Context, tenant, kind string, names []string) ([]store.Artifact, error) {
	as, err := s.heNamedAll(ctx, tenant, kind)
	if err != nil {
		return nil, err
	}
	newest := make(map[string]store.Artifact, len(as))
	for _, a := range as {
		newest[a.Name] = a
	}
	out := make([]store.Artifact, len(names))
	for i, n := range names {
		a, ok := newest[n]
		if !ok {
			what := "HE adapter"
			if kind == ArtifactHEModel {
				what = "HE model"
			}
			return nil, fmt.Errorf("%w: %s %q", ErrNotFound, what, n)
		}
		out[i] = a
	}
	return out, nil
}

// withSlot runs fn holding one of the service's concurrency slots (shared
// with training operations): homomorphic work is CPU-bound.
func (s *Service) withSlot(ctx context.Context, fn func() error) error {
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	case <-ctx.Done():
		return ctx.Err()
	}
	return fn()
}

func checkCompression(c he.Compression) error {
	if c != "" && c != he.CompressionNone && c != he.CompressionDeflate {
		return fieldErr("compression", "must be %q or %q, got %q", he.CompressionNone, he.CompressionDeflate, c)
	}
	return nil
}

// heInput validates a request's input bundle for ev: kind, key and strict
// decoding of every ciphertext.
func heInput(ev *he.Evaluator, keyID, kind string, in *he.Bundle) (*he.Batch, error) {
	if in.Kind != kind {
		return nil, fieldErr("input.kind", "must be %q, got %q", kind, in.Kind)
	}
	if in.KeyID != keyID {
		return nil, fieldErr("input.key_id", "is %q, the request names key %q", in.KeyID, keyID)
	}
	b, err := in.Batch(ev.Params(), heLimits())
	if err != nil {
		return nil, heFieldErr("input", err)
	}
	return b, nil
}

// heComputeErr classifies an error of the evaluator: missing keys are a
// failed precondition, unknown names not found, anything else a property of
// the input that the evaluator refused.
func heComputeErr(err error) error {
	switch {
	case errors.Is(err, he.ErrMissingKeys):
		return fmt.Errorf("%w: %w", ErrFailedPrecondition, err)
	case errors.Is(err, he.ErrUnknownAdapter), errors.Is(err, he.ErrUnknownModel):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return fieldErr("input", "%v", err)
}

// HEDeltas computes the encrypted LoRA deltas of the named modules over an
// encrypted input bundle (kind lora_input, packing feature_major or
// interleaved as the client chose) under the tenant's active key id. It
// returns one lora_delta bundle per module, in order.
func (s *Service) HEDeltas(ctx context.Context, tenant string, req he.DeltaRequest) (he.DeltaResponse, error) {
	var res he.DeltaResponse
	switch {
	case len(req.Modules) == 0:
		return res, fieldErr("modules", "is required")
	case len(req.Modules) > MaxHEModules:
		return res, fieldErr("modules", "%d modules, at most %d", len(req.Modules), MaxHEModules)
	}
	for i, m := range req.Modules {
		if !he.ValidName(m) {
			return res, fieldErr(fmt.Sprintf("modules[%d]", i), "is not a module name")
		}
		if slices.Index(req.Modules, m) != i {
			return res, fieldErr(fmt.Sprintf("modules[%d]", i), "%q is listed twice", m)
		}
	}
	if err := checkCompression(req.Compression); err != nil {
		return res, err
	}
	k, err := s.heActive(ctx, tenant, req.KeyID, "key_id")
	if err != nil {
		return res, err
	}
	// The feature-major packing needs no evaluation keys: the stored bundle
	// (tens of MB with Galois keys) is not even unsealed for it.
	var en *heEntry
	if req.Input.Layout.Packing == he.PackingThroughput {
		en, err = s.heThroughputEntry(k)
	} else {
		en, err = s.heFullEntry(ctx, k)
	}
	if err != nil {
		return res, err
	}
	in, err := heInput(en.evaluator(), req.KeyID, he.KindLoRAInput, &req.Input)
	if err != nil {
		return res, err
	}
	arts, err := s.heNamedMany(ctx, tenant, ArtifactHEAdapter, req.Modules)
	if err != nil {
		return res, err
	}
	needs := make([]heNeed, len(req.Modules))
	names := make([]string, len(req.Modules))
	var pairs []string
	for i, m := range req.Modules {
		art := arts[i]
		if sh, ok := adapterShape(art); ok && sh.DIn != in.Layout.Dim {
			return res, fieldErr("input.layout.dim", "is %d; module %s (modules[%d]) takes d_in = %d", in.Layout.Dim, m, i, sh.DIn)
		}
		names[i] = art.ID
		pairs = append(pairs, art.ID, m)
		needs[i] = heNeed{kind: ArtifactHEAdapter, art: art, register: func(ev *he.Evaluator, name string) error {
			a, err := s.heAdapterOf(ctx, art)
			if err != nil {
				return err
			}
			if sh, _ := a.Shape(); sh.DIn != in.Layout.Dim {
				return fieldErr("input.layout.dim", "is %d; module %s (modules[%d]) takes d_in = %d", in.Layout.Dim, m, i, sh.DIn)
			}
			if err := ev.RegisterAdapter(name, a); err != nil {
				return fmt.Errorf("service: HE adapter %q: %w", m, renameHEErr(err, name, m))
			}
			return nil
		}}
	}
	ev, err := s.heCache.prepare(en, needs)
	if err != nil {
		return res, err
	}
	start := time.Now()
	var outs []*he.Batch
	err = s.withSlot(ctx, func() error {
		var err error
		outs, err = ev.DeltaMany(ctx, names, in)
		return renameHEErr(err, pairs...)
	})
	rcd := audit.Record{TenantID: tenant, Actor: actorOf(ctx), Operation: "he.deltas", Resource: req.KeyID,
		Outcome: audit.OutcomeSuccess, Details: map[string]string{"modules": truncate(strings.Join(req.Modules, ","), 500),
			"packing": string(in.Layout.Packing), "token_count": fmt.Sprint(in.Layout.Tokens),
			"ciphertexts_in": fmt.Sprint(len(in.Ciphertexts)), "input_hash": req.Input.ContentHash}}
	if err != nil {
		rcd.Outcome = audit.OutcomeFailure
		rcd.Details["error"] = truncate(err.Error(), 200)
		s.record(ctx, rcd)
		return res, heComputeErr(err)
	}
	res.Deltas = make([]he.Bundle, len(outs))
	n := 0
	for i, o := range outs {
		b, err := he.NewBundle(he.KindLoRADelta, o, req.Compression)
		if err != nil {
			return res, fmt.Errorf("service: HE delta bundle: %w", err)
		}
		res.Deltas[i] = *b
		n += len(b.Ciphertexts)
	}
	rcd.Details["ciphertexts_out"] = fmt.Sprint(n)
	rcd.Details["duration_ms"] = fmt.Sprint(time.Since(start).Milliseconds())
	s.record(ctx, rcd)
	return res, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// RegisterHEModel registers (or replaces) an HE-friendly model of the tenant
// for private inference under a profile (encrypted_input, hybrid, full),
// checked against the tenant's active key: its Galois keys must cover the
// model's width, and its parameters the depth.
func (s *Service) RegisterHEModel(ctx context.Context, tenant string, req he.RegisterModelRequest) (he.RegisterModelResponse, error) {
	var res he.RegisterModelResponse
	if !he.ValidName(req.Name) {
		return res, fieldErr("name", "must be 1 to 128 letters, digits and . _ / -, starting with a letter or digit")
	}
	if err := req.Model.Validate(); err != nil {
		return res, fieldErr("model", "%v", err)
	}
	if _, err := req.Profile.HELayers(len(req.Model.Layers), req.HybridLayers); err != nil {
		if req.Profile == he.ProfileHybrid {
			return res, fieldErr("hybrid_layers", "%v", err)
		}
		return res, fieldErr("profile", "%v", err)
	}
	ks, err := s.heKeys(ctx, tenant)
	if err != nil {
		return res, err
	}
	if len(ks) == 0 {
		return res, fmt.Errorf("%w: register HE evaluation keys (with the model's width in mlp_widths) first", ErrFailedPrecondition)
	}
	en, err := s.heEntryOf(ctx, tenant, ks[len(ks)-1].info.ID, "key_id")
	if err != nil {
		return res, err
	}
	// A fresh evaluator over the cached keys: the check must not register
	// anything on the shared one.
	ev, err := en.fresh()
	if err != nil {
		return res, err
	}
	if err := ev.RegisterModel(req.Name, &req.Model, req.Profile, req.HybridLayers); err != nil {
		if errors.Is(err, he.ErrMissingKeys) {
			return res, fmt.Errorf("%w: the active HE key cannot evaluate this model: %w", ErrFailedPrecondition, err)
		}
		return res, fieldErr("model", "%v", err)
	}
	info, err := ev.Model(req.Name)
	if err != nil {
		return res, err
	}
	payload, err := he.MarshalWireCBOR(req)
	if err != nil {
		return res, err
	}
	meta, err := json.Marshal(info)
	if err != nil {
		return res, err
	}
	art, err := s.writeArtifact(ctx, store.Artifact{TenantID: tenant, Kind: ArtifactHEModel, Name: req.Name, Metadata: meta}, payload)
	rcd := audit.Record{TenantID: tenant, Actor: actorOf(ctx), Operation: "he.register_model", Resource: req.Name,
		Outcome: audit.OutcomeSuccess, Details: map[string]string{"profile": string(info.Profile),
			"he_layers": fmt.Sprint(info.HELayers), "layers": fmt.Sprint(info.Layers), "width": fmt.Sprint(info.Width)}}
	if err != nil {
		rcd.Outcome = audit.OutcomeFailure
		s.record(ctx, rcd)
		return res, err
	}
	s.heCache.dropNamed(tenant, ArtifactHEModel, req.Name)
	rcd.Details["artifact_id"] = art.ID
	s.record(ctx, rcd)
	return he.RegisterModelResponse{Model: info}, nil
}

// HEInference runs the tenant's registered model on an encrypted input
// bundle (kind model_input, packing interleaved_real) under active key
// key_id and returns the encrypted output of its HE layers (kind
// model_output).
func (s *Service) HEInference(ctx context.Context, tenant string, req he.InferenceRequest) (he.InferenceResponse, error) {
	var res he.InferenceResponse
	if !he.ValidName(req.Model) {
		return res, fieldErr("model", "is not a model name")
	}
	if err := checkCompression(req.Compression); err != nil {
		return res, err
	}
	en, err := s.heEntryOf(ctx, tenant, req.KeyID, "key_id")
	if err != nil {
		return res, err
	}
	arts, err := s.heNamedMany(ctx, tenant, ArtifactHEModel, []string{req.Model})
	if err != nil {
		return res, err
	}
	art := arts[0]
	ev, err := s.heCache.prepare(en, []heNeed{{kind: ArtifactHEModel, art: art, register: func(ev *he.Evaluator, name string) error {
		raw, err := s.readHEArtifact(ctx, art, maxHEAdapterBytes)
		if err != nil {
			return err
		}
		var reg he.RegisterModelRequest
		if err := he.UnmarshalWireCBOR(raw, &reg); err != nil {
			return fmt.Errorf("service: HE model %q: %w", req.Model, err)
		}
		if err := ev.RegisterModel(name, &reg.Model, reg.Profile, reg.HybridLayers); err != nil {
			err = renameHEErr(err, name, req.Model)
			if errors.Is(err, he.ErrMissingKeys) {
				return fmt.Errorf("%w: key %s cannot evaluate model %q: %w", ErrFailedPrecondition, req.KeyID, req.Model, err)
			}
			return fmt.Errorf("service: HE model %q: %w", req.Model, err)
		}
		return nil
	}}})
	if err != nil {
		return res, err
	}
	info, err := ev.Model(art.ID)
	if err != nil {
		return res, err
	}
	in, err := heInput(ev, req.KeyID, he.KindModelInput, &req.Input)
	if err != nil {
		return res, err
	}
	start := time.Now()
	var out *he.Batch
	err = s.withSlot(ctx, func() error {
		var err error
		out, err = ev.Infer(ctx, art.ID, in)
		return renameHEErr(err, art.ID, req.Model)
	})
	rcd := audit.Record{TenantID: tenant, Actor: actorOf(ctx), Operation: "he.inference", Resource: req.Model,
		Outcome: audit.OutcomeSuccess, Details: map[string]string{"key_id": req.KeyID, "profile": string(info.Profile),
			"he_layers": fmt.Sprint(info.HELayers), "token_count": fmt.Sprint(in.Layout.Tokens),
			"ciphertexts_in": fmt.Sprint(len(in.Ciphertexts)), "input_hash": req.Input.ContentHash}}
	if err != nil {
		rcd.Outcome = audit.OutcomeFailure
		rcd.Details["error"] = truncate(err.Error(), 200)
		s.record(ctx, rcd)
		return res, heComputeErr(err)
	}
	b, err := he.NewBundle(he.KindModelOutput, out, req.Compression)
	if err != nil {
		return res, fmt.Errorf("service: HE output bundle: %w", err)
	}
	rcd.Details["duration_ms"] = fmt.Sprint(time.Since(start).Milliseconds())
	s.record(ctx, rcd)
	return he.InferenceResponse{Output: *b, HELayers: info.HELayers, Layers: info.Layers}, nil
}

// loraFromSource takes one projection's LoRA (A, B and the adapter's scale)
// from a training client's current adapter or from a checkpoint artifact of
// the tenant; it returns audit details naming the source.
func (s *Service) loraFromSource(ctx context.Context, tenant string, src he.AdapterSource) (he.Adapter, map[string]string, error) {
	if !slices.Contains(model.AllModules, src.Module) {
		return he.Adapter{}, nil, fieldErr("source.module", "unknown module %q (known: %v)", src.Module, model.AllModules)
	}
	if src.Layer < 0 {
		return he.Adapter{}, nil, fieldErr("source.layer", "must be ≥ 0, got %d", src.Layer)
	}
	var (
		lora *model.LoRA
		det  map[string]string
	)
	switch {
	case (src.TrainingClientID == "") == (src.ArtifactID == ""):
		return he.Adapter{}, nil, fieldErr("source", "give exactly one of training_client_id and artifact_id")
	case src.TrainingClientID != "":
		sess, err := s.liveSession(ctx, tenant, src.TrainingClientID)
		if err != nil {
			return he.Adapter{}, nil, err
		}
		// A consistent snapshot: no operation runs while sess.mu is held
		// and the queue is empty.
		sess.mu.Lock()
		if sess.running || len(sess.queue) > 0 {
			sess.mu.Unlock()
			return he.Adapter{}, nil, fmt.Errorf("%w: operations are queued or running on the training client; wait for them before taking its adapter", ErrFailedPrecondition)
		}
		lora = sess.eng.Adapter()
		sess.mu.Unlock()
		det = map[string]string{"source_client_id": src.TrainingClientID}
	default:
		art, err := s.getArtifact(ctx, tenant, src.ArtifactID)
		if err != nil {
			return he.Adapter{}, nil, err
		}
		if art.Kind != store.ArtifactCheckpoint {
			return he.Adapter{}, nil, fieldErr("source.artifact_id", "is a %q artifact, not a checkpoint", art.Kind)
		}
		data, err := s.readHEArtifact(ctx, art, maxCheckpointSize)
		if err != nil {
			return he.Adapter{}, nil, err
		}
		cp, err := parseCheckpoint(data)
		if err != nil {
			return he.Adapter{}, nil, fmt.Errorf("service: checkpoint %s: %w", art.ID, err)
		}
		if lora, err = loraOfState(cp.engine); err != nil {
			return he.Adapter{}, nil, fmt.Errorf("service: checkpoint %s: %w", art.ID, err)
		}
		det = map[string]string{"source_artifact_id": art.ID, "source_content_hash": art.ContentHash}
	}
	det["source_layer"], det["source_module"] = fmt.Sprint(src.Layer), src.Module
	na, nb := model.LoRAName(src.Layer, src.Module, "A"), model.LoRAName(src.Layer, src.Module, "B")
	va, okA := lora.Values[na]
	vb, okB := lora.Values[nb]
	sa, sb := lora.Shapes[na], lora.Shapes[nb]
	if !okA || !okB || len(sa) != 2 || len(sb) != 2 {
		return he.Adapter{}, nil, fieldErr("source", "the adapter has no LoRA on layers.%d.%s", src.Layer, src.Module)
	}
	return he.Adapter{A: rows(va, sa[0], sa[1]), B: rows(vb, sb[0], sb[1]), Scale: lora.Config.Scale()}, det, nil
}

// loraOfState reads the LoRA weights and configuration of an engine state
// (docs/CHECKPOINT.md: safetensors with tensors "lora/<PEFT name>" and the
// JSON header in metadata "tensafe"), without a model.
func loraOfState(state []byte) (*model.LoRA, error) {
	f, err := safetensors.Parse(state)
	if err != nil {
		return nil, err
	}
	var h struct {
		LoRA model.LoRAConfig `json:"lora"`
	}
	if err := json.Unmarshal([]byte(f.Metadata["tensafe"]), &h); err != nil {
		return nil, fmt.Errorf("engine state header: %w", err)
	}
	l := &model.LoRA{Config: h.LoRA, Shapes: map[string][]int{}, Values: map[string][]float32{}}
	for name, t := range f.Tensors {
		n, ok := strings.CutPrefix(name, "lora/")
		if !ok {
			continue
		}
		v, err := t.Float32()
		if err != nil {
			return nil, fmt.Errorf("tensor %s: %w", name, err)
		}
		if len(t.Shape) != 2 || t.Shape[0]*t.Shape[1] != len(v) {
			return nil, fmt.Errorf("tensor %s: shape %v", name, t.Shape)
		}
		l.Names = append(l.Names, n)
		l.Shapes[n], l.Values[n] = t.Shape, v
	}
	return l, nil
}

func rows(v []float32, r, c int) [][]float64 {
	out := make([][]float64, r)
	for i := range out {
		out[i] = make([]float64, c)
		for j := range out[i] {
			out[i][j] = float64(v[i*c+j])
		}
	}
	return out
}

// removeHEArtifact deletes a stored HE object: its file, then its record.
func (s *Service) removeHEArtifact(ctx context.Context, a store.Artifact) error {
	if a.Location == "" || filepath.Base(a.Location) != a.Location || a.Location[0] == '.' {
		return fmt.Errorf("service: artifact %s: bad location", a.ID)
	}
	if err := os.Remove(filepath.Join(s.dir, a.Location)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("service: delete artifact %s: %w", a.ID, err)
	}
	syncDir(s.dir)
	if err := s.st.DeleteArtifact(context.WithoutCancel(ctx), a.TenantID, a.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("service: delete record of artifact %s: %w", a.ID, err)
	}
	return nil
}

// DeleteHEKey deletes a retired evaluation key of the tenant. The active
// key cannot be deleted (register a new one first): requests encrypted
// under it would fail.
func (s *Service) DeleteHEKey(ctx context.Context, tenant, id string) error {
	if !he.ValidKeyID(id) {
		return fmt.Errorf("%w: HE key", ErrNotFound)
	}
	k, err := s.heKey(ctx, tenant, id)
	if err != nil {
		return err
	}
	if k.info.State == he.KeyActive {
		return fmt.Errorf("%w: HE key %s is active; register its successor before deleting it", ErrFailedPrecondition, id)
	}
	s.heCache.dropKey(tenant, id)
	err = s.removeHEArtifact(ctx, k.art)
	rcd := audit.Record{TenantID: tenant, Actor: actorOf(ctx), Operation: "he.delete_key", Resource: id,
		Outcome: audit.OutcomeSuccess, Details: map[string]string{"artifact_id": k.art.ID}}
	if err != nil {
		rcd.Outcome = audit.OutcomeFailure
	}
	s.record(ctx, rcd)
	return err
}

// heNamedAll returns every artifact of kind of the tenant, oldest first.
func (s *Service) heNamedAll(ctx context.Context, tenant, kind string) ([]store.Artifact, error) {
	as, err := s.st.ListArtifacts(ctx, tenant)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
			return nil, fmt.Errorf("%w: tenant", ErrNotFound)
		}
		return nil, fmt.Errorf("service: list artifacts: %w", err)
	}
	var out []store.Artifact
	for _, a := range as {
		if a.Kind == kind {
			out = append(out, a)
		}
	}
	return out, nil
}

// ListHEAdapters lists the tenant's registered adapters (the newest
// registration of each module), by module name.
func (s *Service) ListHEAdapters(ctx context.Context, tenant string) ([]he.AdapterInfo, error) {
	return latestHENamed(ctx, s, tenant, ArtifactHEAdapter, func(a store.Artifact) (he.AdapterInfo, error) {
		var m struct {
			Shape he.LoRAShape `json:"shape"`
		}
		if err := json.Unmarshal(a.Metadata, &m); err != nil {
			return he.AdapterInfo{}, fmt.Errorf("service: HE adapter artifact %s: metadata: %w", a.ID, err)
		}
		return he.AdapterInfo{Module: a.Name, Shape: m.Shape, Stored: a.CreatedAt}, nil
	})
}

// ListHEModels lists the tenant's registered models (the newest
// registration of each name), by name.
func (s *Service) ListHEModels(ctx context.Context, tenant string) ([]he.ModelEntry, error) {
	return latestHENamed(ctx, s, tenant, ArtifactHEModel, func(a store.Artifact) (he.ModelEntry, error) {
		var m he.ModelInfo
		if err := json.Unmarshal(a.Metadata, &m); err != nil {
			return he.ModelEntry{}, fmt.Errorf("service: HE model artifact %s: metadata: %w", a.ID, err)
		}
		return he.ModelEntry{Name: a.Name, Model: m, Stored: a.CreatedAt}, nil
	})
}

// latestHENamed returns, sorted by name, what entry makes of the newest
// registration of each name among the tenant's artifacts of kind.
func latestHENamed[T any](ctx context.Context, s *Service, tenant, kind string, entry func(store.Artifact) (T, error)) ([]T, error) {
	as, err := s.heNamedAll(ctx, tenant, kind)
	if err != nil {
		return nil, err
	}
	latest := map[string]T{}
	for _, a := range as {
		if latest[a.Name], err = entry(a); err != nil {
			return nil, err
		}
	}
	var out []T
	for _, name := range slices.Sorted(maps.Keys(latest)) {
		out = append(out, latest[name])
	}
	return out, nil
}

// DeleteHEAdapter deletes every stored registration of a module's adapter.
func (s *Service) DeleteHEAdapter(ctx context.Context, tenant, module string) error {
	return s.deleteHENamed(ctx, tenant, ArtifactHEAdapter, module, "he.delete_adapter")
}

// DeleteHEModel deletes every stored registration of a model.
func (s *Service) DeleteHEModel(ctx context.Context, tenant, name string) error {
	return s.deleteHENamed(ctx, tenant, ArtifactHEModel, name, "he.delete_model")
}

func (s *Service) deleteHENamed(ctx context.Context, tenant, kind, name, op string) error {
	if !he.ValidName(name) {
		return fmt.Errorf("%w: %s", ErrNotFound, kind)
	}
	as, err := s.heNamedAll(ctx, tenant, kind)
	if err != nil {
		return err
	}
	s.heCache.dropNamed(tenant, kind, name)
	n := 0
	for _, a := range as {
		if a.Name != name {
			continue
		}
		if err := s.removeHEArtifact(ctx, a); err != nil {
			s.record(ctx, audit.Record{TenantID: tenant, Actor: actorOf(ctx), Operation: op, Resource: name,
				Outcome: audit.OutcomeFailure, Details: map[string]string{"artifact_id": a.ID}})
			return err
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("%w: %s %q", ErrNotFound, kind, name)
	}
	s.record(ctx, audit.Record{TenantID: tenant, Actor: actorOf(ctx), Operation: op, Resource: name,
		Outcome: audit.OutcomeSuccess, Details: map[string]string{"artifact_count": fmt.Sprint(n)}})
	return nil
}
