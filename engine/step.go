package engine

import (
	"context"
	"crypto/rand"
	"fmt"
	"math"
	mrand "math/rand/v2"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/tensafe/tensafe/loss"
)

// ForwardBackwardResult reports one ForwardBackward call. Per-example
// values are per example of the loss (a pair or group of rows for the
// grouped losses), the DP privacy unit.
type ForwardBackwardResult struct {
	Loss            float64            `json:"loss"` // mean of the per-example losses
	PerExampleLoss  []float64          `json:"per_example_loss"`
	Tokens          int                `json:"tokens"`                 // target tokens in the batch
	PerExampleNorms []float64          `json:"per_example_grad_norms"` // pre-clip L2 norms (DP only)
	FractionClipped float64            `json:"fraction_clipped"`       // examples whose norm exceeded C (DP only)
	PendingExamples int                `json:"pending_examples"`       // accumulated since the last step
	Metrics         map[string]float64 `json:"metrics,omitempty"`      // the loss's metrics over the batch
}

// trainArgs are the inputs of a training or forward graph: the batch, the
// rotary tables, the dropout state, the base and LoRA weights, then the
// loss's hyper-parameters (float32 scalars).
func (e *Engine) trainArgs(p *prepared, lora []*tensors.Tensor, params []float64) []any {
	cos, sin := e.model.RotaryTables(0, p.T)
	// Dropout randomness: reproducible from the client's seed and the
	// number of graph runs so far (never used for DP noise).
	e.runs++
	rng, err := RNGStateFromSeed(int64(e.cfg.Seed*1_000_003 + e.runs))
	if err != nil {
		panic(err) // only fails on a malformed state shape
	}
	var args []any
	for _, t := range p.tensors() {
		args = append(args, t)
	}
	args = append(args, cos, sin, rng)
	for _, w := range e.model.Weights() {
		args = append(args, w)
	}
	for _, w := range lora {
		args = append(args, w)
	}
	for _, v := range params {
		args = append(args, tensors.FromScalar(float32(v)))
	}
	return args
}

// graphKey names a loss's compiled graph: its Key when it has one (specs
// that differ only in run-time hyper-parameters share a graph), else the
// spec's canonical form.
func graphKey(l loss.Loss, spec loss.Spec) string {
	if l.Key != "" {
		return l.Key
	}
	return "spec/" + spec.Key()
}

// ForwardBackward computes the batch's per-example losses and gradients of
// the LoRA parameters and adds them to the accumulator: clipped to
// MaxGradNorm per example under DP, plain otherwise. On error nothing
// changes.
func (e *Engine) ForwardBackward(ctx context.Context, b Batch, spec loss.Spec) (*ForwardBackwardResult, error) {
	l, err := e.lossFor(spec)
	if err != nil {
		return nil, err
	}
	return e.forwardBackward(ctx, b, l, graphKey(l, spec), nil)
}

// ForwardBackwardCustom is ForwardBackward for a loss computed by the
// client: logprobGrads[i][t] is d loss_i / d logp_t for the token
// InputIDs[i][t] (aligned like Labels and like Forward's log-probabilities;
// the value at t = 0 and at positions without a target is ignored). The
// engine backpropagates Σ_t g_t·logp_t per example, whose gradient is the
// client's loss gradient, and clips and accumulates it like any loss, so
// the DP guarantee is the same. The result's per-example losses are those
// surrogate values, not the client's losses.
func (e *Engine) ForwardBackwardCustom(ctx context.Context, b Batch, logprobGrads [][]float64) (*ForwardBackwardResult, error) {
	if logprobGrads == nil {
		return nil, batchErr("logprob_grads", "is required")
	}
	l := loss.LogProbSurrogate()
	return e.forwardBackward(ctx, b, l, l.Key, logprobGrads)
}

func (e *Engine) forwardBackward(ctx context.Context, b Batch, l loss.Loss, key string, lpg [][]float64) (*ForwardBackwardResult, error) {
	if err := checkCtx(ctx); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	p, err := prepare(b, e.model.Config.VocabSize, e.model.Config.MaxPositions, true, l, lpg)
	if err != nil {
		return nil, err
	}
	mode := gradPlain
	if e.cfg.DP.Enabled {
		mode = gradClipped
	}
	exec, err := e.graphs.get(fmt.Sprintf("train/%d/%s", mode, key), func() (*Exec, error) {
		return NewExec(e.backend, buildTrain(e.model, e.lora, l, mode, e.cfg.DP.MaxGradNorm))
	})
	if err != nil {
		return nil, fmt.Errorf("engine: build graph: %w", err)
	}
	out, err := run(exec, e.trainArgs(p, e.loraTensors(), l.Params))
	if err != nil {
		return nil, err
	}
	res := &ForwardBackwardResult{PerExampleLoss: toF64(out[0]), Metrics: metricsOf(l, out[1:])}
	out = out[1+len(l.Metrics):]
	for _, n := range p.tokens {
		res.Tokens += n
	}
	for _, v := range res.PerExampleLoss {
		res.Loss += v
	}
	res.Loss /= float64(len(res.PerExampleLoss))
	grads := out
	if mode == gradClipped {
		res.PerExampleNorms = toF64(out[0])
		clipped := 0
		for _, n := range res.PerExampleNorms {
			if n > e.cfg.DP.MaxGradNorm {
				clipped++
			}
		}
		res.FractionClipped = float64(clipped) / float64(len(res.PerExampleNorms))
		grads = out[1:]
	}
	// Check before mutating anything, so a failure leaves the accumulator as it was.
	flat := make([][]float32, len(grads))
	for i, g := range grads {
		flat[i] = tensors.MustCopyFlatData[float32](g)
		if len(flat[i]) != len(e.accum[i]) {
			return nil, fmt.Errorf("engine: gradient %d has %d values, want %d", i, len(flat[i]), len(e.accum[i]))
		}
		for _, v := range flat[i] {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("engine: forward_backward produced a non-finite gradient; nothing was accumulated")
			}
		}
	}
	for i := range flat {
		acc := e.accum[i]
		for j, v := range flat[i] {
			acc[j] += v
		}
	}
	e.accumExamples += p.B / p.G
	res.PendingExamples = e.accumExamples
	return res, nil
}

// metricsOf reads the loss's metric outputs (scalars, in l.Metrics order).
func metricsOf(l loss.Loss, out []*tensors.Tensor) map[string]float64 {
	if len(l.Metrics) == 0 {
		return nil
	}
	m := make(map[string]float64, len(l.Metrics))
	for i, name := range l.Metrics {
		m[name] = toF64(out[i])[0]
	}
	return m
}

// PerExampleGradients returns each example's unclipped gradient of every
// LoRA tensor (name → [P][values], one entry per example of the loss) and
// the per-example losses and flat norms. It changes nothing; it exists to
// inspect and test the DP step.
func (e *Engine) PerExampleGradients(ctx context.Context, b Batch, spec loss.Spec) (grads map[string][][]float32, losses, norms []float64, err error) {
	l, err := e.lossFor(spec)
	if err != nil {
		return nil, nil, nil, err
	}
	return e.perExampleGradients(ctx, b, l, graphKey(l, spec), nil)
}

// PerExampleGradientsCustom is PerExampleGradients for a client-side loss
// given by its log-probability gradients (see ForwardBackwardCustom).
func (e *Engine) PerExampleGradientsCustom(ctx context.Context, b Batch, logprobGrads [][]float64) (grads map[string][][]float32, losses, norms []float64, err error) {
	if logprobGrads == nil {
		return nil, nil, nil, batchErr("logprob_grads", "is required")
	}
	l := loss.LogProbSurrogate()
	return e.perExampleGradients(ctx, b, l, l.Key, logprobGrads)
}

func (e *Engine) perExampleGradients(ctx context.Context, b Batch, l loss.Loss, key string, lpg [][]float64) (grads map[string][][]float32, losses, norms []float64, err error) {
	if err := checkCtx(ctx); err != nil {
		return nil, nil, nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	p, err := prepare(b, e.model.Config.VocabSize, e.model.Config.MaxPositions, true, l, lpg)
	if err != nil {
		return nil, nil, nil, err
	}
	exec, err := e.graphs.get("perexample/"+key, func() (*Exec, error) {
		return NewExec(e.backend, buildTrain(e.model, e.lora, l, gradPerExample, 0))
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("engine: build graph: %w", err)
	}
	out, err := run(exec, e.trainArgs(p, e.loraTensors(), l.Params))
	if err != nil {
		return nil, nil, nil, err
	}
	losses = toF64(out[0])
	out = out[1+len(l.Metrics):]
	P := p.B / p.G
	grads = map[string][][]float32{}
	for i, name := range e.lora.Names {
		flat := tensors.MustCopyFlatData[float32](out[1+i])
		per := len(flat) / P
		rows := make([][]float32, P)
		for k := range rows {
			rows[k] = flat[k*per : (k+1)*per]
		}
		grads[name] = rows
	}
	return grads, losses, toF64(out[0]), nil
}

// StepResult reports one optimizer step.
type StepResult struct {
	Step         int     `json:"step"`
	LearningRate float64 `json:"learning_rate"`
	Examples     int     `json:"examples"`  // examples accumulated into this step
	NoiseStd     float64 `json:"noise_std"` // σ·C per coordinate of the summed gradient (0 without DP)
	Divisor      float64 `json:"divisor"`   // what the (noisy) sum was divided by
}

// OptimStep turns the accumulated gradients into one AdamW update. Under DP
// it first adds Gaussian noise N(0, (σ·C)²) to every coordinate of the
// clipped sum and divides by the expected batch size; without DP it divides
// the sum by the number of examples. The accumulator is then reset.
//
// Under DP a step with nothing accumulated is valid: with Poisson sampling a
// batch can be empty, and skipping that step would reveal it (the step is
// still one release of the mechanism, made of noise alone).
func (e *Engine) OptimStep(ctx context.Context) (*StepResult, error) {
	if err := checkCtx(ctx); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.accumExamples == 0 && !e.cfg.DP.Enabled {
		return nil, ErrNoGradients
	}
	res := &StepResult{Step: e.step + 1, Examples: e.accumExamples}
	grads := e.accum
	if e.cfg.DP.Enabled {
		res.NoiseStd = e.cfg.DP.NoiseMultiplier * e.cfg.DP.MaxGradNorm
		res.Divisor = float64(e.cfg.DP.ExpectedBatch)
		if err := addGaussianNoise(grads, res.NoiseStd); err != nil {
			return nil, err
		}
	} else {
		res.Divisor = float64(e.accumExamples)
	}
	res.LearningRate = e.learningRate(e.step)
	e.adamW(grads, 1/res.Divisor, res.LearningRate)
	e.step++
	e.resetAccum()
	return res, nil
}

// learningRate applies warmup and the schedule at step (0-based).
func (e *Engine) learningRate(step int) float64 {
	o := e.cfg.Optimizer
	lr := o.LR
	if o.WarmupSteps > 0 && step < o.WarmupSteps {
		return lr * float64(step+1) / float64(o.WarmupSteps)
	}
	if o.Schedule == "cosine" {
		span := max(o.TotalSteps-o.WarmupSteps, 1)
		prog := math.Min(float64(step-o.WarmupSteps)/float64(span), 1)
		lr *= 0.5 * (1 + math.Cos(math.Pi*prog))
	}
	return lr
}

// adamW applies PyTorch's AdamW to the LoRA weights with gradient
// grads·scale.
func (e *Engine) adamW(grads [][]float32, scale, lr float64) {
	o := e.cfg.Optimizer
	t := float64(e.step + 1)
	bc1 := 1 - math.Pow(o.Beta1, t)
	bc2 := 1 - math.Pow(o.Beta2, t)
	for i, name := range e.lora.Names {
		p := e.lora.Values[name]
		m, v := e.adamM[i], e.adamV[i]
		for j := range p {
			g := float64(grads[i][j]) * scale
			pj := float64(p[j]) * (1 - lr*o.WeightDecay)
			mj := o.Beta1*float64(m[j]) + (1-o.Beta1)*g
			vj := o.Beta2*float64(v[j]) + (1-o.Beta2)*g*g
			pj -= lr * (mj / bc1) / (math.Sqrt(vj/bc2) + o.Eps)
			p[j], m[j], v[j] = float32(pj), float32(mj), float32(vj)
		}
	}
}

// newNoiseSource returns a ChaCha8 generator keyed with 32 fresh bytes from
// crypto/rand: a CSPRNG that no user seed influences.
func newNoiseSource() (*mrand.Rand, error) {
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		return nil, fmt.Errorf("engine: seed DP noise: %w", err)
	}
	return mrand.New(mrand.NewChaCha8(key)), nil
}

// addGaussianNoise adds N(0, std²) to every value, drawing from a freshly
// keyed CSPRNG.
func addGaussianNoise(vals [][]float32, std float64) error {
	if std == 0 {
		return nil
	}
	rng, err := newNoiseSource()
	if err != nil {
		return err
	}
	for _, v := range vals {
		for j := range v {
			v[j] += float32(rng.NormFloat64() * std)
		}
	}
	return nil
}

// ForwardResult reports one Forward call.
type ForwardResult struct {
	// LogProbs[i][t] is the log-probability of the token InputIDs[i][t]
	// (or Labels[i][t]) given the positions before it: aligned with
	// InputIDs like Labels, Advantages and a custom loss's gradients. The
	// value at t = 0, at positions without a target and at padding is 0.
	LogProbs [][]float64
	// PerExampleLoss and Metrics are the loss's, when it was computed.
	PerExampleLoss []float64
	Metrics        map[string]float64
}

// Forward returns per-token log-probabilities of the batch's targets (labels
// as in ForwardBackward, or the next input token when Labels is nil) and,
// when withLoss, the per-example losses and metrics of spec, without
// gradients and without changing anything. Without withLoss the loss's
// batch inputs are not required (logprobs for a reference policy need no
// advantages).
func (e *Engine) Forward(ctx context.Context, b Batch, spec loss.Spec, withLoss bool) (*ForwardResult, error) {
	if err := checkCtx(ctx); err != nil {
		return nil, err
	}
	l, err := e.lossFor(spec)
	if err != nil {
		return nil, err
	}
	key := "forward/logprobs"
	var lp *loss.Loss
	if withLoss {
		lp, key = &l, "forward/"+graphKey(l, spec)
	} else {
		l = loss.Loss{IgnoreLabel: l.IgnoreLabel}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	p, err := prepare(b, e.model.Config.VocabSize, e.model.Config.MaxPositions, false, l, nil)
	if err != nil {
		return nil, err
	}
	exec, err := e.graphs.get(key, func() (*Exec, error) {
		return NewExec(e.backend, buildForward(e.model, e.lora, lp))
	})
	if err != nil {
		return nil, fmt.Errorf("engine: build graph: %w", err)
	}
	out, err := run(exec, e.trainArgs(p, e.loraTensors(), l.Params))
	if err != nil {
		return nil, err
	}
	flat := tensors.MustCopyFlatData[float32](out[0])
	res := &ForwardResult{LogProbs: make([][]float64, p.B)}
	for i := range res.LogProbs {
		row := make([]float64, len(b.InputIDs[i]))
		// Position j's output predicts token j+1.
		for j := 1; j < p.lengths[i]; j++ {
			row[j] = float64(flat[i*p.T+j-1])
		}
		res.LogProbs[i] = row
	}
	if withLoss {
		res.PerExampleLoss = toF64(out[1])
		res.Metrics = metricsOf(l, out[2:])
	}
	return res, nil
}

func toF64(t *tensors.Tensor) []float64 {
	flat := tensors.MustCopyFlatData[float32](t)
	out := make([]float64, len(flat))
	for i, v := range flat {
		out[i] = float64(v)
	}
	return out
}
