package loss

import (
	"math/rand/v2"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/tensors"
)

func f32(x [][]float64) [][]float32 {
	out := make([][]float32, len(x))
	for i, r := range x {
		out[i] = make([]float32, len(r))
		for j, v := range r {
			out[i][j] = float32(v)
		}
	}
	return out
}

func f32x3(x [][][]float64) [][][]float32 {
	out := make([][][]float32, len(x))
	for i, r := range x {
		out[i] = f32(r)
	}
	return out
}

// args32 are x's inputs in float32, as the engine feeds them.
func (x *in) args32(coef []float64) []any {
	ex := make([]float32, len(x.exTargets))
	for i, v := range x.exTargets {
		ex[i] = float32(v)
	}
	c := make([]float32, len(coef))
	for i, v := range coef {
		c[i] = float32(v)
	}
	return []any{tensors.FromValue(f32x3(x.logits)), tensors.FromValue(f32x3(x.hidden)), tensors.FromValue(x.targets),
		tensors.FromValue(f32(x.weights)), tensors.FromValue(f32(x.mask)), tensors.FromValue(f32(x.adv)), tensors.FromValue(f32(x.samp)),
		tensors.FromValue(f32(x.ref)), tensors.FromValue(f32(x.lpg)), tensors.FromValue(ex), tensors.FromValue(c)}
}

// BenchmarkLoss: each loss's own cost in float32 — per-example values,
// metrics and the gradient with respect to the logits and the hidden
// states — on a batch of 12 rows of 64 positions, tensafe-tiny's
// vocabulary (264) and hidden size (128). The model's forward and backward
// passes are not included (see engine's BenchmarkForwardBackwardLoss).
func BenchmarkLoss(b *testing.B) {
	const B, T, V, H = 12, 64, 264, 128
	specs := []Spec{
		{Type: "token_ce"}, {Type: "margin_ranking"}, {Type: "contrastive"},
		{Type: "mse", Kwargs: map[string]any{"head_token": 65}},
		{Type: "importance_sampling"}, {Type: "ppo", Kwargs: map[string]any{"kl_coef": 0.1}}, {Type: "dpo"},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, s := range specs {
		b.Run(s.Type, func(b *testing.B) {
			l, err := Resolve(s)
			if err != nil {
				b.Fatal(err)
			}
			x := randomCase(rng, B, T, V, H, B/l.Group())
			h := newHarness(b, l)
			args := x.args32(make([]float64, B/l.Group()))
			for _, v := range l.Params {
				args = append(args, tensors.FromScalar(float32(v)))
			}
			if _, err := h.exec.Exec(args...); err != nil { // compile
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				if _, err := h.exec.Exec(args...); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("logprob_surrogate", func(b *testing.B) {
		x := randomCase(rng, B, T, V, H, B)
		h := newHarness(b, LogProbSurrogate())
		args := x.args32(make([]float64, B))
		if _, err := h.exec.Exec(args...); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for range b.N {
			if _, err := h.exec.Exec(args...); err != nil {
				b.Fatal(err)
			}
		}
	})
}
