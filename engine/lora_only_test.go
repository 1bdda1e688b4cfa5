package engine

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"math"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/tensafe/tensafe/loss"
	"github.com/tensafe/tensafe/model"
)

// hashBase hashes every base parameter of m, bit for bit, in order.
func hashBase(t *testing.T, m *model.Model) [32]byte {
	t.Helper()
	h := sha256.New()
	for i, w := range m.Weights() {
		h.Write([]byte(m.ParamNames()[i]))
		for _, v := range tensors.MustCopyFlatData[float32](w) {
			binary.Write(h, binary.LittleEndian, math.Float32bits(v))
		}
	}
	return [32]byte(h.Sum(nil))
}

// TestRLUpdatesLoRAOnly: reinforcement-learning updates (the
// importance_sampling and ppo losses with advantages, sampling and
// reference log-probabilities, DP on) change the LoRA weights and leave
// every base parameter bit-identical.
func TestRLUpdatesLoRAOnly(t *testing.T) {
	m := model.Tiny()
	before := hashBase(t, m)
	opt := DefaultOptimizer()
	opt.LR = 5e-2
	e, err := New(m, Config{LoRA: model.LoRAConfig{Rank: 4, Alpha: 8, TargetModules: model.AllModules}, Optimizer: opt, Seed: 3,
		DP: DPConfig{Enabled: true, NoiseMultiplier: 1, MaxGradNorm: 1, ExpectedBatch: 2}})
	if err != nil {
		t.Fatal(err)
	}
	lora0 := map[string][]float32{}
	for _, n := range e.lora.Names {
		lora0[n] = append([]float32(nil), e.lora.Values[n]...)
	}
	ids := [][]int{{256, 'q', 'a', 'b', 257}, {256, 'q', 'x', 257}}
	b := Batch{
		InputIDs:          ids,
		Labels:            [][]int{{-100, -100, 'a', 'b', 257}, {-100, -100, 'x', 257}},
		Advantages:        [][]float64{{0, 0, 1, 1, 1}, {0, 0, -1, -1}},
		SamplingLogprobs:  [][]float64{{0, 0, -5, -5, -5}, {0, 0, -5, -5}},
		ReferenceLogprobs: [][]float64{{0, 0, -5, -5, -5}, {0, 0, -5, -5}},
	}
	for _, spec := range []loss.Spec{
		{Type: "importance_sampling", Kwargs: map[string]any{"entropy_coef": 0.01}},
		{Type: "ppo", Kwargs: map[string]any{"kl_coef": 0.1}},
	} {
		for range 2 {
			if _, err := e.ForwardBackward(context.Background(), b, spec); err != nil {
				t.Fatalf("%s: %v", spec.Type, err)
			}
			if _, err := e.OptimStep(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	changed := false
	for _, n := range e.lora.Names {
		for j, v := range e.lora.Values[n] {
			changed = changed || v != lora0[n][j]
		}
	}
	if !changed {
		t.Error("the LoRA weights did not change")
	}
	if hashBase(t, m) != before {
		t.Error("an RL update changed the base model's parameters")
	}
}
