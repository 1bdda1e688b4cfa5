package service

import (
	"math"
	"slices"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/engine"
	"github.com/tensafe/tensafe/loss"
	"github.com/tensafe/tensafe/model"
	"github.com/tensafe/tensafe/privacy"
)

// SamplingClientDeclared is DPMetrics.SamplingSource for a sampling rate
// computed from the client's declared dataset_size and expected_batch_size;
// SamplingServerPoisson for a client whose batches train_step draws from a
// registered dataset (privacy.SamplingServerPoisson).
const (
	SamplingClientDeclared = "client-declared"
	SamplingServerPoisson  = "server-poisson"
)

// Bounds on the configuration.
const (
	MaxDatasetSize   = 1 << 40
	MaxTargetEpsilon = 1000
	MaxSigma         = 1e6
)

// plan is a validated training configuration, ready for the engine and the
// accountant.
type plan struct {
	cfg    api.TrainingConfig // with defaults filled in
	engine engine.Config
	budget privacy.BudgetConfig
	q      float64
	sigma  float64
	loss   loss.Spec
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// validateConfig checks every field of c, naming the first bad one, and
// fills in defaults. It does not look at the base model's name.
func validateConfig(c api.TrainingConfig) (*plan, error) {
	l := c.LoRA
	switch {
	case l.Rank < 1 || l.Rank > 1024:
		return nil, fieldErr("lora_config.rank", "must be in [1, 1024], got %d", l.Rank)
	case !(l.Alpha > 0) || !finite(l.Alpha):
		return nil, fieldErr("lora_config.alpha", "must be positive and finite, got %v", l.Alpha)
	case !(l.Dropout >= 0 && l.Dropout < 1):
		return nil, fieldErr("lora_config.dropout", "must be in [0, 1), got %v", l.Dropout)
	}
	for i, m := range l.TargetModules {
		if !slices.Contains(model.AllModules, m) {
			return nil, fieldErr("lora_config.target_modules", "entry %d: unknown module %q (known: %v)", i, m, model.AllModules)
		}
		if slices.Index(l.TargetModules, m) != i {
			return nil, fieldErr("lora_config.target_modules", "entry %d: %q is listed twice", i, m)
		}
	}

	d := c.DP
	if d == nil {
		return nil, fieldErr("dp_config", "is required: every training client is differentially private")
	}
	switch {
	case !(d.NoiseMultiplier > 0) || d.NoiseMultiplier > MaxSigma:
		return nil, fieldErr("dp_config.noise_multiplier", "must be in (0, %g], got %v", float64(MaxSigma), d.NoiseMultiplier)
	case !(d.MaxGradNorm > 0) || !finite(d.MaxGradNorm):
		return nil, fieldErr("dp_config.max_grad_norm", "must be positive and finite, got %v", d.MaxGradNorm)
	case !(d.TargetEpsilon > 0) || d.TargetEpsilon > MaxTargetEpsilon:
		return nil, fieldErr("dp_config.target_epsilon", "must be in (0, %d], got %v", MaxTargetEpsilon, d.TargetEpsilon)
	case !(d.TargetDelta > 0 && d.TargetDelta < 1):
		return nil, fieldErr("dp_config.target_delta", "must be in (0, 1), got %v", d.TargetDelta)
	case d.Sampling != "" && d.Sampling != api.SamplingClient && d.Sampling != api.SamplingServer:
		return nil, fieldErr("dp_config.sampling", "must be %q or %q, got %q", api.SamplingClient, api.SamplingServer, d.Sampling)
	case d.Sampling == api.SamplingServer && d.DatasetID == "":
		return nil, fieldErr("dp_config.dataset_id", "is required with sampling %q (the dataset train_step draws from)", api.SamplingServer)
	case d.Sampling != api.SamplingServer && d.DatasetID != "":
		return nil, fieldErr("dp_config.dataset_id", "is only for sampling %q", api.SamplingServer)
	// A server-sampled request declares no dataset_size: resolveDataset
	// (trainstep.go) sets it to the dataset's rows, and the stored
	// configuration has it.
	case d.Sampling == api.SamplingServer && d.DatasetSize == 0:
	case d.DatasetSize < 1 || d.DatasetSize > MaxDatasetSize:
		return nil, fieldErr("dp_config.dataset_size", "must be in [1, 2^40], got %d", d.DatasetSize)
	}
	switch {
	case d.ExpectedBatchSize < 1 || d.ExpectedBatchSize > engine.MaxBatchSize:
		return nil, fieldErr("dp_config.expected_batch_size", "must be in [1, %d], got %d", engine.MaxBatchSize, d.ExpectedBatchSize)
	case d.DatasetSize > 0 && int64(d.ExpectedBatchSize) > d.DatasetSize:
		return nil, fieldErr("dp_config.expected_batch_size", "%d exceeds dataset_size %d", d.ExpectedBatchSize, d.DatasetSize)
	}
	acc, err := privacy.ParseAccountant(d.Accountant)
	if err != nil {
		return nil, fieldErr("dp_config.accountant", "must be %q or %q", privacy.AccountantRDP, privacy.AccountantPRV)
	}

	o := engine.DefaultOptimizer()
	oc := c.Optimizer
	for _, f := range []struct {
		name string
		in   *float64
		out  *float64
		ok   func(float64) bool
		rule string
	}{
		{"optimizer.learning_rate", oc.LearningRate, &o.LR, func(x float64) bool { return x > 0 && x <= 10 }, "must be in (0, 10]"},
		{"optimizer.beta1", oc.Beta1, &o.Beta1, func(x float64) bool { return x >= 0 && x < 1 }, "must be in [0, 1)"},
		{"optimizer.beta2", oc.Beta2, &o.Beta2, func(x float64) bool { return x >= 0 && x < 1 }, "must be in [0, 1)"},
		{"optimizer.eps", oc.Eps, &o.Eps, func(x float64) bool { return x > 0 && x < 1 }, "must be in (0, 1)"},
		{"optimizer.weight_decay", oc.WeightDecay, &o.WeightDecay, func(x float64) bool { return x >= 0 && x <= 10 }, "must be in [0, 10]"},
	} {
		if f.in == nil {
			continue
		}
		if !f.ok(*f.in) {
			return nil, fieldErr(f.name, "%s, got %v", f.rule, *f.in)
		}
		*f.out = *f.in
	}
	switch {
	case oc.WarmupSteps < 0 || oc.WarmupSteps > 1<<30:
		return nil, fieldErr("optimizer.warmup_steps", "must be in [0, 2^30], got %d", oc.WarmupSteps)
	case oc.Schedule != "" && oc.Schedule != "constant" && oc.Schedule != "cosine":
		return nil, fieldErr("optimizer.schedule", "must be \"constant\" or \"cosine\", got %q", oc.Schedule)
	case oc.TotalSteps < 0 || oc.TotalSteps > 1<<30:
		return nil, fieldErr("optimizer.total_steps", "must be in [0, 2^30], got %d", oc.TotalSteps)
	case oc.Schedule == "cosine" && oc.TotalSteps == 0:
		return nil, fieldErr("optimizer.total_steps", "must be positive for the cosine schedule")
	}
	o.WarmupSteps, o.Schedule, o.TotalSteps = oc.WarmupSteps, oc.Schedule, oc.TotalSteps

	ls := loss.Spec{Type: "token_ce"}
	if c.Loss != nil {
		if ls, err = checkLoss("loss", c.Loss); err != nil {
			return nil, err
		}
	}

	p := &plan{
		engine: engine.Config{
			LoRA: model.LoRAConfig{Rank: l.Rank, Alpha: l.Alpha, Dropout: l.Dropout,
				TargetModules: slices.Clone(l.TargetModules), RSLoRA: l.UseRSLoRA},
			DP: engine.DPConfig{Enabled: true, NoiseMultiplier: d.NoiseMultiplier,
				MaxGradNorm: d.MaxGradNorm, ExpectedBatch: d.ExpectedBatchSize},
			Optimizer: o,
			Seed:      c.Seed,
		},
		budget: privacy.BudgetConfig{TargetEpsilon: d.TargetEpsilon, Delta: d.TargetDelta, Accountant: acc},
		q:      math.NaN(), // until resolveDataset knows the rows: no step is allowed
		sigma:  d.NoiseMultiplier,
		loss:   ls,
	}
	if d.DatasetSize > 0 {
		p.q = float64(d.ExpectedBatchSize) / float64(d.DatasetSize)
	}
	if err := p.engine.Validate(); err != nil {
		return nil, fieldErr("config", "%v", err)
	}
	// Store the configuration with its defaults, so that a client's
	// config says exactly what it trains with.
	p.cfg = c
	dp := *d
	dp.Accountant = string(acc)
	p.cfg.DP = &dp
	p.cfg.Optimizer = api.OptimizerConfig{LearningRate: &o.LR, Beta1: &o.Beta1, Beta2: &o.Beta2,
		Eps: &o.Eps, WeightDecay: &o.WeightDecay, WarmupSteps: o.WarmupSteps, Schedule: o.Schedule, TotalSteps: o.TotalSteps}
	p.cfg.Loss = &api.LossSpec{Type: ls.Type, Kwargs: ls.Kwargs}
	p.cfg.LoRA.TargetModules = slices.Clone(l.TargetModules)
	return p, nil
}

// checkLoss validates a loss spec by resolving it.
func checkLoss(field string, s *api.LossSpec) (loss.Spec, error) {
	ls := loss.Spec{Type: s.Type, Kwargs: s.Kwargs}
	if ls.Type == "" {
		return ls, fieldErr(field+".type", "is required")
	}
	if _, err := loss.Resolve(ls); err != nil {
		return ls, fieldErr(field, "%v", err)
	}
	return ls, nil
}

// serverSampled reports whether the client's batches are drawn by the
// server (train_step) from a registered dataset.
func (p *plan) serverSampled() bool {
	return p.cfg.DP != nil && p.cfg.DP.Sampling == api.SamplingServer
}

// samplingSource is DPMetrics.SamplingSource of the plan.
func (p *plan) samplingSource() string {
	if p.serverSampled() {
		return SamplingServerPoisson
	}
	return SamplingClientDeclared
}
