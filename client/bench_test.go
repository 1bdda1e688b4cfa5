package client_test

import (
	"context"
	"testing"
)

// BenchmarkSDKDPMetrics measures one GET dp_metrics through the SDK against
// the real server on loopback (authentication, store read, JSON both ways).
func BenchmarkSDKDPMetrics(b *testing.B) {
	e := newEnv(b)
	c := e.client(b, e.trainerA)
	tc, err := c.CreateTrainingClient(context.Background(), tinyConfig(1, 8))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := tc.DPMetrics(context.Background()); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkSDKTrainingStep measures one forward_backward (2 examples) plus
// optim_step on tensafe-tiny through the SDK, each waited for.
func BenchmarkSDKTrainingStep(b *testing.B) {
	e := newEnv(b)
	c := e.client(b, e.trainerA)
	cfg := tinyConfig(1, 1000)
	cfg.DP.DatasetSize = 1 << 20 // a small q keeps ε far from the target
	tc, err := c.CreateTrainingClient(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	batch := textBatch("hello", "world")
	for b.Loop() {
		f, err := tc.ForwardBackward(ctx, batch, nil)
		result(b, f, err)
		g, err := tc.OptimStep(ctx)
		result(b, g, err)
	}
}
