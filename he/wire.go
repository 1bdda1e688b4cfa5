package he

import (
	"fmt"
	"time"
)

// Request and response bodies for the HTTP API the server will expose
// (issue 8, item 5). They are defined here, next to the formats they carry,
// so the server and SDKs share one definition; the server maps them onto
// routes such as:
//
//	POST /v1/he/keys                   RegisterKeysRequest    → RegisterKeysResponse
//	POST /v1/he/adapters               RegisterAdapterRequest → RegisterAdapterResponse
//	POST /v1/he/deltas                 DeltaRequest           → DeltaResponse
//	POST /v1/he/models                 RegisterModelRequest   → RegisterModelResponse
//	POST /v1/he/inference              InferenceRequest       → InferenceResponse
//
// Bundles travel inline as JSON (ciphertexts base64) or, with
// Content-Type application/cbor, as CBOR byte strings.

// RegisterKeysRequest uploads a tenant's evaluation keys (the output of
// EvaluationKeys.MarshalBinary). The new key becomes active and the previous
// one is retired.
type RegisterKeysRequest struct {
	EvaluationKeys []byte `json:"evaluation_keys" cbor:"evaluation_keys"`
}

// RegisterKeysResponse confirms the stored key.
type RegisterKeysResponse struct {
	Key KeyInfo `json:"key" cbor:"key"`
}

// RegisterAdapterRequest registers a plaintext LoRA adapter for a module:
// either the explicit weights A, B and Scale, or a Source (a training
// client's current LoRA, or a saved checkpoint of the same tenant) from
// which the server takes them.
type RegisterAdapterRequest struct {
	Module string      `json:"module" cbor:"module"`
	A      [][]float64 `json:"a,omitempty" cbor:"a,omitempty"` // rank×d_in
	B      [][]float64 `json:"b,omitempty" cbor:"b,omitempty"` // d_out×rank
	Scale  float64     `json:"scale,omitempty" cbor:"scale,omitempty"`
	// Source, instead of A, B and Scale.
	Source *AdapterSource `json:"source,omitempty" cbor:"source,omitempty"`
}

// AdapterSource names one LoRA projection of a TenSafe adapter: that of
// layer Layer and module Module ("q_proj", "v_proj", …) of a training
// client's current adapter (TrainingClientID) or of a save_state checkpoint
// artifact (ArtifactID); exactly one of the two. Scale is the adapter's
// (alpha/r, or alpha/√r with rsLoRA).
type AdapterSource struct {
	TrainingClientID string `json:"training_client_id,omitempty" cbor:"training_client_id,omitempty"`
	ArtifactID       string `json:"artifact_id,omitempty" cbor:"artifact_id,omitempty"`
	Layer            int    `json:"layer" cbor:"layer"`
	Module           string `json:"module" cbor:"module"`
}

// Adapter converts the request to an Adapter.
func (r RegisterAdapterRequest) Adapter() Adapter { return Adapter{A: r.A, B: r.B, Scale: r.Scale} }

// AdapterInfo describes a registered adapter (GET /api/v1/he/adapters).
type AdapterInfo struct {
	Module string    `json:"module" cbor:"module"`
	Shape  LoRAShape `json:"shape" cbor:"shape"`
	Stored time.Time `json:"stored" cbor:"stored"`
}

// ModelEntry describes a registered model (GET /api/v1/he/models).
type ModelEntry struct {
	Name   string    `json:"name" cbor:"name"`
	Model  ModelInfo `json:"model" cbor:"model"`
	Stored time.Time `json:"stored" cbor:"stored"`
}

// RegisterAdapterResponse reports the registered shape and the packings it
// can serve under the tenant's active key.
type RegisterAdapterResponse struct {
	Module   string    `json:"module" cbor:"module"`
	Shape    LoRAShape `json:"shape" cbor:"shape"`
	Packings []Packing `json:"packings" cbor:"packings"`
}

// DeltaRequest asks for encrypted deltas of one or more modules over one
// encrypted input bundle (kind lora_input).
type DeltaRequest struct {
	KeyID   string   `json:"key_id" cbor:"key_id"`
	Modules []string `json:"modules" cbor:"modules"`
	Input   Bundle   `json:"input" cbor:"input"`
	// Compression of the returned bundles: "none" (default) or "deflate".
	Compression Compression `json:"compression,omitempty" cbor:"compression,omitempty"`
}

// DeltaResponse carries one lora_delta bundle per requested module, in order.
type DeltaResponse struct {
	Deltas []Bundle `json:"deltas" cbor:"deltas"`
}

// RegisterModelRequest registers an HE-friendly model for private inference.
type RegisterModelRequest struct {
	Name    string  `json:"name" cbor:"name"`
	Model   MLP     `json:"model" cbor:"model"`
	Profile Profile `json:"profile" cbor:"profile"`
	// HybridLayers is the number of HE layers for profile hybrid.
	HybridLayers int `json:"hybrid_layers,omitempty" cbor:"hybrid_layers,omitempty"`
}

// RegisterModelResponse tells the client how to encrypt inputs (width) and
// how many layers it must finish in plaintext (Layers − HELayers).
type RegisterModelResponse struct {
	Model ModelInfo `json:"model" cbor:"model"`
}

// InferenceRequest runs a registered model on an encrypted input bundle
// (kind model_input, packing interleaved_real).
type InferenceRequest struct {
	KeyID       string      `json:"key_id" cbor:"key_id"`
	Model       string      `json:"model" cbor:"model"`
	Input       Bundle      `json:"input" cbor:"input"`
	Compression Compression `json:"compression,omitempty" cbor:"compression,omitempty"`
}

// InferenceResponse carries the encrypted output of the HE layers (kind
// model_output). The client decrypts it and, unless the profile is full,
// runs the remaining layers with MLP.ForwardFrom(HELayers, ·).
type InferenceResponse struct {
	Output   Bundle `json:"output" cbor:"output"`
	HELayers int    `json:"he_layers" cbor:"he_layers"`
	Layers   int    `json:"layers" cbor:"layers"`
}

// Media types of the HE routes' bodies. Both carry the same structures:
// JSON with ciphertexts and keys as standard base64 strings, CBOR (core
// deterministic encoding) with byte strings, about 25% smaller.
const (
	MediaTypeJSON = "application/json"
	MediaTypeCBOR = "application/cbor"
)

// FieldError names the field of a wire value (a bundle, an adapter) that
// failed validation, as a JSON path relative to that value ("ciphertexts[3]",
// "content_hash", "a[2]"). Callers prefix it with where the value sits in
// their request.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Err.Error() }

func (e *FieldError) Unwrap() error { return e.Err }

func fieldErrorf(field, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

// MarshalWireCBOR encodes an API body (one of the request or response types
// of this file) as CBOR in the core deterministic encoding.
func MarshalWireCBOR(v any) ([]byte, error) {
	out, err := cborEnc.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("he: wire cbor: %w", err)
	}
	return out, nil
}

// UnmarshalWireCBOR decodes an API body strictly: unknown fields, duplicate
// keys, indefinite lengths, tags and trailing data are errors. The caller
// bounds len(data); bundles inside still need Bundle.Batch.
func UnmarshalWireCBOR(data []byte, v any) error {
	if err := cborDec.Unmarshal(data, v); err != nil {
		return fmt.Errorf("he: wire cbor: %w", err)
	}
	return nil
}
