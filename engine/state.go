package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"

	"github.com/tensafe/tensafe/model"
	"github.com/tensafe/tensafe/safetensors"
)

// StateFormat names the engine state format written by Save
// (docs/CHECKPOINT.md). Load also reads StateFormatV1.
const StateFormat = "tensafe-engine-state/v2"

// StateFormatV1 is the previous format: v2 without the optimizer_state
// field, always with the AdamW moments.
const StateFormatV1 = "tensafe-engine-state/v1"

// Values of the header's optimizer_state field.
const (
	OptimizerStateAdamW = "adamw" // adam_m/ and adam_v/ tensors present
	OptimizerStateNone  = "none"  // weights and counters only; moments restart at zero
)

// SaveOptions choose what Save writes.
type SaveOptions struct {
	// SkipOptimizer leaves the AdamW moments out: a smaller state that
	// restores the adapter exactly but restarts the moments at zero.
	SkipOptimizer bool
}

// MaxStateSize bounds a state file a reader accepts (4 GiB).
const MaxStateSize = 4 << 30

// ErrPendingGradients is returned by Save while gradients are accumulated:
// they are clipped sums of private examples that have not been noised yet,
// and TenSafe never writes them to storage.
var ErrPendingGradients = errors.New("engine: save state: gradients accumulated since the last optim_step would be written un-noised; call optim_step first")

type stateHeader struct {
	Format     string           `json:"format"`
	BaseModel  string           `json:"base_model"`
	BaseParams string           `json:"base_params"` // parameter count: a guard against loading onto another shape
	Step       int              `json:"step"`
	LoRA       model.LoRAConfig `json:"lora"`
	Optimizer  OptimizerConfig  `json:"optimizer"`
	DP         DPConfig         `json:"dp"`
	Seed       uint64           `json:"seed"`
	// OptimizerState is "adamw" or "none" (v2; absent in v1, which always
	// has the moments).
	OptimizerState string `json:"optimizer_state,omitempty"`
}

// Save writes the LoRA weights, AdamW moments and counters as a safetensors
// file (tensors "lora/<name>", "adam_m/<name>", "adam_v/<name>"; metadata
// "tensafe" holding the JSON header). Saving the same state twice gives the
// same bytes.
func (e *Engine) Save(w io.Writer) error { return e.SaveWith(w, SaveOptions{}) }

// SaveWith is Save with options.
func (e *Engine) SaveWith(w io.Writer, opt SaveOptions) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.accumExamples > 0 {
		return ErrPendingGradients
	}
	h := stateHeader{
		Format: StateFormat, BaseModel: e.model.Name, BaseParams: strconv.FormatInt(e.model.Config.Parameters(), 10),
		Step: e.step, LoRA: e.cfg.LoRA, Optimizer: e.cfg.Optimizer, DP: e.cfg.DP, Seed: e.cfg.Seed,
		OptimizerState: OptimizerStateAdamW,
	}
	if opt.SkipOptimizer {
		h.OptimizerState = OptimizerStateNone
	}
	hj, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("engine: save state: %w", err)
	}
	ts := map[string]*safetensors.Tensor{}
	for i, n := range e.lora.Names {
		shape := e.lora.Shapes[n]
		ts["lora/"+n] = safetensors.FromFloat32(shape, e.lora.Values[n])
		if opt.SkipOptimizer {
			continue
		}
		ts["adam_m/"+n] = safetensors.FromFloat32(shape, e.adamM[i])
		ts["adam_v/"+n] = safetensors.FromFloat32(shape, e.adamV[i])
	}
	if err := safetensors.Write(w, ts, map[string]string{"tensafe": string(hj)}); err != nil {
		return fmt.Errorf("engine: save state: %w", err)
	}
	return nil
}

// Load restores state written by Save into this engine, which must use the
// same base model shape and LoRA layout. The optimizer and DP settings of
// the state replace the engine's; a state saved without the optimizer
// (SaveOptions.SkipOptimizer) restarts the AdamW moments at zero and keeps
// the step counter. On error the engine is unchanged.
func (e *Engine) Load(r io.Reader) error {
	data, err := io.ReadAll(io.LimitReader(r, MaxStateSize+1))
	if err != nil {
		return fmt.Errorf("engine: load state: %w", err)
	}
	if len(data) > MaxStateSize {
		return fmt.Errorf("engine: load state: larger than %d bytes", int64(MaxStateSize))
	}
	f, err := safetensors.Parse(data)
	if err != nil {
		return fmt.Errorf("engine: load state: %w", err)
	}
	var h stateHeader
	dec := json.NewDecoder(bytes.NewReader([]byte(f.Metadata["tensafe"])))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return fmt.Errorf("engine: load state: header: %w", err)
	}
	switch {
	case h.Format == StateFormatV1 && h.OptimizerState == "":
		h.OptimizerState = OptimizerStateAdamW
	case h.Format == StateFormat && (h.OptimizerState == OptimizerStateAdamW || h.OptimizerState == OptimizerStateNone):
	case h.Format == StateFormat:
		return fmt.Errorf("engine: load state: optimizer_state %q, want %q or %q", h.OptimizerState, OptimizerStateAdamW, OptimizerStateNone)
	case h.Format == StateFormatV1:
		return fmt.Errorf("engine: load state: optimizer_state is not a field of %s", StateFormatV1)
	default:
		return fmt.Errorf("engine: load state: format %q, want %q or %q", h.Format, StateFormat, StateFormatV1)
	}
	withMoments := h.OptimizerState == OptimizerStateAdamW
	e.mu.Lock()
	defer e.mu.Unlock()
	if h.BaseParams != strconv.FormatInt(e.model.Config.Parameters(), 10) {
		return fmt.Errorf("engine: load state: saved for base model %q of %s parameters, this engine runs %q", h.BaseModel, h.BaseParams, e.model.Name)
	}
	cfg := e.cfg
	cfg.LoRA, cfg.Optimizer, cfg.DP, cfg.Seed = h.LoRA, h.Optimizer, h.DP, h.Seed
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("engine: load state: %w", err)
	}
	if h.Step < 0 {
		return fmt.Errorf("engine: load state: step %d is negative", h.Step)
	}
	lora, err := model.NewLoRA(e.model.Config, h.LoRA, 0)
	if err != nil {
		return fmt.Errorf("engine: load state: %w", err)
	}
	parts := 1
	if withMoments {
		parts = 3
	}
	if want := parts * len(lora.Names); len(f.Tensors) != want {
		return fmt.Errorf("engine: load state: %d tensors, want %d", len(f.Tensors), want)
	}
	m, v := make([][]float32, len(lora.Names)), make([][]float32, len(lora.Names))
	for i, n := range lora.Names {
		for _, part := range []struct {
			prefix string
			dst    *[]float32
		}{{"lora/", nil}, {"adam_m/", &m[i]}, {"adam_v/", &v[i]}}[:parts] {
			t, ok := f.Tensors[part.prefix+n]
			if !ok {
				return fmt.Errorf("engine: load state: missing tensor %q", part.prefix+n)
			}
			if t.DType != safetensors.F32 || !slices.Equal(t.Shape, lora.Shapes[n]) {
				return fmt.Errorf("engine: load state: tensor %q is %s%v, want F32%v", part.prefix+n, t.DType, t.Shape, lora.Shapes[n])
			}
			vals, err := t.Float32()
			if err != nil {
				return fmt.Errorf("engine: load state: %w", err)
			}
			if part.dst == nil {
				lora.Values[n] = vals
			} else {
				*part.dst = vals
			}
		}
	}
	if !withMoments {
		for i, n := range lora.Names {
			size := len(lora.Values[n])
			m[i], v[i] = make([]float32, size), make([]float32, size)
		}
	}
	// Recompile: the LoRA layout may differ from the engine's.
	e.cfg, e.lora, e.adamM, e.adamV, e.step = cfg, lora, m, v, h.Step
	e.graphs = newGraphCache()
	e.resetAccum()
	return nil
}

// StateHasOptimizer reports whether a state written by Save carries the
// AdamW moments (v1 always does; v2 says so in optimizer_state).
func StateHasOptimizer(data []byte) (bool, error) {
	f, err := safetensors.Parse(data)
	if err != nil {
		return false, fmt.Errorf("engine: state: %w", err)
	}
	var h stateHeader
	if err := json.Unmarshal([]byte(f.Metadata["tensafe"]), &h); err != nil {
		return false, fmt.Errorf("engine: state: header: %w", err)
	}
	return h.Format == StateFormatV1 || h.OptimizerState == OptimizerStateAdamW, nil
}
