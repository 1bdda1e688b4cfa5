package client

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/tensafe/tensafe/he"
)

// Homomorphic encryption (docs/HE.md, docs/API.md "Homomorphic
// encryption"): the secret key stays in this process. The server receives
// evaluation keys, plaintext adapters and models, and ciphertexts; it
// returns ciphertexts that only HESession can decrypt. HE bodies travel as
// CBOR (byte strings, about 25% smaller than base64 JSON).

// maxHEResponseBytes bounds an HE response body.
const maxHEResponseBytes = 1 << 30

// heDo POSTs in as CBOR to path and decodes the CBOR answer into out,
// retrying as rep allows.
func (c *ServiceClient) heDo(ctx context.Context, rep repeat, path string, in, out any) error {
	payload, err := he.MarshalWireCBOR(in)
	if err != nil {
		return fmt.Errorf("tensafe: POST %s: encode request: %w", path, err)
	}
	key, _ := ctx.Value(idemKey{}).(string)
	if key == "" {
		key = newIdempotencyKey()
	}
	pol := c.policy()
	var lastErr error
	for attempt := 1; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BaseURL+path, bytes.NewReader(payload))
		if err != nil {
			return fmt.Errorf("tensafe: POST %s: %w", path, err)
		}
		req.Header.Set("Content-Type", he.MediaTypeCBOR)
		req.Header.Set("Accept", he.MediaTypeCBOR)
		if c.APIKey != "" {
			req.Header.Set("Authorization", "Bearer "+c.APIKey)
		}
		if c.userAgent != "" {
			req.Header.Set("User-Agent", c.userAgent)
		}
		req.Header.Set("Idempotency-Key", key)
		resp, err := c.httpClient().Do(req)
		var retryAfter time.Duration
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return fmt.Errorf("tensafe: POST %s: %w", path, ctx.Err())
			}
			lastErr = fmt.Errorf("tensafe: POST %s: %w", path, err)
			if rep != repeatSafe {
				return lastErr
			}
		case resp.StatusCode >= 200 && resp.StatusCode < 300:
			defer resp.Body.Close()
			body, err := io.ReadAll(io.LimitReader(resp.Body, maxHEResponseBytes+1))
			if err != nil {
				return fmt.Errorf("tensafe: POST %s: read response: %w", path, err)
			}
			if len(body) > maxHEResponseBytes {
				return fmt.Errorf("tensafe: POST %s: response over %d bytes: %w", path, maxHEResponseBytes, ErrMalformedResponse)
			}
			if err := he.UnmarshalWireCBOR(body, out); err != nil {
				return fmt.Errorf("tensafe: POST %s: decode response: %w (%v)", path, ErrMalformedResponse, err)
			}
			return nil
		default:
			b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBytes))
			resp.Body.Close()
			ae := decodeError(resp.StatusCode, resp.Header, b)
			if !retryable(resp.StatusCode, rep) {
				return ae
			}
			lastErr, retryAfter = ae, ae.RetryAfter
		}
		if attempt >= pol.MaxAttempts {
			return lastErr
		}
		if err := c.wait(ctx, pol.backoff(attempt, retryAfter, c.randN)); err != nil {
			return fmt.Errorf("tensafe: POST %s: %w (last error: %v)", path, err, lastErr)
		}
	}
}

// RegisterHEKeys uploads the tenant's evaluation keys (public,
// relinearization and Galois keys; never the secret key). The key becomes
// the tenant's active HE key and the previous one is retired.
func (c *ServiceClient) RegisterHEKeys(ctx context.Context, evk *he.EvaluationKeys) (he.KeyInfo, error) {
	raw, err := evk.MarshalBinary()
	if err != nil {
		return he.KeyInfo{}, fmt.Errorf("tensafe: register HE keys: %w", err)
	}
	var res he.RegisterKeysResponse
	if err := c.heDo(ctx, repeatRefusedOnly, "/api/v1/he/keys", he.RegisterKeysRequest{EvaluationKeys: raw}, &res); err != nil {
		return he.KeyInfo{}, err
	}
	return res.Key, nil
}

// HEKeys lists the tenant's HE keys, oldest first.
func (c *ServiceClient) HEKeys(ctx context.Context) ([]he.KeyInfo, error) {
	var out []he.KeyInfo
	if err := c.do(ctx, http.MethodGet, "/api/v1/he/keys", nil, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// HEKey describes HE key id.
func (c *ServiceClient) HEKey(ctx context.Context, id string) (he.KeyInfo, error) {
	var out he.KeyInfo
	err := c.do(ctx, http.MethodGet, "/api/v1/he/keys/"+url.PathEscape(id), nil, nil, &out)
	return out, err
}

// DeleteHEKey deletes a retired HE key (the active one cannot be deleted).
func (c *ServiceClient) DeleteHEKey(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/he/keys/"+url.PathEscape(id), nil, nil, nil)
}

// HEAdapters lists the tenant's registered adapters by module.
func (c *ServiceClient) HEAdapters(ctx context.Context) ([]he.AdapterInfo, error) {
	var out []he.AdapterInfo
	if err := c.do(ctx, http.MethodGet, "/api/v1/he/adapters", nil, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteHEAdapter deletes a module's adapter.
func (c *ServiceClient) DeleteHEAdapter(ctx context.Context, module string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/he/adapters/"+url.PathEscape(module), nil, nil, nil)
}

// HEModels lists the tenant's registered models by name, with the width
// to encrypt inputs with.
func (c *ServiceClient) HEModels(ctx context.Context) ([]he.ModelEntry, error) {
	var out []he.ModelEntry
	if err := c.do(ctx, http.MethodGet, "/api/v1/he/models", nil, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteHEModel deletes a model.
func (c *ServiceClient) DeleteHEModel(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/he/models/"+url.PathEscape(name), nil, nil, nil)
}

// RegisterHEAdapter registers (or replaces) the plaintext LoRA adapter of a
// module for encrypted deltas.
func (c *ServiceClient) RegisterHEAdapter(ctx context.Context, module string, a he.Adapter) (*he.RegisterAdapterResponse, error) {
	var res he.RegisterAdapterResponse
	req := he.RegisterAdapterRequest{Module: module, A: a.A, B: a.B, Scale: a.Scale}
	if err := c.heDo(ctx, repeatSafe, "/api/v1/he/adapters", req, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// RegisterHEAdapterFrom registers (or replaces) the adapter of a module
// with one projection of a training client's current LoRA or of a saved
// checkpoint of the tenant (src); the server takes the weights and scale.
func (c *ServiceClient) RegisterHEAdapterFrom(ctx context.Context, module string, src he.AdapterSource) (*he.RegisterAdapterResponse, error) {
	var res he.RegisterAdapterResponse
	if err := c.heDo(ctx, repeatSafe, "/api/v1/he/adapters", he.RegisterAdapterRequest{Module: module, Source: &src}, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// RegisterHEModel registers an HE-friendly model for private inference
// under a profile; the server checks it against the active key.
func (c *ServiceClient) RegisterHEModel(ctx context.Context, name string, m *he.MLP, profile he.Profile, hybridLayers int) (he.ModelInfo, error) {
	var res he.RegisterModelResponse
	req := he.RegisterModelRequest{Name: name, Model: *m, Profile: profile, HybridLayers: hybridLayers}
	if err := c.heDo(ctx, repeatSafe, "/api/v1/he/models", req, &res); err != nil {
		return he.ModelInfo{}, err
	}
	return res.Model, nil
}

// HEDeltas sends a delta request as is (bundles already encrypted).
// HESession.Deltas encrypts, sends and decrypts.
func (c *ServiceClient) HEDeltas(ctx context.Context, req he.DeltaRequest) (*he.DeltaResponse, error) {
	var res he.DeltaResponse
	if err := c.heDo(ctx, repeatSafe, "/api/v1/he/deltas", req, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// HEInference sends an inference request as is. HESession.Infer encrypts,
// sends, decrypts and finishes the plaintext layers.
func (c *ServiceClient) HEInference(ctx context.Context, req he.InferenceRequest) (*he.InferenceResponse, error) {
	var res he.InferenceResponse
	if err := c.heDo(ctx, repeatSafe, "/api/v1/he/inference", req, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// PackingAuto lets HESession.Deltas choose the packing by batch size.
const PackingAuto he.Packing = ""

// HESession encrypts, sends and decrypts under one tenant key pair, whose
// evaluation keys the server has (RegisterHEKeys). Use it from one
// goroutine at a time.
type HESession struct {
	c   *ServiceClient
	he  *he.Client
	key *he.ClientKeys
	// Compression asks the server to DEFLATE the returned ciphertexts
	// (smaller bodies, some CPU on both sides). Default none.
	Compression he.Compression
	// MaxRequestBytes bounds the ciphertext bytes of one request: Deltas
	// splits a larger batch at whole ciphertext groups (default
	// DefaultHERequestBytes; the server accepts up to 1 GiB).
	MaxRequestBytes int
}

// DefaultHERequestBytes is HESession.MaxRequestBytes by default.
const DefaultHERequestBytes = 256 << 20

// HE returns a session for the client keys k.
func (c *ServiceClient) HE(k *he.ClientKeys) *HESession {
	return &HESession{c: c, he: he.NewClient(k), key: k}
}

// ChoosePacking picks the LoRA packing for tokens activations of an adapter
// of shape s: the one with the smaller request (ciphertext count times
// ciphertext size), the interleaved (low-latency) one only where the key
// declares the shape.
func (s *HESession) ChoosePacking(shape he.LoRAShape, tokens int) he.Packing {
	lat := he.Layout{Packing: he.PackingLatency, Dim: shape.DIn, Width: he.LatencyWidth(shape), Tokens: tokens}
	fm := he.Layout{Packing: he.PackingThroughput, Dim: shape.DIn, Tokens: tokens}
	p := s.key.Params()
	supported := false
	for _, x := range s.key.Capabilities().LoRA {
		supported = supported || x == shape
	}
	if supported && he.InputBytes(p, lat) <= he.InputBytes(p, fm) {
		return he.PackingLatency
	}
	return he.PackingThroughput
}

// Deltas computes the LoRA deltas scale·B(Ax) of modules (adapters of one
// shape registered with RegisterHEAdapter) for activations x (tokens×d_in)
// without the server seeing x or the result: x is encrypted here, the
// server computes on ciphertexts, and the deltas are decrypted here. It
// returns one tokens×d_out matrix per module.
func (s *HESession) Deltas(ctx context.Context, modules []string, shape he.LoRAShape, x [][]float64, packing he.Packing) ([][][]float64, error) {
	if packing == PackingAuto {
		packing = s.ChoosePacking(shape, len(x))
	}
	p := s.key.Params()
	l := he.Layout{Packing: packing, Dim: shape.DIn, Tokens: 1}
	if packing == he.PackingLatency {
		l.Width = he.LatencyWidth(shape)
	}
	limit := s.MaxRequestBytes
	if limit <= 0 {
		limit = DefaultHERequestBytes
	}
	group := he.InputBytes(p, l)
	if group > limit {
		return nil, fmt.Errorf("tensafe: HE deltas: one group of the %s packing is %d bytes of ciphertexts, over the request limit of %d; use the interleaved packing (a key declaring the shape) or a smaller d_in", packing, group, limit)
	}
	step := max(1, limit/group) * l.GroupTokens(p.Slots())
	out := make([][][]float64, len(modules))
	for from := 0; from < len(x) || from == 0; from += step {
		part, err := s.deltas(ctx, modules, shape, x[from:min(from+step, len(x))], packing)
		if err != nil {
			return nil, err
		}
		for i := range out {
			out[i] = append(out[i], part[i]...)
		}
		if from+step >= len(x) {
			break
		}
	}
	return out, nil
}

// deltas is Deltas of one request.
func (s *HESession) deltas(ctx context.Context, modules []string, shape he.LoRAShape, x [][]float64, packing he.Packing) ([][][]float64, error) {
	in, err := s.he.EncryptLoRAInput(ctx, x, packing, shape)
	if err != nil {
		return nil, fmt.Errorf("tensafe: HE deltas: %w", err)
	}
	b, err := he.NewBundle(he.KindLoRAInput, in, he.CompressionNone)
	if err != nil {
		return nil, fmt.Errorf("tensafe: HE deltas: %w", err)
	}
	res, err := s.c.HEDeltas(ctx, he.DeltaRequest{KeyID: s.key.ID(), Modules: modules, Input: *b, Compression: s.Compression})
	if err != nil {
		return nil, err
	}
	if len(res.Deltas) != len(modules) {
		return nil, fmt.Errorf("tensafe: HE deltas: %d bundles for %d modules: %w", len(res.Deltas), len(modules), ErrMalformedResponse)
	}
	out := make([][][]float64, len(modules))
	for i := range res.Deltas {
		d := &res.Deltas[i]
		if d.Kind != he.KindLoRADelta || d.Layout.Tokens != len(x) || d.Layout.Packing != packing {
			return nil, fmt.Errorf("tensafe: HE deltas: bundle %d is not the delta of this input: %w", i, ErrMalformedResponse)
		}
		batch, err := d.Batch(s.key.Params(), he.DefaultLimits())
		if err != nil {
			return nil, fmt.Errorf("tensafe: HE deltas: bundle %d: %w (%v)", i, ErrMalformedResponse, err)
		}
		if out[i], err = s.he.Decrypt(ctx, batch); err != nil {
			return nil, fmt.Errorf("tensafe: HE deltas: %w", err)
		}
	}
	return out, nil
}

// Infer runs private inference of a registered model (info as returned by
// RegisterHEModel) on x (tokens×input_dim): the input is encrypted here,
// the server evaluates the HE layers, the output is decrypted here, and the
// remaining layers (profiles encrypted_input and hybrid) run here in
// plaintext with m, which may be nil for profile full.
func (s *HESession) Infer(ctx context.Context, model string, info he.ModelInfo, x [][]float64, m *he.MLP) ([][]float64, error) {
	if info.HELayers < info.Layers && m == nil {
		return nil, fmt.Errorf("tensafe: HE inference: model %q has %d plaintext layers to run; pass the model", model, info.Layers-info.HELayers)
	}
	in, err := s.he.EncryptModelInput(ctx, x, info.Width)
	if err != nil {
		return nil, fmt.Errorf("tensafe: HE inference: %w", err)
	}
	b, err := he.NewBundle(he.KindModelInput, in, he.CompressionNone)
	if err != nil {
		return nil, fmt.Errorf("tensafe: HE inference: %w", err)
	}
	res, err := s.c.HEInference(ctx, he.InferenceRequest{KeyID: s.key.ID(), Model: model, Input: *b, Compression: s.Compression})
	if err != nil {
		return nil, err
	}
	if res.Output.Kind != he.KindModelOutput || res.Output.Layout.Tokens != len(x) {
		return nil, fmt.Errorf("tensafe: HE inference: output is not of this input: %w", ErrMalformedResponse)
	}
	batch, err := res.Output.Batch(s.key.Params(), he.DefaultLimits())
	if err != nil {
		return nil, fmt.Errorf("tensafe: HE inference: %w (%v)", ErrMalformedResponse, err)
	}
	h, err := s.he.Decrypt(ctx, batch)
	if err != nil {
		return nil, fmt.Errorf("tensafe: HE inference: %w", err)
	}
	if res.HELayers >= res.Layers {
		return h, nil
	}
	out := make([][]float64, len(h))
	for i, row := range h {
		out[i] = m.ForwardFrom(res.HELayers, row)
	}
	return out, nil
}
