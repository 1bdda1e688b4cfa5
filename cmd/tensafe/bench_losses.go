package main

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/tensafe/tensafe/benchsuite"
	"github.com/tensafe/tensafe/compute"
	"github.com/tensafe/tensafe/engine"
	"github.com/tensafe/tensafe/loss"
	"github.com/tensafe/tensafe/model"
)

// benchLosses are the built-in losses with the kwargs the suite uses.
func benchLosses() []loss.Spec {
	return []loss.Spec{
		{Type: "token_ce"},
		{Type: "margin_ranking", Kwargs: map[string]any{"margin": 1.0}},
		{Type: "contrastive", Kwargs: map[string]any{"group_size": 3, "temperature": 0.05}},
		{Type: "mse", Kwargs: map[string]any{"head_token": 65}},
		{Type: "importance_sampling", Kwargs: map[string]any{"entropy_coef": 0.01}},
		{Type: "ppo", Kwargs: map[string]any{"kl_coef": 0.05}},
		{Type: "dpo", Kwargs: map[string]any{"beta": 0.1}},
	}
}

// lossBatch is a batch of rows×seq random tokens of tensafe-tiny carrying
// every optional input a built-in loss may need.
func lossBatch(rows, seq int) engine.Batch {
	cfg := model.TinyConfig()
	b := randomBatch(cfg.VocabSize, rows, seq, 11)
	rng := rand.New(rand.NewPCG(11, 12))
	per := func(scale, shift float64) [][]float64 {
		out := make([][]float64, rows)
		for i := range out {
			out[i] = make([]float64, seq)
			for t := range out[i] {
				out[i][t] = shift + scale*rng.NormFloat64()
			}
		}
		return out
	}
	b.Advantages = per(1, 0)
	b.SamplingLogprobs = per(0.1, -5.5)
	b.ReferenceLogprobs = per(0.1, -5.5)
	return b
}

// lossOnly compiles l on its own — the loss's per-example values, its
// metrics and its gradient with respect to the logits and the final hidden
// states, as the engine's graph computes them — over random model outputs
// of rows × seq positions of tensafe-tiny's vocabulary and hidden size, and
// returns the executable with its arguments.
func lossOnly(l loss.Loss, rows, seq int) (*graph.Exec, []any, error) {
	cfg := model.TinyConfig()
	B, T, V, H, P := rows, seq, cfg.VocabSize, cfg.Hidden, rows/l.Group()
	backend, err := compute.Backend()
	if err != nil {
		return nil, nil, err
	}
	exec, err := graph.NewExec(backend, func(n []*graph.Node) []*graph.Node {
		out := loss.Outputs{Logits: n[0], Hidden: n[1]}
		b := loss.Batch{Targets: n[2], Weights: n[3], Mask: n[4], Advantages: n[5], SamplingLogProbs: n[6],
			ReferenceLogProbs: n[7], LogProbGrads: n[8], ExampleTargets: n[9], Params: n[10:]}
		res := l.Func(out, b)
		total := graph.ReduceAllSum(res.PerExample)
		g := graph.Gradient(total, n[0], n[1])
		outs := []*graph.Node{total, g[0], g[1], res.PerExample}
		for _, m := range l.Metrics {
			outs = append(outs, res.Metrics[m])
		}
		return outs
	})
	if err != nil {
		return nil, nil, err
	}
	rng := rand.New(rand.NewPCG(21, 22))
	f3 := func(d int) [][][]float32 {
		x := make([][][]float32, B)
		for i := range x {
			x[i] = make([][]float32, T)
			for t := range x[i] {
				x[i][t] = make([]float32, d)
				for k := range x[i][t] {
					x[i][t][k] = float32(rng.NormFloat64())
				}
			}
		}
		return x
	}
	f2 := func(f func() float64) [][]float32 {
		x := make([][]float32, B)
		for i := range x {
			x[i] = make([]float32, T)
			for t := range x[i] {
				if t < T-1 {
					x[i][t] = float32(f())
				}
			}
		}
		return x
	}
	targets := make([][]int32, B)
	for i := range targets {
		targets[i] = make([]int32, T)
		for t := range T - 1 {
			targets[i][t] = int32(rng.IntN(V))
		}
	}
	ones := func() float64 { return 1 }
	lp := func() float64 { return -math.Log(float64(V)) + 0.3*rng.NormFloat64() }
	ex := make([]float32, P)
	for i := range ex {
		ex[i] = float32(rng.NormFloat64())
	}
	mask := f2(ones)
	for i := range mask {
		mask[i][T-1] = 1
	}
	args := []any{tensors.FromValue(f3(V)), tensors.FromValue(f3(H)), tensors.FromValue(targets), tensors.FromValue(f2(ones)),
		tensors.FromValue(mask), tensors.FromValue(f2(rng.NormFloat64)), tensors.FromValue(f2(lp)), tensors.FromValue(f2(lp)),
		tensors.FromValue(f2(rng.NormFloat64)), tensors.FromValue(ex)}
	for _, v := range l.Params {
		args = append(args, tensors.FromScalar(float32(v)))
	}
	return exec, args, nil
}

// benchLossGroup times, for every built-in loss, resolving it and a DP
// forward_backward with it on tensafe-tiny (the loss is a graph function
// inside the step: its cost is the step's), and the forward pass that
// computes the per-example losses without gradients.
func benchLossGroup(ctx context.Context, r *benchsuite.Runner, o suiteOptions) error {
	const rows, seq = 12, 32 // 12 rows: 6 pairs, 4 groups of 3
	r.Param("loss", fmt.Sprintf("%s, %d rows × %d tokens (pairs and groups of 3 for the grouped losses), DP σ=1 C=1", model.TinyName, rows, seq))
	m := model.Tiny()
	b := lossBatch(rows, seq)
	specs := benchLosses()
	if _, err := r.Measure(ctx, benchsuite.Spec{Group: "loss", Name: "loss_registry_resolve (ppo, 2 kwargs)", Original: "loss_registry_resolve",
		N: iters(o, 2000, 10000), Unit: "resolve", Note: "registry lookup and kwargs validation"},
		func(context.Context) error { _, err := loss.Resolve(specs[5]); return err }); err != nil {
		return err
	}
	var ce *benchsuite.Result
	for _, spec := range specs {
		l, err := loss.Resolve(spec)
		if err != nil {
			return fmt.Errorf("resolve %s: %w", spec.Type, err)
		}
		e, err := engine.New(m, benchEngineConfig(true, rows/l.Group()))
		if err != nil {
			return err
		}
		b := b
		if spec.Type == "mse" { // one regression target per example
			b.Targets = make([]float64, rows/l.Group())
			for i := range b.Targets {
				b.Targets[i] = float64(i%3) - 1
			}
		}
		orig := ""
		if spec.Type == "token_ce" {
			orig = "loss_computation"
		}
		exec, args, err := lossOnly(l, rows, 64)
		if err != nil {
			return fmt.Errorf("%s: %w", spec.Type, err)
		}
		if _, err := r.Measure(ctx, benchsuite.Spec{Group: "loss", Name: "loss_computation (" + spec.Type + ")", Original: orig,
			N: iters(o, 50, 200), Unit: fmt.Sprintf("%d rows × 64 positions × %d-token vocabulary", rows, model.TinyConfig().VocabSize),
			Note:    "the loss alone: per-example values, metrics and the gradient with respect to logits and hidden states (float32)",
			MaxTime: 20 * time.Second},
			func(context.Context) error { _, err := exec.Exec(args...); return err }); err != nil {
			return err
		}
		if _, err := r.Measure(ctx, benchsuite.Spec{Group: "loss", Name: "forward with loss (" + spec.Type + ")",
			N: iters(o, 8, 20), Unit: fmt.Sprintf("forward of %d × %d tokens", rows, seq), Note: "per-example losses and metrics, no gradients",
			MaxTime: 20 * time.Second},
			func(ctx context.Context) error { _, err := e.Forward(ctx, b, spec, true); return err }); err != nil {
			return err
		}
		res, err := r.Measure(ctx, benchsuite.Spec{Group: "loss", Name: "forward_backward (" + spec.Type + ", DP)",
			N: iters(o, 8, 20), Unit: fmt.Sprintf("%d examples of %d row(s) × %d tokens", rows/l.Group(), l.Group(), seq),
			Note: "per-example gradients and clipping with this loss", MaxTime: 30 * time.Second},
			func(ctx context.Context) error { _, err := e.ForwardBackward(ctx, b, spec); return err })
		if err != nil {
			return err
		}
		if spec.Type == "token_ce" {
			ce = res
		} else if ce != nil {
			r.AddRatio(spec.Type+" / token_ce (DP forward_backward)", res.P50, ce.P50, "p50 / p50", "")
		}
		if _, err := e.OptimStep(ctx); err != nil {
			return err
		}
	}
	return nil
}
