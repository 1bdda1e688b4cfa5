// Package engine runs TenSafe's training step: per-example gradients of the
// LoRA parameters in one graph, flat clipping, Gaussian noise from a CSPRNG,
// AdamW, and sampling with a KV cache.
//
// Privacy semantics (see docs/ARCHITECTURE.md): ForwardBackward adds each
// example's gradient, clipped to L2 norm MaxGradNorm over all trainable
// tensors together, to an accumulator. OptimStep adds N(0, (σ·C)²) noise
// once to that sum, divides by the expected batch size and applies AdamW.
// The noise comes from a ChaCha8 generator keyed from crypto/rand at every
// step; no user seed reaches it. Accounting (how much ε a step costs) is the
// caller's job, with package privacy.
package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/tensafe/tensafe/compute"
	"github.com/tensafe/tensafe/loss"
	"github.com/tensafe/tensafe/model"
)

// DPConfig configures DP-SGD. With Enabled false the engine trains without
// clipping or noise (a baseline, never a private run).
type DPConfig struct {
	Enabled         bool    `json:"enabled"`
	NoiseMultiplier float64 `json:"noise_multiplier"`    // σ
	MaxGradNorm     float64 `json:"max_grad_norm"`       // C
	ExpectedBatch   int     `json:"expected_batch_size"` // the divisor of the noisy sum (q·N)
}

// OptimizerConfig configures AdamW (PyTorch semantics: decoupled weight
// decay) and an optional schedule.
type OptimizerConfig struct {
	LR          float64 `json:"learning_rate"`
	Beta1       float64 `json:"beta1"`
	Beta2       float64 `json:"beta2"`
	Eps         float64 `json:"eps"`
	WeightDecay float64 `json:"weight_decay"`
	WarmupSteps int     `json:"warmup_steps,omitempty"`
	Schedule    string  `json:"schedule,omitempty"` // "constant" (default) or "cosine"
	TotalSteps  int     `json:"total_steps,omitempty"`
}

// DefaultOptimizer returns AdamW with PyTorch's defaults and lr 1e-4.
func DefaultOptimizer() OptimizerConfig {
	return OptimizerConfig{LR: 1e-4, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01}
}

// Config configures an Engine.
type Config struct {
	LoRA      model.LoRAConfig `json:"lora"`
	DP        DPConfig         `json:"dp"`
	Optimizer OptimizerConfig  `json:"optimizer"`
	Seed      uint64           `json:"seed"` // LoRA initialisation and sampling; never DP noise
}

// Validate checks the configuration, naming the offending field.
func (c Config) Validate() error {
	if err := c.LoRA.Validate(); err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	if c.DP.Enabled {
		if !(c.DP.NoiseMultiplier >= 0) || math.IsInf(c.DP.NoiseMultiplier, 0) {
			return fmt.Errorf("engine: dp.noise_multiplier must be ≥ 0 and finite, got %v", c.DP.NoiseMultiplier)
		}
		if !(c.DP.MaxGradNorm > 0) || math.IsInf(c.DP.MaxGradNorm, 0) {
			return fmt.Errorf("engine: dp.max_grad_norm must be positive and finite, got %v", c.DP.MaxGradNorm)
		}
		if c.DP.ExpectedBatch <= 0 {
			return fmt.Errorf("engine: dp.expected_batch_size must be positive, got %d", c.DP.ExpectedBatch)
		}
	}
	o := c.Optimizer
	switch {
	case !(o.LR > 0) || math.IsInf(o.LR, 0):
		return fmt.Errorf("engine: optimizer.learning_rate must be positive, got %v", o.LR)
	case !(o.Beta1 >= 0 && o.Beta1 < 1):
		return fmt.Errorf("engine: optimizer.beta1 must be in [0, 1), got %v", o.Beta1)
	case !(o.Beta2 >= 0 && o.Beta2 < 1):
		return fmt.Errorf("engine: optimizer.beta2 must be in [0, 1), got %v", o.Beta2)
	case !(o.Eps > 0):
		return fmt.Errorf("engine: optimizer.eps must be positive, got %v", o.Eps)
	case !(o.WeightDecay >= 0) || math.IsInf(o.WeightDecay, 0):
		return fmt.Errorf("engine: optimizer.weight_decay must be ≥ 0, got %v", o.WeightDecay)
	case o.WarmupSteps < 0:
		return fmt.Errorf("engine: optimizer.warmup_steps must be ≥ 0, got %d", o.WarmupSteps)
	case o.Schedule != "" && o.Schedule != "constant" && o.Schedule != "cosine":
		return fmt.Errorf("engine: optimizer.schedule must be constant or cosine, got %q", o.Schedule)
	case o.Schedule == "cosine" && o.TotalSteps <= 0:
		return fmt.Errorf("engine: optimizer.total_steps must be positive for the cosine schedule")
	}
	return nil
}

// Engine trains one LoRA adapter on a shared base model. Its methods are
// safe for concurrent use; they run one at a time.
type Engine struct {
	mu      sync.Mutex
	model   *model.Model
	backend backends.Backend
	cfg     Config
	lora    *model.LoRA

	// Gradient accumulator (sum of clipped per-example gradients), per LoRA
	// tensor in lora.Names order, and the number of examples in it.
	accum         [][]float32
	accumExamples int

	// AdamW state.
	adamM, adamV [][]float32
	step         int    // optimizer steps taken
	runs         uint64 // training-graph runs, for dropout seeds

	graphs *graphCache
}

// ErrNoGradients is returned by OptimStep without DP when nothing was
// accumulated.
var ErrNoGradients = errors.New("engine: optim_step: no gradients accumulated since the last step (call forward_backward first)")

// New creates an engine with freshly initialised adapters.
func New(m *model.Model, cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	lora, err := model.NewLoRA(m.Config, cfg.LoRA, cfg.Seed)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	return newWithLoRA(m, cfg, lora)
}

// NewWithAdapter creates an engine that starts from existing adapters (for
// example a PEFT adapter loaded with model.LoadPEFT). cfg.LoRA is replaced by
// the adapter's configuration.
func NewWithAdapter(m *model.Model, cfg Config, lora *model.LoRA) (*Engine, error) {
	cfg.LoRA = lora.Config
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return newWithLoRA(m, cfg, lora.Clone())
}

func newWithLoRA(m *model.Model, cfg Config, lora *model.LoRA) (*Engine, error) {
	b, err := compute.Backend()
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	e := &Engine{model: m, backend: b, cfg: cfg, lora: lora, graphs: newGraphCache()}
	e.resetAccum()
	e.adamM = e.zerosLike()
	e.adamV = e.zerosLike()
	return e, nil
}

func (e *Engine) zerosLike() [][]float32 {
	out := make([][]float32, len(e.lora.Names))
	for i, n := range e.lora.Names {
		out[i] = make([]float32, len(e.lora.Values[n]))
	}
	return out
}

func (e *Engine) resetAccum() {
	e.accum = e.zerosLike()
	e.accumExamples = 0
}

// Config returns the engine's configuration.
func (e *Engine) Config() Config { return e.cfg }

// Model returns the base model.
func (e *Engine) Model() *model.Model { return e.model }

// Step returns the number of optimizer steps taken.
func (e *Engine) Step() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.step
}

// PendingExamples returns the number of examples accumulated since the last
// optimizer step.
func (e *Engine) PendingExamples() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.accumExamples
}

// Adapter returns a copy of the current LoRA weights.
func (e *Engine) Adapter() *model.LoRA {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lora.Clone()
}

// loraTensors returns the current LoRA weights as tensors, in Names order.
func (e *Engine) loraTensors() []*tensors.Tensor {
	out := make([]*tensors.Tensor, len(e.lora.Names))
	for i, n := range e.lora.Names {
		out[i] = tensors.FromFlatDataAndDimensions(slices.Clone(e.lora.Values[n]), e.lora.Shapes[n]...)
	}
	return out
}

func checkCtx(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	return nil
}

// lossFor resolves a loss spec and checks it against the model.
func (e *Engine) lossFor(s loss.Spec) (loss.Loss, error) {
	l, err := loss.Resolve(s)
	if err != nil {
		return loss.Loss{}, fmt.Errorf("engine: %w", err)
	}
	if err := CheckLossVocab(l, e.model.Config.VocabSize); err != nil {
		return loss.Loss{}, err
	}
	return l, nil
}
