package service

import (
	"context"
	"fmt"
	"testing"

	"github.com/tensafe/tensafe/api"
)

// BenchmarkServerTrainStep: one train_step through the service, drawing
// from a dataset of the four rows BenchmarkTrainStep trains on. With rows
// 4 (q = 1) every draw is the whole dataset, the same batch: the difference
// to BenchmarkTrainStep (forward_backward + optim_step, two futures) is
// train_step's own cost — the dataset check, the draw, the batch build — net
// of the future it saves. With rows 1024 (q = 4/1024) the batch is random
// with mean 4.
func BenchmarkServerTrainStep(b *testing.B) {
	texts := []string{"the quick brown", "fox jumps over", "the lazy dog ok", "privacy first!!"}
	for _, rows := range []int{4, 1024} {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			f := newFixture(b)
			ctx := context.Background()
			s, ten := f.svc, f.tenA
			tb := textBatch(texts...)
			ex := make([]api.DatasetExample, rows)
			for i := range ex {
				ex[i] = api.DatasetExample{InputIDs: tb.InputIDs[i%len(texts)]}
			}
			ds, err := s.CreateDataset(ctx, ten, api.CreateDatasetRequest{Examples: ex})
			if err != nil {
				b.Fatal(err)
			}
			cfg := tinyConfig(1, 1000, 4, 0)
			cfg.DP.Sampling, cfg.DP.DatasetID = api.SamplingServer, ds.ID
			tc, err := s.CreateTrainingClient(ctx, ten, cfg)
			if err != nil {
				b.Fatal(err)
			}
			step := func() {
				fu, err := s.TrainStep(ctx, ten, tc.ID, api.TrainStepRequest{})
				await(b, s, ten, fu, err, nil)
			}
			step() // compile graphs
			b.ResetTimer()
			for b.Loop() {
				step()
			}
		})
	}
}

// BenchmarkClientStepSameQ is BenchmarkTrainStep at the sampling rates of
// BenchmarkServerTrainStep (dataset_size 4 and 1024, expected batch 4), so
// that the accountant's work is the same: forward_backward of the four rows
// and optim_step, two futures.
func BenchmarkClientStepSameQ(b *testing.B) {
	for _, rows := range []int64{4, 1024} {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			f := newFixture(b)
			ctx := context.Background()
			s, ten := f.svc, f.tenA
			tc, err := s.CreateTrainingClient(ctx, ten, tinyConfig(1, 1000, 4, rows))
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
			step()
			b.ResetTimer()
			for b.Loop() {
				step()
			}
		})
	}
}

// BenchmarkPoissonDraw: the draw alone, per step, for a dataset of n rows
// (8 bytes of crypto/rand per row).
func BenchmarkPoissonDraw(b *testing.B) {
	for _, n := range []int{1024, 1 << 20} {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := poissonDraw(64.0/float64(n), n); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
