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

// ForwardBackwardResult reports one ForwardBackward call.
type ForwardBackwardResult struct {
	Loss            float64   `json:"loss"` // mean of the per-example losses
	PerExampleLoss  []float64 `json:"per_example_loss"`
	Tokens          int       `json:"tokens"`                 // target tokens in the batch
	PerExampleNorms []float64 `json:"per_example_grad_norms"` // pre-clip L2 norms (DP only)
	FractionClipped float64   `json:"fraction_clipped"`       // examples whose norm exceeded C (DP only)
	PendingExamples int       `json:"pending_examples"`       // accumulated since the last step
}

func (e *Engine) trainArgs(p *prepared, lora []*tensors.Tensor) []any {
	ids, mask, targets, weights := p.tensors()
	cos, sin := e.model.RotaryTables(0, p.T)
	// Dropout randomness: reproducible from the client's seed and the
	// number of graph runs so far (never used for DP noise).
	e.runs++
	rng, err := RNGStateFromSeed(int64(e.cfg.Seed*1_000_003 + e.runs))
	if err != nil {
		panic(err) // only fails on a malformed state shape
	}
	args := []any{ids, mask, targets, weights, cos, sin, rng}
	for _, w := range e.model.Weights() {
		args = append(args, w)
	}
	for _, w := range lora {
		args = append(args, w)
	}
	return args
}

// ForwardBackward computes the batch's per-example losses and gradients of
// the LoRA parameters and adds them to the accumulator: clipped to
// MaxGradNorm per example under DP, plain otherwise. On error nothing
// changes.
func (e *Engine) ForwardBackward(ctx context.Context, b Batch, spec loss.Spec) (*ForwardBackwardResult, error) {
	if err := checkCtx(ctx); err != nil {
		return nil, err
	}
	lossFn, err := lossFor(spec)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	p, err := prepare(b, e.model.Config.VocabSize, e.model.Config.MaxPositions, true)
	if err != nil {
		return nil, err
	}
	mode := gradPlain
	if e.cfg.DP.Enabled {
		mode = gradClipped
	}
	exec, err := e.graphs.get(fmt.Sprintf("train/%d/%s", mode, spec.Key()), func() (*Exec, error) {
		return NewExec(e.backend, buildTrain(e.model, e.lora, lossFn, mode, e.cfg.DP.MaxGradNorm))
	})
	if err != nil {
		return nil, fmt.Errorf("engine: build graph: %w", err)
	}
	out, err := run(exec, e.trainArgs(p, e.loraTensors()))
	if err != nil {
		return nil, err
	}
	res := &ForwardBackwardResult{PerExampleLoss: toF64(out[0])}
	for _, n := range p.tokens {
		res.Tokens += n
	}
	for _, l := range res.PerExampleLoss {
		res.Loss += l
	}
	res.Loss /= float64(len(res.PerExampleLoss))
	grads := out[1:]
	if mode == gradClipped {
		res.PerExampleNorms = toF64(out[1])
		clipped := 0
		for _, n := range res.PerExampleNorms {
			if n > e.cfg.DP.MaxGradNorm {
				clipped++
			}
		}
		res.FractionClipped = float64(clipped) / float64(len(res.PerExampleNorms))
		grads = out[2:]
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
	e.accumExamples += p.B
	res.PendingExamples = e.accumExamples
	return res, nil
}

// PerExampleGradients returns each example's unclipped gradient of every
// LoRA tensor (name → [B][values]) and the per-example losses and flat norms.
// It changes nothing; it exists to inspect and test the DP step.
func (e *Engine) PerExampleGradients(ctx context.Context, b Batch, spec loss.Spec) (grads map[string][][]float32, losses, norms []float64, err error) {
	if err := checkCtx(ctx); err != nil {
		return nil, nil, nil, err
	}
	lossFn, err := lossFor(spec)
	if err != nil {
		return nil, nil, nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	p, err := prepare(b, e.model.Config.VocabSize, e.model.Config.MaxPositions, true)
	if err != nil {
		return nil, nil, nil, err
	}
	exec, err := e.graphs.get("perexample/"+spec.Key(), func() (*Exec, error) {
		return NewExec(e.backend, buildTrain(e.model, e.lora, lossFn, gradPerExample, 0))
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("engine: build graph: %w", err)
	}
	out, err := run(exec, e.trainArgs(p, e.loraTensors()))
	if err != nil {
		return nil, nil, nil, err
	}
	grads = map[string][][]float32{}
	for i, name := range e.lora.Names {
		flat := tensors.MustCopyFlatData[float32](out[2+i])
		per := len(flat) / p.B
		rows := make([][]float32, p.B)
		for k := range rows {
			rows[k] = flat[k*per : (k+1)*per]
		}
		grads[name] = rows
	}
	return grads, toF64(out[0]), toF64(out[1]), nil
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

// Forward returns per-token log-probabilities of the batch's targets (labels
// shifted as in ForwardBackward, or the next input token when Labels is nil)
// and per-example losses, without gradients and without changing anything.
// LogProbs[i][j] is the log-probability of the token at position j+1 given
// positions ≤ j, for j < len-1; masked-out targets report 0.
func (e *Engine) Forward(ctx context.Context, b Batch, spec loss.Spec) (logprobs [][]float64, perExample []float64, err error) {
	if err := checkCtx(ctx); err != nil {
		return nil, nil, err
	}
	lossFn, err := lossFor(spec)
	if err != nil {
		return nil, nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	p, err := prepare(b, e.model.Config.VocabSize, e.model.Config.MaxPositions, false)
	if err != nil {
		return nil, nil, err
	}
	exec, err := e.graphs.get("forward/"+spec.Key(), func() (*Exec, error) {
		return NewExec(e.backend, buildForward(e.model, e.lora, lossFn))
	})
	if err != nil {
		return nil, nil, fmt.Errorf("engine: build graph: %w", err)
	}
	out, err := run(exec, e.trainArgs(p, e.loraTensors()))
	if err != nil {
		return nil, nil, err
	}
	flat := tensors.MustCopyFlatData[float32](out[0])
	logprobs = make([][]float64, p.B)
	for i := range logprobs {
		n := p.lengths[i] - 1
		row := make([]float64, max(n, 0))
		for j := range row {
			row[j] = float64(flat[i*p.T+j])
		}
		logprobs[i] = row
	}
	return logprobs, toF64(out[1]), nil
}

func toF64(t *tensors.Tensor) []float64 {
	flat := tensors.MustCopyFlatData[float32](t)
	out := make([]float64, len(flat))
	for i, v := range flat {
		out[i] = float64(v)
	}
	return out
}
