package rlvr_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/rlvr"
)

// BenchmarkRewards measures each built-in reward on a typical completion.
func BenchmarkRewards(b *testing.B) {
	completion := "Let me think. 17 apples, then 25 more: 17 + 25 = 42. So the answer is 42.\n" + strings.Repeat("ok ", 20)
	doc := `{"name": "Ada Lovelace", "age": 36, "tags": ["a", "b"]}`
	for _, c := range []struct {
		name string
		spec rlvr.RewardSpec
		s    rlvr.Sample
	}{
		{"keyword_contains", rlvr.RewardSpec{Type: "keyword_contains", Kwargs: map[string]any{"keywords": []any{"answer", "apples", "pears"}}}, rlvr.Sample{Completion: completion}},
		{"length_penalty", rlvr.RewardSpec{Type: "length_penalty", Kwargs: map[string]any{"target": 64}}, rlvr.Sample{Completion: completion}},
		{"format_compliance_regex", rlvr.RewardSpec{Type: "format_compliance", Kwargs: map[string]any{"regex": `answer is \d+`, "search": true}}, rlvr.Sample{Completion: completion}},
		{"format_compliance_schema", rlvr.RewardSpec{Type: "format_compliance", Kwargs: map[string]any{"json_schema": map[string]any{
			"type": "object", "required": []any{"name", "age"}, "properties": map[string]any{
				"name": map[string]any{"type": "string"}, "age": map[string]any{"type": "integer", "minimum": 0.0},
				"tags": map[string]any{"type": "array", "items": map[string]any{"type": "string"}}}}}}, rlvr.Sample{Completion: doc}},
		{"exact_match", rlvr.RewardSpec{Type: "exact_match", Kwargs: map[string]any{"normalize": "lower"}}, rlvr.Sample{Completion: completion, Answer: "42"}},
		{"numeric_match", rlvr.RewardSpec{Type: "numeric_match"}, rlvr.Sample{Completion: completion, Answer: "#### 42"}},
	} {
		fn, err := rlvr.Resolve(c.spec)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := fn(c.s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkUpdateOverhead measures one REINFORCE update and one PPO epoch
// (with the KL reference forward) on 16 scored rollouts, against the plain
// forward_backward + optim_step (token_ce) on the same rows that they wrap,
// all through the SDK and a real in-process server. x_fb is the ratio.
func BenchmarkUpdateOverhead(b *testing.B) {
	c := newServer(b)
	ctx := context.Background()
	tc, err := c.CreateTrainingClient(ctx, policyConfig(1e-2, 1))
	if err != nil {
		b.Fatal(err)
	}
	ref, err := c.CreateTrainingClient(ctx, policyConfig(1e-2, 1))
	if err != nil {
		b.Fatal(err)
	}
	// One fixed set of scored rollouts (4 prompts × 4 samples, 8 tokens).
	groups, err := rlvr.Rollout(ctx, tc, c, "tensafe-tiny", rlPrompts[:4], []uint64{1, 2, 3, 4},
		rlvr.SamplingParams{N: 4, MaxTokens: 8, TopK: 8}, lowercase)
	if err != nil {
		b.Fatal(err)
	}
	var rows []rlvr.Trajectory
	for _, g := range groups {
		rows = append(rows, g...)
	}
	plain, err := rlvr.BuildBatch(rows)
	if err != nil {
		b.Fatal(err)
	}
	plain = api.Batch{InputIDs: plain.InputIDs, Labels: plain.Labels}
	fbStep := func() {
		f, err := tc.ForwardBackward(ctx, plain, &api.LossSpec{Type: "token_ce"})
		if err == nil {
			_, err = f.Result(ctx)
		}
		if err != nil {
			b.Fatal(err)
		}
		o, err := tc.OptimStep(ctx)
		if err == nil {
			_, err = o.Result(ctx)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	for _, algo := range []string{rlvr.REINFORCE, rlvr.PPO} {
		cfg := rlConfig(algo)
		cfg.Sampling.N = 4 // the rollouts' groups: one DP example each
		cfg.Epochs = 1
		cfg.Advantage.Baseline = rlvr.BaselineNone // every row trains: the same rows as the plain step
		cfg.KeepZeroAdvantage = true
		if algo == rlvr.PPO {
			cfg.KLCoef, cfg.Reference = 0.01, ref
		}
		tr, err := rlvr.NewTrainer(c, tc, lowercase, cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("%s_per_update", algo), func(b *testing.B) {
			var base, upd time.Duration
			for b.Loop() {
				t0 := time.Now()
				fbStep()
				t1 := time.Now()
				gs := make([][]rlvr.Trajectory, len(groups))
				for i, g := range groups {
					gs[i] = append([]rlvr.Trajectory(nil), g...)
				}
				if _, err := tr.Update(ctx, gs); err != nil {
					b.Fatal(err)
				}
				base, upd = base+t1.Sub(t0), upd+time.Since(t1)
			}
			b.ReportMetric(float64(base.Microseconds())/1000/float64(b.N), "fb_ms/op")
			b.ReportMetric(float64(upd.Microseconds())/1000/float64(b.N), "update_ms/op")
			b.ReportMetric(float64(upd)/float64(base), "x_fb")
		})
	}
}
