package engine

import (
	"context"
	"testing"

	"github.com/tensafe/tensafe/loss"
	"github.com/tensafe/tensafe/model"
)

// BenchmarkForwardBackwardLoss: one DP forward_backward (per-example
// gradients, clipping, accumulation) on tensafe-tiny, B=12, T=64, per loss
// type, and the client-side custom loss. Compare with BenchmarkLoss in
// package loss for the loss's own share.
func BenchmarkForwardBackwardLoss(b *testing.B) {
	ctx := context.Background()
	m := model.Tiny()
	const B, T = 12, 64
	specs := []loss.Spec{
		{Type: "token_ce"}, {Type: "margin_ranking"}, {Type: "contrastive"},
		{Type: "mse", Kwargs: map[string]any{"head_token": 65}},
		{Type: "importance_sampling"}, {Type: "ppo", Kwargs: map[string]any{"kl_coef": 0.1}}, {Type: "dpo"},
		{Type: "custom"},
	}
	for _, spec := range specs {
		b.Run(spec.Type, func(b *testing.B) {
			e, err := New(m, Config{LoRA: model.LoRAConfig{Rank: 8, Alpha: 16}, Optimizer: DefaultOptimizer(),
				DP: DPConfig{Enabled: true, NoiseMultiplier: 1, MaxGradNorm: 1, ExpectedBatch: B}})
			if err != nil {
				b.Fatal(err)
			}
			batch := randomBatch(256, B, T, 1)
			group := 1
			if spec.Type != "custom" {
				l, err := loss.Resolve(spec)
				if err != nil {
					b.Fatal(err)
				}
				group = l.Group()
			}
			batch = rlBatch(b, e, batch, B/group)
			grads := batch.Advantages
			run := func() {
				var err error
				if spec.Type == "custom" {
					_, err = e.ForwardBackwardCustom(ctx, batch, grads)
				} else {
					_, err = e.ForwardBackward(ctx, batch, spec)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			run() // compile
			b.ResetTimer()
			for range b.N {
				run()
			}
		})
	}
}
