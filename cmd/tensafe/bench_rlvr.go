package main

import (
	"context"
	"fmt"
	"time"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/benchsuite"
	"github.com/tensafe/tensafe/client"
	"github.com/tensafe/tensafe/model"
	"github.com/tensafe/tensafe/rlvr"
)

// benchRLVRGroup times reinforcement learning with verifiable rewards as a
// user runs it: the rlvr package over the Go SDK against tensafe serve in
// process, every update DP-SGD. Rewards, advantages and batch building are
// local Go; rollouts and updates go through the API.
func benchRLVRGroup(ctx context.Context, r *benchsuite.Runner, o suiteOptions) error {
	// Local parts first: no server needed.
	specs := []rlvr.RewardSpec{
		{Type: "keyword_contains", Kwargs: map[string]any{"keywords": []any{"rest", "water"}, "mode": "fraction"}},
		{Type: "format_compliance", Kwargs: map[string]any{"regex": `[a-z ,.]+`}},
		{Type: "numeric_match"},
	}
	reward, err := rlvr.ResolveAll(specs)
	if err != nil {
		return err
	}
	sample := rlvr.Sample{Prompt: "what is 6 times 7? ", Completion: "the answer is 42, drink water and rest.", Answer: "42"}
	if _, err := r.Measure(ctx, benchsuite.Spec{Group: "rlvr", Name: "reward_computation (3 rewards)", Original: "reward_computation",
		N: iters(o, 2000, 10000), Unit: "completion", Note: "keyword_contains + format_compliance (regex) + numeric_match"},
		func(context.Context) error { _, err := reward(sample); return err }); err != nil {
		return err
	}
	groups := make([][]rlvr.Trajectory, 4)
	for g := range groups {
		for k := range 4 {
			toks := make([]int, 16)
			lps := make([]float64, 16)
			for i := range toks {
				toks[i], lps[i] = 97+(i+k)%26, -2.5
			}
			groups[g] = append(groups[g], rlvr.Trajectory{Prompt: g, Group: g, PromptTokens: []int{256, 104, 105},
				Tokens: toks, LogProbs: lps, Reward: float64((g + k) % 3)})
		}
	}
	if _, err := r.Measure(ctx, benchsuite.Spec{Group: "rlvr", Name: "advantages (GRPO, 4 prompts × 4)", N: iters(o, 2000, 10000),
		Unit: "batch of 16 trajectories", Note: "group-normalized rewards"},
		func(context.Context) error {
			return rlvr.Advantages(groups, rlvr.AdvantageConfig{GroupNormalize: true}, nil)
		}); err != nil {
		return err
	}
	var flat []rlvr.Trajectory
	for _, g := range groups {
		flat = append(flat, g...)
	}
	if _, err := r.Measure(ctx, benchsuite.Spec{Group: "rlvr", Name: "build_batch (16 trajectories)", N: iters(o, 2000, 10000),
		Unit: "batch", Note: "prompt masked, advantages and sampling log-probs on completion tokens"},
		func(context.Context) error { _, err := rlvr.BuildBatch(flat); return err }); err != nil {
		return err
	}

	bt, err := startBenchTenant(ctx, "tensafe-bench-rlvr-", "bench-rlvr")
	if err != nil {
		return err
	}
	defer bt.close()
	svc := bt.svc
	newPolicy := func(seed uint64) (*client.TrainingClient, error) {
		return svc.CreateTrainingClient(ctx, api.TrainingConfig{
			BaseModel: model.TinyName,
			LoRA:      api.LoRAConfig{Rank: 8, Alpha: 16, TargetModules: []string{"q_proj", "k_proj", "v_proj", "o_proj"}},
			// The trainer samples its 2 prompts at q = 1 and the DP
			// config must declare that q (rlvr.NewTrainer refuses a smaller
			// one); the budget is a benchmark's, large enough for every
			// timed step.
			DP: &api.DPConfig{NoiseMultiplier: 1, MaxGradNorm: 1, TargetEpsilon: 1000, TargetDelta: 1e-5,
				DatasetSize: 2, ExpectedBatchSize: 2},
			Seed: seed,
		})
	}
	prompts := []rlvr.Prompt{
		{Text: "patient advice: "},
		{Text: "what is 6 times 7? "},
	}
	sp := rlvr.SamplingParams{N: 4, MaxTokens: 16}
	r.Param("rlvr", fmt.Sprintf("tensafe serve in process, DP policy on %s (LoRA r=8 q,k,v,o); %d prompts × %d samples of ≤ %d tokens per step",
		model.TinyName, len(prompts), sp.N, sp.MaxTokens))
	policy, err := newPolicy(1)
	if err != nil {
		return err
	}
	// The rollouts' reward: the two rewards that need no reference answer.
	rollReward, err := rlvr.ResolveAll(specs[:2])
	if err != nil {
		return err
	}
	var trajs [][]rlvr.Trajectory
	n := iters(o, 8, 20)
	if _, err := r.Measure(ctx, benchsuite.Spec{Group: "rlvr", Name: "rollout_sampling (2 prompts × 4)", Original: "rollout_sampling", N: n,
		Unit: "8 completions", Note: "tokenize + sample through the API, sampling log-probs kept, rewards scored", MaxTime: 60 * time.Second},
		func(ctx context.Context) error {
			var err error
			trajs, err = rlvr.Rollout(ctx, policy, svc, model.TinyName, prompts, []uint64{1, 2}, sp, rollReward)
			return err
		}); err != nil {
		return err
	}
	if err := rlvr.Advantages(trajs, rlvr.AdvantageConfig{Baseline: rlvr.BaselineGroupMean}, nil); err != nil {
		return err
	}
	var rows []rlvr.Trajectory
	for _, g := range trajs {
		for _, t := range g {
			if t.Advantage == 0 {
				t.Advantage = 0.5 // keep every row so the update's size is fixed
			}
			rows = append(rows, t)
		}
	}
	batch, err := rlvr.BuildBatch(rows)
	if err != nil {
		return err
	}
	update := func(ctx context.Context, lossType string, kwargs map[string]any, epochs int) error {
		for range epochs {
			f, err := policy.ForwardBackward(ctx, batch, &api.LossSpec{Type: lossType, Kwargs: kwargs})
			if err != nil {
				return err
			}
			if _, err := f.Result(ctx); err != nil {
				return err
			}
			o, err := policy.OptimStep(ctx)
			if err != nil {
				return err
			}
			if _, err := o.Result(ctx); err != nil {
				return err
			}
		}
		return nil
	}
	rowsUnit := fmt.Sprintf("batch of %d trajectories", len(rows))
	if _, err := r.Measure(ctx, benchsuite.Spec{Group: "rlvr", Name: "REINFORCE update (DP)", Original: "reinforce_update", N: n,
		Unit: rowsUnit, Note: "importance_sampling loss: forward_backward + optim_step through the API", MaxTime: 60 * time.Second},
		func(ctx context.Context) error { return update(ctx, "importance_sampling", nil, 1) }); err != nil {
		return err
	}
	if _, err := r.Measure(ctx, benchsuite.Spec{Group: "rlvr", Name: "PPO update (DP, 4 epochs)", Original: "ppo_update", N: iters(o, 4, 10),
		Unit: rowsUnit, Note: "clipped ppo loss, 4 × (forward_backward + optim_step) through the API", MaxTime: 90 * time.Second},
		func(ctx context.Context) error {
			return update(ctx, "ppo", map[string]any{"clip_low_threshold": 0.8, "clip_high_threshold": 1.2}, 4)
		}); err != nil {
		return err
	}
	for _, alg := range []string{rlvr.REINFORCE, rlvr.PPO} {
		p, err := newPolicy(2)
		if err != nil {
			return err
		}
		tr, err := rlvr.NewTrainer(svc, p, rollReward, rlvr.Config{Algorithm: alg, Prompts: prompts, PromptsPerStep: len(prompts),
			Sampling: sp, Advantage: rlvr.AdvantageConfig{Baseline: rlvr.BaselineMovingAverage}, KeepZeroAdvantage: true, Seed: 3})
		if err != nil {
			return err
		}
		if _, err := r.Measure(ctx, benchsuite.Spec{Group: "rlvr", Name: "trainer step (" + alg + ")", N: iters(o, 4, 10),
			Unit: fmt.Sprintf("%d prompts × %d samples", len(prompts), sp.N), Note: "rlvr.Trainer.Step: rollout, rewards, advantages, DP update(s)",
			MaxTime: 90 * time.Second},
			func(ctx context.Context) error { _, err := tr.Step(ctx); return err }); err != nil {
			return err
		}
	}
	return nil
}
