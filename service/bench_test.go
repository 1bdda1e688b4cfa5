package service

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/engine"
	"github.com/tensafe/tensafe/loss"
	"github.com/tensafe/tensafe/model"
)

// BenchmarkTrainStep: one forward_backward (batch 4 × 16 tokens) and one
// optim_step through the service — queue, store, accountant, audit — per
// iteration.
func BenchmarkTrainStep(b *testing.B) {
	f := newFixture(b)
	ctx := context.Background()
	s, ten := f.svc, f.tenA
	tc, err := s.CreateTrainingClient(ctx, ten, tinyConfig(1, 1000, 4, 1_000_000))
	if err != nil {
		b.Fatal(err)
	}
	batch := textBatch("the quick brown", "fox jumps over", "the lazy dog ok", "privacy first!!")
	step := func() {
		fu, err := s.ForwardBackward(ctx, ten, tc.ID, api.ForwardBackwardRequest{Batch: batch})
		await(b, s, ten, fu, err, nil)
		ou, err := s.OptimStep(ctx, ten, tc.ID)
		await(b, s, ten, ou, err, nil)
	}
	step() // compile graphs
	b.ResetTimer()
	for b.Loop() {
		step()
	}
}

// BenchmarkTrainStepEngine is the same step on the engine alone: the
// difference to BenchmarkTrainStep is the service's overhead.
func BenchmarkTrainStepEngine(b *testing.B) {
	ctx := context.Background()
	eng, err := engine.New(model.Tiny(), engine.Config{LoRA: model.LoRAConfig{Rank: 4, Alpha: 8},
		DP:        engine.DPConfig{Enabled: true, NoiseMultiplier: 1, MaxGradNorm: 1, ExpectedBatch: 4},
		Optimizer: engine.DefaultOptimizer(), Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	ab := textBatch("the quick brown", "fox jumps over", "the lazy dog ok", "privacy first!!")
	eb := engine.Batch{InputIDs: ab.InputIDs, Labels: ab.Labels}
	step := func() {
		if _, err := eng.ForwardBackward(ctx, eb, loss.Spec{Type: "token_ce"}); err != nil {
			b.Fatal(err)
		}
		if _, err := eng.OptimStep(ctx); err != nil {
			b.Fatal(err)
		}
	}
	step()
	b.ResetTimer()
	for b.Loop() {
		step()
	}
}

// BenchmarkConcurrentClients: N clients each doing one training step per
// iteration, all at once, under MaxConcurrent 2.
func BenchmarkConcurrentClients(b *testing.B) {
	for _, n := range []int{4, 16} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			f := newFixture(b)
			ctx := context.Background()
			s, ten := f.svc, f.tenA
			batch := textBatch("the quick brown", "fox jumps over")
			ids := make([]string, n)
			for i := range ids {
				tc, err := s.CreateTrainingClient(ctx, ten, tinyConfig(1, 1000, 2, 1_000_000))
				if err != nil {
					b.Fatal(err)
				}
				ids[i] = tc.ID
			}
			round := func() {
				var wg sync.WaitGroup
				for _, id := range ids {
					wg.Go(func() {
						fu, err := s.ForwardBackward(ctx, ten, id, api.ForwardBackwardRequest{Batch: batch})
						await(b, s, ten, fu, err, nil)
						ou, err := s.OptimStep(ctx, ten, id)
						await(b, s, ten, ou, err, nil)
					})
				}
				wg.Wait()
			}
			round()
			b.ResetTimer()
			for b.Loop() {
				round()
			}
			b.ReportMetric(float64(b.Elapsed().Seconds())/float64(b.N*n)*1e3, "ms/client-step")
		})
	}
}
