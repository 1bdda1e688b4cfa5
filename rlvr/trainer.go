package rlvr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/client"
)

// Algorithms.
const (
	// REINFORCE: one update per batch with the importance_sampling loss
	// (on-policy, so the ratio is 1 and the gradient is −A·∇log p), a
	// moving-average or group-mean baseline, optional normalization and an
	// entropy bonus.
	REINFORCE = "reinforce"
	// PPO: the clipped ppo loss for several epochs over each batch, with
	// an optional KL penalty against a reference client.
	PPO = "ppo"
	// GRPO: group-normalized advantages (several completions per prompt)
	// with the ppo loss.
	GRPO = "grpo"
)

// Privacy units: what one DP example (one gradient, one clip) is.
const (
	// UnitPrompt (the default): the N completions of one prompt form one
	// example — the losses' group_size is N — so the DP guarantee is per
	// prompt, and the DP config counts prompts.
	UnitPrompt = "prompt"
	// UnitCompletion: each completion is its own example. Weaker: a
	// prompt's N completions are N examples, so the guarantee about a
	// prompt is only group privacy over N examples per step.
	UnitCompletion = "completion"
)

// Config configures a Trainer.
type Config struct {
	// Algorithm is reinforce (default), ppo or grpo.
	Algorithm string
	// Model is the base model's name, for tokenizing prompts; empty means
	// the policy client's base model.
	Model string
	// Prompts are the tasks. Each step draws them by Poisson sampling
	// with rate q = PromptsPerStep / len(Prompts): every prompt is in a
	// step independently with probability q, so a step has PromptsPerStep
	// prompts on average (possibly none: the step is then a noise-only
	// update).
	Prompts        []Prompt
	PromptsPerStep int
	// PrivacyUnit is UnitPrompt (default) or UnitCompletion.
	PrivacyUnit string
	// SamplerSeed, if set, makes the Poisson draw of prompts a function of
	// the seed and the step (PoissonSample). FOR TESTS ONLY: whoever knows
	// the seed knows which prompts each step used, which the amplification
	// by sampling behind the accountant's q assumes nobody does. Nil (the
	// default) draws from crypto/rand.
	SamplerSeed []byte
	Sampling    SamplingParams
	Advantage   AdvantageConfig
	// EntropyCoef weights the entropy bonus (the losses' entropy_coef).
	EntropyCoef float64
	// Epochs is PPO's and GRPO's number of updates per batch (default 4
	// for ppo, 1 for grpo; reinforce always 1). Each is one optim_step.
	Epochs int
	// ClipLow and ClipHigh bound the ratio (defaults 0.8 and 1.2).
	ClipLow, ClipHigh float64
	// KLCoef weights the KL penalty against Reference (ppo, grpo).
	KLCoef float64
	// Reference is a training client on the same base model that is never
	// trained: its forward gives the reference log-probabilities. Required
	// when KLCoef > 0.
	Reference *client.TrainingClient
	// KeepZeroAdvantage keeps rows whose advantage is 0 (they add no
	// gradient; by default they are not sent).
	KeepZeroAdvantage bool
	// Seed seeds the sampling of completions (never the prompt draw, see
	// SamplerSeed, nor DP noise).
	Seed uint64
}

// Trainer runs RLVR steps on a policy training client.
type Trainer struct {
	svc    *client.ServiceClient
	policy *client.TrainingClient
	reward RewardFunc
	cfg    Config
	pcg    *rand.PCG
	rng    *rand.Rand
	state  State
}

// NewTrainer checks cfg and returns a trainer of policy (a client of svc)
// scored by reward.
func NewTrainer(svc *client.ServiceClient, policy *client.TrainingClient, reward RewardFunc, cfg Config) (*Trainer, error) {
	if svc == nil || policy == nil {
		return nil, errors.New("rlvr: trainer: a service client and a policy client are required")
	}
	if reward == nil {
		return nil, errors.New("rlvr: trainer: a reward is required")
	}
	switch cfg.Algorithm {
	case "":
		cfg.Algorithm = REINFORCE
	case REINFORCE, PPO, GRPO:
	default:
		return nil, fmt.Errorf("rlvr: trainer: algorithm %q, want %s, %s or %s", cfg.Algorithm, REINFORCE, PPO, GRPO)
	}
	if len(cfg.Prompts) == 0 {
		return nil, errors.New("rlvr: trainer: no prompts")
	}
	if cfg.PromptsPerStep == 0 {
		cfg.PromptsPerStep = min(len(cfg.Prompts), 4)
	}
	if cfg.PromptsPerStep < 1 || cfg.PromptsPerStep > len(cfg.Prompts) {
		return nil, fmt.Errorf("rlvr: trainer: prompts_per_step must be in [1, %d], got %d", len(cfg.Prompts), cfg.PromptsPerStep)
	}
	if cfg.SamplerSeed != nil && len(cfg.SamplerSeed) == 0 {
		return nil, errors.New("rlvr: trainer: sampler_seed is set but empty (leave it nil to draw from crypto/rand)")
	}
	if cfg.Sampling.N == 0 {
		cfg.Sampling.N = 4
	}
	switch cfg.PrivacyUnit {
	case "":
		cfg.PrivacyUnit = UnitPrompt
	case UnitPrompt, UnitCompletion:
	default:
		return nil, fmt.Errorf("rlvr: trainer: privacy_unit %q, want %s or %s", cfg.PrivacyUnit, UnitPrompt, UnitCompletion)
	}
	if cfg.Sampling.MaxTokens == 0 {
		cfg.Sampling.MaxTokens = 32
	}
	if cfg.Algorithm == GRPO {
		cfg.Advantage.GroupNormalize = true
		if cfg.Sampling.N < 2 {
			return nil, errors.New("rlvr: trainer: grpo needs at least 2 samples per prompt")
		}
	}
	if _, err := cfg.Advantage.withDefaults(); err != nil {
		return nil, err
	}
	switch {
	case cfg.Algorithm == REINFORCE:
		if cfg.Epochs > 1 {
			return nil, errors.New("rlvr: trainer: reinforce makes one update per batch; use ppo for several epochs")
		}
		if cfg.KLCoef != 0 {
			return nil, errors.New("rlvr: trainer: kl_coef applies to ppo and grpo")
		}
		cfg.Epochs = 1
	case cfg.Epochs == 0 && cfg.Algorithm == PPO:
		cfg.Epochs = 4
	case cfg.Epochs == 0:
		cfg.Epochs = 1
	}
	if cfg.Epochs < 1 || cfg.Epochs > 64 {
		return nil, fmt.Errorf("rlvr: trainer: epochs must be in [1, 64], got %d", cfg.Epochs)
	}
	if cfg.ClipLow == 0 {
		cfg.ClipLow = 0.8
	}
	if cfg.ClipHigh == 0 {
		cfg.ClipHigh = 1.2
	}
	if !(cfg.ClipLow > 0 && cfg.ClipLow <= 1 && cfg.ClipHigh >= 1) {
		return nil, fmt.Errorf("rlvr: trainer: clip thresholds must satisfy 0 < low ≤ 1 ≤ high, got %v, %v", cfg.ClipLow, cfg.ClipHigh)
	}
	if !(cfg.KLCoef >= 0) || !(cfg.EntropyCoef >= 0) {
		return nil, errors.New("rlvr: trainer: kl_coef and entropy_coef must be ≥ 0")
	}
	if cfg.KLCoef > 0 && cfg.Reference == nil {
		return nil, errors.New("rlvr: trainer: kl_coef > 0 needs a reference client")
	}
	if cfg.Model == "" {
		cfg.Model = policy.Info.BaseModel
		if cfg.Model == "" {
			cfg.Model = policy.Info.Config.BaseModel
		}
	}
	if cfg.Model == "" {
		return nil, errors.New("rlvr: trainer: the base model is unknown; set Config.Model")
	}
	if err := checkSamplingRate(cfg, policy.Info.Config.DP); err != nil {
		return nil, err
	}
	pcg := rand.NewPCG(cfg.Seed, cfg.Seed^0x5851f42d4c957f2d)
	t := &Trainer{svc: svc, policy: policy, reward: reward, cfg: cfg, pcg: pcg, rng: rand.New(pcg)}
	t.state = State{Format: StateFormat, Algorithm: cfg.Algorithm}
	return t, nil
}

// checkSamplingRate refuses a policy whose DP config declares a sampling
// rate below the trainer's: the accountant would spend less ε than the
// steps release. The DP config counts privacy units (prompts, or
// completions with UnitCompletion).
func checkSamplingRate(cfg Config, dp *api.DPConfig) error {
	if dp == nil || dp.DatasetSize <= 0 {
		return nil
	}
	units, perStep := int64(len(cfg.Prompts)), cfg.PromptsPerStep
	what := "prompts"
	if cfg.PrivacyUnit == UnitCompletion {
		units, perStep, what = units*int64(cfg.Sampling.N), perStep*cfg.Sampling.N, "completions"
	}
	declared := float64(dp.ExpectedBatchSize) / float64(dp.DatasetSize)
	if q := float64(perStep) / float64(units); declared < q*(1-1e-9) {
		return fmt.Errorf("rlvr: trainer: the policy's dp_config declares q = expected_batch_size/dataset_size = %d/%d = %.4g, "+
			"but the trainer samples %s with q = %d/%d = %.4g: set dataset_size = %d and expected_batch_size = %d (privacy unit: %s)",
			dp.ExpectedBatchSize, dp.DatasetSize, declared, what, perStep, units, q, units, perStep, cfg.PrivacyUnit)
	}
	return nil
}

// SamplingRate is the Poisson sampling rate of prompts,
// PromptsPerStep / len(Prompts): the q the accountant must use.
func (t *Trainer) SamplingRate() float64 {
	return float64(t.cfg.PromptsPerStep) / float64(len(t.cfg.Prompts))
}

// GroupSize is the number of rows per DP example: the samples per prompt
// with UnitPrompt, 1 with UnitCompletion.
func (t *Trainer) GroupSize() int {
	if t.cfg.PrivacyUnit == UnitPrompt {
		return t.cfg.Sampling.N
	}
	return 1
}

// StepResult reports one step.
type StepResult struct {
	Step int
	// Prompts are the indices (into Config.Prompts) that the step's
	// Poisson draw picked, in increasing order; empty for a noise-only
	// step. Nil for Update called directly.
	Prompts      []int
	MeanReward   float64   // 0 when no prompt was drawn
	Rewards      []float64 // every trajectory's reward, prompt-major
	Trajectories []Trajectory
	// Rows is how many rows were trained: with UnitPrompt, every row of
	// each prompt group that has a non-zero advantage; with
	// UnitCompletion, the trajectories with a non-zero advantage (all,
	// with KeepZeroAdvantage).
	Rows int
	// Examples is how many DP examples the rows make (Rows / GroupSize).
	Examples int
	// Updates holds each epoch's forward_backward result (nil when no row
	// was sent) and optim_step result.
	Updates []Update
}

// Update is one epoch of a step.
type Update struct {
	ForwardBackward *api.ForwardBackwardResult
	OptimStep       *api.OptimStepResult
}

// State returns a copy of the algorithm state (RNG filled in).
func (t *Trainer) State() (State, error) {
	s := t.state
	s.RewardHistory = slices.Clone(s.RewardHistory)
	b, err := t.pcg.MarshalBinary()
	if err != nil {
		return State{}, fmt.Errorf("rlvr: rng state: %w", err)
	}
	s.RNG = b
	return s, nil
}

// Config returns the trainer's configuration with defaults filled in.
func (t *Trainer) Config() Config { return t.cfg }

func (t *Trainer) lossSpec() *api.LossSpec {
	if t.cfg.Algorithm == REINFORCE {
		kw := map[string]any{}
		if t.cfg.EntropyCoef != 0 {
			kw["entropy_coef"] = t.cfg.EntropyCoef
		}
		if g := t.GroupSize(); g > 1 {
			kw["group_size"] = g
		}
		return &api.LossSpec{Type: "importance_sampling", Kwargs: kw}
	}
	kw := map[string]any{"clip_low_threshold": t.cfg.ClipLow, "clip_high_threshold": t.cfg.ClipHigh}
	if t.cfg.KLCoef != 0 {
		kw["kl_coef"] = t.cfg.KLCoef
	}
	if t.cfg.EntropyCoef != 0 {
		kw["entropy_coef"] = t.cfg.EntropyCoef
	}
	if g := t.GroupSize(); g > 1 {
		kw["group_size"] = g
	}
	return &api.LossSpec{Type: "ppo", Kwargs: kw}
}

// Step runs one RLVR step: draw prompts by Poisson sampling, roll out,
// score, compute advantages, and update the policy (one or Epochs
// forward_backward + optim_step rounds). Every update is a DP-SGD step of
// the server; a step that drew no prompt is a noise-only update.
func (t *Trainer) Step(ctx context.Context) (*StepResult, error) {
	idx, err := PoissonSample(t.SamplingRate(), len(t.cfg.Prompts), t.cfg.SamplerSeed, t.state.Step)
	if err != nil {
		return nil, err
	}
	var groups [][]Trajectory
	if len(idx) > 0 {
		prompts := make([]Prompt, len(idx))
		seeds := make([]uint64, len(idx))
		for i, j := range idx {
			prompts[i] = t.cfg.Prompts[j]
			seeds[i] = t.rng.Uint64()
		}
		if groups, err = Rollout(ctx, t.policy, t.svc, t.cfg.Model, prompts, seeds, t.cfg.Sampling, t.reward); err != nil {
			return nil, err
		}
		for _, g := range groups {
			for i := range g {
				g[i].Prompt = idx[g[i].Prompt]
			}
		}
	}
	res, err := t.Update(ctx, groups)
	if err != nil {
		return nil, err
	}
	res.Prompts = idx
	if res.Prompts == nil {
		res.Prompts = []int{}
	}
	return res, nil
}

// Update is the learning half of Step: from scored rollouts (one group per
// prompt, e.g. from Rollout), compute the advantages and update the policy,
// then advance the algorithm state. Callers with their own rollouts use it
// directly. On error the algorithm state is not advanced, but the epochs
// that completed before the error have updated the policy (their steps are
// accounted by the server).
//
// With UnitPrompt every group must hold exactly Sampling.N trajectories
// (one prompt's completions: one DP example); a group is sent whole when
// any of its advantages is non-zero (or with KeepZeroAdvantage), and not
// at all otherwise. No groups at all is a noise-only step: under DP it
// still takes its optim_steps, which keeps the empty draws of Poisson
// sampling indistinguishable from the others; the baseline and the reward
// history do not change.
func (t *Trainer) Update(ctx context.Context, groups [][]Trajectory) (*StepResult, error) {
	G := t.GroupSize()
	for i, g := range groups {
		if G > 1 && len(g) != G {
			return nil, fmt.Errorf("rlvr: update: group %d has %d trajectories; with privacy unit %q a group is one prompt's %d samples",
				i, len(g), t.cfg.PrivacyUnit, G)
		}
	}
	empty := true
	for _, g := range groups {
		empty = empty && len(g) == 0
	}
	baseline := t.state.Baseline
	if !empty {
		if err := Advantages(groups, t.cfg.Advantage, &baseline); err != nil {
			return nil, err
		}
	}
	res := &StepResult{Step: t.state.Step + 1}
	var rows []Trajectory
	for _, g := range groups {
		send := t.cfg.KeepZeroAdvantage
		for _, tr := range g {
			res.Trajectories = append(res.Trajectories, tr)
			res.Rewards = append(res.Rewards, tr.Reward)
			send = send || tr.Advantage != 0
			if G == 1 && (tr.Advantage != 0 || t.cfg.KeepZeroAdvantage) {
				rows = append(rows, tr)
			}
		}
		if G > 1 && send {
			rows = append(rows, g...)
		}
	}
	if !empty {
		res.MeanReward, _ = meanStd(res.Rewards)
	}
	res.Rows = len(rows)
	res.Examples = len(rows) / G
	var batch api.Batch
	if len(rows) > 0 {
		var err error
		if batch, err = BuildBatch(rows); err != nil {
			return nil, err
		}
		if t.cfg.KLCoef > 0 {
			if err := t.referenceLogProbs(ctx, &batch); err != nil {
				return nil, err
			}
		}
	}
	spec := t.lossSpec()
	for range t.cfg.Epochs {
		var u Update
		if len(rows) > 0 {
			f, err := t.policy.ForwardBackward(ctx, batch, spec)
			if err != nil {
				return nil, fmt.Errorf("rlvr: step %d: forward_backward: %w", res.Step, err)
			}
			if u.ForwardBackward, err = f.Result(ctx); err != nil {
				return nil, fmt.Errorf("rlvr: step %d: forward_backward: %w", res.Step, err)
			}
		}
		// Under DP a step with no rows is a noise-only release; it is
		// still taken so that every step is one accounted update.
		f, err := t.policy.OptimStep(ctx)
		if err != nil {
			return nil, fmt.Errorf("rlvr: step %d: optim_step: %w", res.Step, err)
		}
		if u.OptimStep, err = f.Result(ctx); err != nil {
			return nil, fmt.Errorf("rlvr: step %d: optim_step: %w", res.Step, err)
		}
		res.Updates = append(res.Updates, u)
	}
	t.state.Baseline = baseline
	t.state.Step++
	if empty {
		return res, nil
	}
	t.state.RewardHistory = append(t.state.RewardHistory, res.MeanReward)
	if n := len(t.state.RewardHistory); n > maxHistory {
		t.state.RewardHistory = slices.Clone(t.state.RewardHistory[n-maxHistory:])
	}
	return res, nil
}

// referenceLogProbs fills batch.ReferenceLogprobs from the reference
// client's forward pass, aligned like sampling_logprobs.
func (t *Trainer) referenceLogProbs(ctx context.Context, batch *api.Batch) error {
	f, err := t.cfg.Reference.Forward(ctx, api.Batch{InputIDs: batch.InputIDs, Labels: batch.Labels}, nil)
	if err != nil {
		return fmt.Errorf("rlvr: reference forward: %w", err)
	}
	fr, err := f.Result(ctx)
	if err != nil {
		return fmt.Errorf("rlvr: reference forward: %w", err)
	}
	ref, err := alignLogProbs(fr.LogProbs, batch.InputIDs)
	if err != nil {
		return fmt.Errorf("rlvr: reference forward: %w", err)
	}
	batch.ReferenceLogprobs = ref
	return nil
}

// Save writes an encrypted checkpoint of the policy with the algorithm
// state in its metadata, so that Load resumes the run exactly.
func (t *Trainer) Save(ctx context.Context, name string) (*api.SaveStateResult, error) {
	return t.SaveWith(ctx, api.SaveStateRequest{Name: name})
}

// SaveWith is Save with the request's other options: IncludeOptimizer,
// and Metadata, a JSON object of the caller's own keys kept beside the
// algorithm state (the key MetadataKey is the trainer's).
func (t *Trainer) SaveWith(ctx context.Context, req api.SaveStateRequest) (*api.SaveStateResult, error) {
	s, err := t.State()
	if err != nil {
		return nil, err
	}
	meta := map[string]any{}
	if len(req.Metadata) > 0 {
		if err := json.Unmarshal(req.Metadata, &meta); err != nil || meta == nil {
			return nil, errors.New("rlvr: save: metadata must be a JSON object")
		}
		if _, ok := meta[MetadataKey]; ok {
			return nil, fmt.Errorf("rlvr: save: metadata key %q is the trainer's", MetadataKey)
		}
	}
	meta[MetadataKey] = s
	if req.Metadata, err = json.Marshal(meta); err != nil {
		return nil, fmt.Errorf("rlvr: save: %w", err)
	}
	f, err := t.policy.SaveStateWith(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("rlvr: save: %w", err)
	}
	r, err := f.Result(ctx)
	if err != nil {
		return nil, fmt.Errorf("rlvr: save: %w", err)
	}
	return r, nil
}

// Load restores a checkpoint written by Save into the policy client and
// the algorithm state into the trainer. A checkpoint of another algorithm
// is refused before anything is loaded only if its metadata says so; the
// policy is loaded first, then the state.
func (t *Trainer) Load(ctx context.Context, artifactID string) error {
	f, err := t.policy.LoadState(ctx, artifactID)
	if err != nil {
		return fmt.Errorf("rlvr: load: %w", err)
	}
	r, err := f.Result(ctx)
	if err != nil {
		return fmt.Errorf("rlvr: load: %w", err)
	}
	return t.Restore(r.Metadata)
}

// Restore sets the algorithm state from checkpoint metadata (as returned
// by load_state).
func (t *Trainer) Restore(meta []byte) error {
	s, err := parseState(meta)
	if err != nil {
		return err
	}
	if s.Algorithm != t.cfg.Algorithm {
		return fmt.Errorf("rlvr: the checkpoint's state is of algorithm %q, this trainer runs %q", s.Algorithm, t.cfg.Algorithm)
	}
	pcg := &rand.PCG{}
	if err := pcg.UnmarshalBinary(s.RNG); err != nil {
		return fmt.Errorf("rlvr: state: rng: %w", err)
	}
	t.pcg, t.rng = pcg, rand.New(pcg)
	s.RNG = nil
	t.state = s
	return nil
}
