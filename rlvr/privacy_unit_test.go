package rlvr_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/client"
	"github.com/tensafe/tensafe/rlvr"
)

// TestPoissonStepsAndNoiseOnly runs a trainer whose Poisson rate is low
// (q = 1/32) through a real server: every step's prompts are the seeded
// draw of that step; a prompt's completions reach the server as one DP
// example (one per-example norm per prompt); and a step that drew no
// prompt is a noise-only update — no forward_backward, one noisy
// optim_step, counted by the accountant — that leaves the reward history
// alone.
func TestPoissonStepsAndNoiseOnly(t *testing.T) {
	c := newServer(t)
	ctx := context.Background()
	cfg := policyConfig(1e-2, 1)
	cfg.DP.DatasetSize, cfg.DP.ExpectedBatchSize = int64(len(rlPrompts)), 1
	tc, err := c.CreateTrainingClient(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	rc := rlConfig(rlvr.REINFORCE)
	rc.PromptsPerStep = 1
	rc.KeepZeroAdvantage = true
	rc.Advantage.Baseline = rlvr.BaselineNone
	rc.Advantage.Normalize = false
	tr, err := rlvr.NewTrainer(c, tc, lowercase, rc)
	if err != nil {
		t.Fatal(err)
	}
	// Find the first step whose draw is empty ((31/32)^32 ≈ 36% each).
	last := -1
	for s := range 20 {
		if d, _ := rlvr.PoissonSample(tr.SamplingRate(), len(rlPrompts), rc.SamplerSeed, s); len(d) == 0 {
			last = s
			break
		}
	}
	if last < 0 {
		t.Fatal("no empty draw in 20 steps")
	}
	sawPrompts := false
	for s := 0; s <= last; s++ {
		r, err := tr.Step(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := rlvr.PoissonSample(tr.SamplingRate(), len(rlPrompts), rc.SamplerSeed, s)
		if !slices.Equal(r.Prompts, want) {
			t.Fatalf("step %d drew %v, the seeded draw is %v", s, r.Prompts, want)
		}
		if len(r.Updates) != 1 || r.Updates[0].OptimStep == nil || !(r.Updates[0].OptimStep.NoiseStd > 0) {
			t.Fatalf("step %d: updates %+v, want one noisy optim_step", s, r.Updates)
		}
		fb := r.Updates[0].ForwardBackward
		if len(want) == 0 {
			if fb != nil || r.Rows != 0 || r.Examples != 0 || len(r.Trajectories) != 0 || r.Updates[0].OptimStep.Examples != 0 {
				t.Fatalf("empty step %d: %+v, forward_backward %+v", s, r, fb)
			}
			continue
		}
		sawPrompts = true
		if r.Rows != len(want)*testSamples || r.Examples != len(want) || fb == nil ||
			len(fb.PerExampleNorms) != len(want) || fb.PendingExamples != len(want) {
			t.Fatalf("step %d: %d prompts gave rows %d, examples %d, forward_backward %+v: want one example per prompt",
				s, len(want), r.Rows, r.Examples, fb)
		}
		for i, x := range r.Trajectories {
			if x.Prompt != want[i/testSamples] {
				t.Fatalf("step %d: trajectory %d is of prompt %d, want %d (rows prompt-major)", s, i, x.Prompt, want[i/testSamples])
			}
		}
	}
	st, err := tr.State()
	if err != nil {
		t.Fatal(err)
	}
	if st.Step != last+1 || len(st.RewardHistory) != last {
		t.Errorf("state: step %d, %d rewards; want %d steps and %d rewards (the empty step adds none)", st.Step, len(st.RewardHistory), last+1, last)
	}
	if m, err := tc.DPMetrics(ctx); err != nil || m.Steps != int64(last+1) || m.SamplingRate != tr.SamplingRate() {
		t.Errorf("dp_metrics %+v, %v: want %d steps at q = %v", m, err, last+1, tr.SamplingRate())
	}
	if last > 0 && !sawPrompts {
		t.Error("no step drew a prompt")
	}
}

// TestGroupSizeRefusedRows: a forward_backward whose rows are not a
// multiple of the loss's group_size is a 400 naming batch.input_ids, and
// nothing is accumulated.
func TestGroupSizeRefusedRows(t *testing.T) {
	c := newServer(t)
	ctx := context.Background()
	tc, err := c.CreateTrainingClient(ctx, policyConfig(1e-2, 1))
	if err != nil {
		t.Fatal(err)
	}
	b := probe() // 3 rows
	b.Advantages = make([][]float64, len(b.InputIDs))
	b.SamplingLogprobs = make([][]float64, len(b.InputIDs))
	for i, ids := range b.InputIDs {
		b.Advantages[i] = make([]float64, len(ids))
		b.SamplingLogprobs[i] = make([]float64, len(ids))
	}
	for _, typ := range []string{"importance_sampling", "ppo"} {
		f, err := tc.ForwardBackward(ctx, b, &api.LossSpec{Type: typ, Kwargs: map[string]any{"group_size": 2}})
		if err == nil {
			_, err = f.Result(ctx)
		}
		var ae *client.APIError
		if !errors.As(err, &ae) || ae.Status != 400 || ae.Field != "batch.input_ids" {
			t.Errorf("%s, 3 rows, group_size 2: %v, want a 400 naming batch.input_ids", typ, err)
		}
	}
	// Whole groups are accepted: 2 rows, group_size 2, one example.
	two := api.Batch{InputIDs: b.InputIDs[:2], Labels: b.Labels[:2], Advantages: b.Advantages[:2], SamplingLogprobs: b.SamplingLogprobs[:2]}
	f, err := tc.ForwardBackward(ctx, two, &api.LossSpec{Type: "importance_sampling", Kwargs: map[string]any{"group_size": 2}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := f.Result(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.PendingExamples != 1 || len(r.PerExampleLoss) != 1 {
		t.Errorf("2 rows as one group: %+v", r)
	}
}
