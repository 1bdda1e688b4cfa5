package engine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/tensafe/tensafe/compute"
	"github.com/tensafe/tensafe/loss"
	"github.com/tensafe/tensafe/model"
)

// tinyLlamaShape is the shape of the tiny-llama fixture.
func tinyLlamaShape() model.Config {
	c := model.TinyConfig()
	c.VocabSize, c.Hidden, c.Intermediate, c.Layers, c.Heads, c.KVHeads, c.HeadDim = 512, 64, 176, 2, 4, 2, 16
	c.TieEmbeddings = false
	return c
}

func randomBatch(vocab, B, T int, seed uint64) Batch {
	rng := rand.New(rand.NewPCG(seed, 1))
	var b Batch
	for i := 0; i < B; i++ {
		row := make([]int, T)
		for j := range row {
			row[j] = rng.IntN(vocab)
		}
		b.InputIDs = append(b.InputIDs, row)
		b.Labels = append(b.Labels, row)
	}
	return b
}

func benchStep(b *testing.B, m *model.Model, dp bool, B, T int) {
	cfg := Config{LoRA: model.LoRAConfig{Rank: 8, Alpha: 16}, Optimizer: DefaultOptimizer()}
	if dp {
		cfg.DP = DPConfig{Enabled: true, NoiseMultiplier: 1, MaxGradNorm: 1, ExpectedBatch: B}
	}
	e, err := New(m, cfg)
	if err != nil {
		b.Fatal(err)
	}
	batch := randomBatch(m.Config.VocabSize, B, T, 1)
	step := func() {
		if _, err := e.ForwardBackward(context.Background(), batch, loss.Spec{}); err != nil {
			b.Fatal(err)
		}
		if _, err := e.OptimStep(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	step() // compile
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		step()
	}
}

// BenchmarkStep: a full training step (forward_backward + optim_step), DP
// and plain, on tensafe-tiny and the tiny-llama shape, B=8, T=64.
func BenchmarkStep(b *testing.B) {
	models := map[string]*model.Model{"tiny": model.Tiny(), "tiny-llama": model.Random("tiny-llama-shape", tinyLlamaShape(), 1)}
	for _, name := range []string{"tiny", "tiny-llama"} {
		for _, dp := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/%s", name, map[bool]string{false: "plain", true: "dp"}[dp]), func(b *testing.B) {
				benchStep(b, models[name], dp, 8, 64)
			})
		}
	}
}

// BenchmarkMatmulGradient: the DP step with GoMLX v0.26.0's stock DotGeneral
// gradient and with compute's matmul-based one.
func BenchmarkMatmulGradient(b *testing.B) {
	m := model.Tiny()
	for _, stock := range []bool{false, true} {
		b.Run(map[bool]string{false: "fixed", true: "stock"}[stock], func(b *testing.B) {
			compute.UseStockDotGeneralGradient(stock)
			defer compute.UseStockDotGeneralGradient(false)
			benchStep(b, m, true, 8, 64)
		})
	}
}

// BenchmarkGenerate: 256 new tokens, greedy, with and without the KV cache.
func BenchmarkGenerate(b *testing.B) {
	e, err := New(model.Tiny(), Config{LoRA: model.LoRAConfig{Rank: 8, Alpha: 16}, Optimizer: DefaultOptimizer()})
	if err != nil {
		b.Fatal(err)
	}
	for _, noCache := range []bool{false, true} {
		b.Run(map[bool]string{false: "kvcache", true: "nocache"}[noCache], func(b *testing.B) {
			req := SampleRequest{Prompt: []int{256, 'h', 'i'}, MaxTokens: 256, NoCache: noCache, StopTokens: nil}
			gen := func() int {
				seqs, err := e.Sample(context.Background(), req, nil)
				if err != nil {
					b.Fatal(err)
				}
				return len(seqs[0].Tokens)
			}
			gen()
			b.ResetTimer()
			tokens := 0
			for i := 0; i < b.N; i++ {
				tokens += gen()
			}
			b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
