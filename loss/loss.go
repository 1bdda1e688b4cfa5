// Package loss defines training objectives as per-example graph functions.
//
// A loss maps the model's outputs for a batch to one loss value per example.
// Per-example is the point: DP-SGD clips each example's gradient, so every
// loss must keep examples separate until the engine has clipped them.
// Losses are resolved by name with validated keyword arguments, so the same
// spec travels through the API, the SDKs and training configs.
package loss

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX graph code reads best with its ops unqualified.
)

// IgnoreIndex is the label value that marks a position without a target,
// as in PyTorch and Hugging Face.
const IgnoreIndex = -100

// Spec names a loss and its keyword arguments, as the API carries it:
// {"type": "token_ce", "kwargs": {"label_smoothing": 0.1}}.
type Spec struct {
	Type   string         `json:"type"`
	Kwargs map[string]any `json:"kwargs,omitempty"`
}

// Outputs are the model outputs a loss may read.
type Outputs struct {
	Logits *Node // [B, T, V]
	Hidden *Node // [B, T, H], after the final norm
}

// Batch holds the per-token inputs a loss may read, already shifted so that
// Targets[b][t] is the token predicted at position t.
type Batch struct {
	Targets *Node // [B, T] int32; positions without a target hold 0
	Weights *Node // [B, T] float32; 0 where there is no target
}

// Func computes per-example losses [B] (float32).
type Func func(out Outputs, batch Batch) *Node

// TokenCE is token-level cross-entropy. Each example's loss is the weighted
// mean over its target positions: Σ_t w_t ℓ_t / Σ_t w_t, with
// ℓ_t = (1-ε)·(−log p(target)) + ε·(−mean_v log p(v)) for label smoothing ε
// (PyTorch's definition). With unit weights and ε = 0 this is exactly the
// Hugging Face causal-LM loss of the example alone.
type TokenCE struct {
	LabelSmoothing float64 `json:"label_smoothing"`
}

// Build returns the graph function.
func (c TokenCE) Build() Func {
	return func(out Outputs, b Batch) *Node {
		logp := LogSoftmax(out.Logits, -1) // [B, T, V]
		V := logp.Shape().Dimensions[2]
		onehot := OneHot(b.Targets, V, logp.DType())
		nll := Neg(ReduceSum(Mul(logp, onehot), -1)) // [B, T]
		tok := nll
		if c.LabelSmoothing > 0 {
			smooth := Neg(ReduceMean(logp, -1))
			tok = Add(MulScalar(nll, 1-c.LabelSmoothing), MulScalar(smooth, c.LabelSmoothing))
		}
		num := ReduceSum(Mul(tok, b.Weights), -1)
		den := MaxScalar(ReduceSum(b.Weights, -1), 1e-12)
		return Div(num, den)
	}
}

// Resolve validates a spec and returns its graph function. Unknown types and
// unknown or ill-typed kwargs are errors naming them.
func Resolve(s Spec) (Func, error) {
	switch s.Type {
	case "", "token_ce", "cross_entropy":
		var c TokenCE
		if err := decodeKwargs(s, &c, "label_smoothing"); err != nil {
			return nil, err
		}
		if !(c.LabelSmoothing >= 0 && c.LabelSmoothing < 1) {
			return nil, fmt.Errorf("loss: token_ce: kwargs.label_smoothing must be in [0, 1), got %v", c.LabelSmoothing)
		}
		return c.Build(), nil
	}
	return nil, fmt.Errorf("loss: unknown loss type %q (known: token_ce)", s.Type)
}

func decodeKwargs(s Spec, dst any, allowed ...string) error {
	for k, v := range s.Kwargs {
		ok := false
		for _, a := range allowed {
			ok = ok || a == k
		}
		if !ok {
			sort.Strings(allowed)
			return fmt.Errorf("loss: %s: unknown kwarg %q (allowed: %v)", s.Type, k, allowed)
		}
		if f, isNum := v.(float64); isNum && (math.IsNaN(f) || math.IsInf(f, 0)) {
			return fmt.Errorf("loss: %s: kwargs.%s must be finite", s.Type, k)
		}
	}
	data, err := json.Marshal(s.Kwargs)
	if err != nil {
		return fmt.Errorf("loss: %s: kwargs: %w", s.Type, err)
	}
	if err := json.Unmarshal(data, dst); err != nil {
		return fmt.Errorf("loss: %s: kwargs: %w", s.Type, err)
	}
	return nil
}

// Key returns a canonical string for the spec (type and sorted kwargs), used
// to cache compiled graphs per loss.
func (s Spec) Key() string {
	data, _ := json.Marshal(s.Kwargs) // map keys are sorted
	t := s.Type
	if t == "" {
		t = "token_ce"
	}
	return t + string(data)
}
