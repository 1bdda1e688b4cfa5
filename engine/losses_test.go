package engine

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive
	"github.com/tensafe/tensafe/loss"
	"github.com/tensafe/tensafe/model"
)

// lossEngine is tensafe-tiny with adapters on every projection and B ≠ 0
// (trained for a step), so that every loss has a non-zero gradient.
func lossEngine(t testing.TB, dp DPConfig) *Engine {
	t.Helper()
	opt := DefaultOptimizer()
	opt.LR = 1e-2
	cfg := Config{LoRA: model.LoRAConfig{Rank: 4, Alpha: 8, TargetModules: []string{"q_proj", "v_proj", "down_proj"}},
		Optimizer: opt, Seed: 3}
	e, err := New(model.Tiny(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// One plain step moves B off zero.
	if _, err := e.ForwardBackward(context.Background(), textBatch(t, "hello there", "general kenobi"), loss.Spec{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.OptimStep(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.cfg.DP = dp
	return e
}

// textBatch encodes texts with the byte tokenizer: <bos> then the bytes,
// right-padded, labels = input ids.
func textBatch(t testing.TB, texts ...string) Batch {
	t.Helper()
	longest := 0
	for _, s := range texts {
		longest = max(longest, len(s)+1)
	}
	var b Batch
	for _, s := range texts {
		ids := []int{256}
		for i := range len(s) {
			ids = append(ids, int(s[i]))
		}
		mask := make([]int, longest)
		labels := make([]int, longest)
		for i := range mask {
			if i < len(ids) {
				mask[i] = 1
				labels[i] = ids[i]
			} else {
				labels[i] = loss.IgnoreIndex
			}
		}
		for len(ids) < longest {
			ids = append(ids, 258)
		}
		b.InputIDs = append(b.InputIDs, ids)
		b.AttentionMask = append(b.AttentionMask, mask)
		b.Labels = append(b.Labels, labels)
	}
	return b
}

// rlBatch adds advantages, sampling and reference log-probabilities (the
// model's own, shifted a little) and regression targets to b.
func rlBatch(t testing.TB, e *Engine, b Batch, P int) Batch {
	t.Helper()
	fr, err := e.Forward(context.Background(), b, loss.Spec{}, false)
	if err != nil {
		t.Fatal(err)
	}
	b.Advantages = make([][]float64, len(b.InputIDs))
	b.SamplingLogprobs = make([][]float64, len(b.InputIDs))
	b.ReferenceLogprobs = make([][]float64, len(b.InputIDs))
	for i, row := range fr.LogProbs {
		b.Advantages[i] = make([]float64, len(row))
		b.SamplingLogprobs[i] = make([]float64, len(row))
		b.ReferenceLogprobs[i] = make([]float64, len(row))
		for j, lp := range row {
			b.Advantages[i][j] = float64((i+j)%3) - 1 + 0.25
			b.SamplingLogprobs[i][j] = lp + 0.3*math.Sin(float64(7*i+j))
			b.ReferenceLogprobs[i][j] = lp + 0.2*math.Cos(float64(5*i+j))
		}
	}
	for i := range P {
		b.Targets = append(b.Targets, float64(i)-0.5)
	}
	return b
}

func allLossSpecs() []loss.Spec {
	return []loss.Spec{
		{Type: "token_ce", Kwargs: map[string]any{"label_smoothing": 0.1}},
		{Type: "margin_ranking", Kwargs: map[string]any{"margin": 50}},
		{Type: "contrastive", Kwargs: map[string]any{"temperature": 0.5, "group_size": 3}},
		{Type: "mse", Kwargs: map[string]any{"head_token": 65}},
		{Type: "importance_sampling", Kwargs: map[string]any{"entropy_coef": 0.01}},
		{Type: "ppo", Kwargs: map[string]any{"kl_coef": 0.1, "entropy_coef": 0.01}},
		{Type: "dpo", Kwargs: map[string]any{"beta": 0.5}},
	}
}

var sixTexts = []string{"the cat sat", "a dog ran off", "birds fly", "fish swim deep", "one two three", "sun"}

// TestEveryLossUnderDP runs every built-in loss through the DP step: one
// norm per example (pair or group), the accumulated sum equals the
// per-example gradients clipped to C, every clipped example's norm is ≤ C,
// and a group's gradient is that of the group alone (no coupling between
// examples).
func TestEveryLossUnderDP(t *testing.T) {
	ctx := context.Background()
	for _, spec := range allLossSpecs() {
		t.Run(spec.Type, func(t *testing.T) {
			l, err := loss.Resolve(spec)
			if err != nil {
				t.Fatal(err)
			}
			G := l.Group()
			P := len(sixTexts) / G
			probe := lossEngine(t, DPConfig{})
			b := rlBatch(t, probe, textBatch(t, sixTexts...), P)

			// Per-example gradients, unclipped.
			e := lossEngine(t, DPConfig{})
			grads, losses, norms, err := e.PerExampleGradients(ctx, b, spec)
			if err != nil {
				t.Fatal(err)
			}
			if len(losses) != P || len(norms) != P {
				t.Fatalf("%d losses, %d norms, want %d", len(losses), len(norms), P)
			}
			minNorm, maxNorm := math.Inf(1), 0.0
			for _, n := range norms {
				minNorm, maxNorm = math.Min(minNorm, n), math.Max(maxNorm, n)
			}
			if !(minNorm > 0) || !(maxNorm > minNorm) {
				t.Fatalf("norms %v: an example has no gradient, or all are equal", norms)
			}
			// C between the smallest and largest norms clips some examples.
			C := (minNorm + maxNorm) / 2
			e.cfg.DP = DPConfig{Enabled: true, NoiseMultiplier: 1, MaxGradNorm: C, ExpectedBatch: P}
			res, err := e.ForwardBackward(ctx, b, spec)
			if err != nil {
				t.Fatal(err)
			}
			if res.PendingExamples != P || len(res.PerExampleNorms) != P || len(res.PerExampleLoss) != P {
				t.Fatalf("result %+v, want %d examples", res, P)
			}
			for _, m := range l.Metrics {
				if _, ok := res.Metrics[m]; !ok {
					t.Errorf("metric %s missing from %v", m, res.Metrics)
				}
			}
			for i, name := range e.lora.Names {
				want := make([]float64, len(e.accum[i]))
				for p := range P {
					f := math.Min(1, C/(norms[p]+1e-6))
					for j, g := range grads[name][p] {
						want[j] += float64(g) * f
					}
				}
				var num, den float64
				for j := range want {
					d := float64(e.accum[i][j]) - want[j]
					num += d * d
					den += want[j] * want[j]
				}
				if den > 0 && math.Sqrt(num/den) > 1e-4 {
					t.Errorf("%s: clipped sum off by %.3g relative", name, math.Sqrt(num/den))
				}
			}
			for p := range P {
				var sq float64
				f := math.Min(1, C/(norms[p]+1e-6))
				for _, name := range e.lora.Names {
					for _, g := range grads[name][p] {
						sq += float64(g) * f * float64(g) * f
					}
				}
				if math.Sqrt(sq) > C*(1+1e-5) {
					t.Errorf("example %d: clipped norm %v > C = %v", p, math.Sqrt(sq), C)
				}
			}
			if res.FractionClipped == 0 {
				t.Errorf("nothing was clipped (norms %v, C %v)", norms, C)
			}

			// The last example alone has the same gradient as inside the batch.
			last := sliceBatch(b, (P-1)*G, P*G, P-1)
			alone, _, _, err := e.PerExampleGradients(ctx, last, spec)
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range e.lora.Names {
				if r := relErr(alone[name][0], grads[name][P-1]); r > 1e-4 {
					t.Errorf("%s: example %d alone differs from in the batch by %.3g", name, P-1, r)
				}
			}
		})
	}
}

// sliceBatch returns rows [lo, hi) of b and example p's target.
func sliceBatch(b Batch, lo, hi, p int) Batch {
	out := Batch{InputIDs: b.InputIDs[lo:hi], AttentionMask: b.AttentionMask[lo:hi], Labels: b.Labels[lo:hi],
		Advantages: b.Advantages[lo:hi], SamplingLogprobs: b.SamplingLogprobs[lo:hi], ReferenceLogprobs: b.ReferenceLogprobs[lo:hi]}
	if b.Targets != nil {
		out.Targets = b.Targets[p : p+1]
	}
	return out
}

// TestCustomLossEqualsBuiltIn computes token_ce's d loss/d logprobs from
// Forward's log-probabilities, sends it through ForwardBackwardCustom and
// compares the accumulated (clipped, with a huge C) gradient with
// ForwardBackward's token_ce.
func TestCustomLossEqualsBuiltIn(t *testing.T) {
	ctx := context.Background()
	dp := DPConfig{Enabled: true, NoiseMultiplier: 1, MaxGradNorm: 1e9, ExpectedBatch: 4}
	b := textBatch(t, "custom losses", "are client side", "abc", "the same gradient")
	b.Labels[2][1] = loss.IgnoreIndex // a hole in the targets
	builtIn := lossEngine(t, dp)
	rb, err := builtIn.ForwardBackward(ctx, b, loss.Spec{Type: "token_ce"})
	if err != nil {
		t.Fatal(err)
	}
	custom := lossEngine(t, dp)
	fr, err := custom.Forward(ctx, b, loss.Spec{}, false)
	if err != nil {
		t.Fatal(err)
	}
	// token_ce_i = −(1/n_i) Σ_t logp_t over target positions, so
	// d loss_i/d logp_t = −1/n_i there. Non-target positions get junk,
	// which must be ignored.
	grads := make([][]float64, len(b.InputIDs))
	losses := make([]float64, len(b.InputIDs))
	for i, row := range fr.LogProbs {
		if len(row) != len(b.InputIDs[i]) || row[0] != 0 {
			t.Fatalf("logprobs[%d] = %v: not aligned with input_ids", i, row)
		}
		n := 0
		for j := 1; j < len(row); j++ {
			if b.Labels[i][j] != loss.IgnoreIndex {
				n++
			}
		}
		grads[i] = make([]float64, len(row))
		grads[i][0] = 123 // t = 0 is ignored
		for j := 1; j < len(row); j++ {
			if b.Labels[i][j] == loss.IgnoreIndex {
				grads[i][j] = -77
				continue
			}
			grads[i][j] = -1 / float64(n)
			losses[i] -= row[j] / float64(n)
		}
	}
	rc, err := custom.ForwardBackwardCustom(ctx, b, grads)
	if err != nil {
		t.Fatal(err)
	}
	worst, scale := 0.0, 0.0
	for i := range builtIn.accum {
		for j, want := range builtIn.accum[i] {
			d := math.Abs(float64(custom.accum[i][j] - want))
			worst = math.Max(worst, d)
			scale = math.Max(scale, math.Abs(float64(want)))
		}
	}
	if !(scale > 1e-3) || custom.PendingExamples() != 4 {
		t.Fatalf("largest accumulated gradient %v, %d examples: nothing to compare", scale, custom.PendingExamples())
	}
	if worst > 1e-5 {
		t.Errorf("accumulated gradients differ by up to %.3g", worst)
	}
	t.Logf("custom vs built-in token_ce: worst |Δ gradient| = %.3g (largest gradient entry %.3g)", worst, scale)
	for i := range rb.PerExampleNorms {
		if math.Abs(rb.PerExampleNorms[i]-rc.PerExampleNorms[i]) > 1e-5*rb.PerExampleNorms[i] {
			t.Errorf("norm %d: built-in %v, custom %v", i, rb.PerExampleNorms[i], rc.PerExampleNorms[i])
		}
		// The client-side loss computed from Forward's logprobs is token_ce.
		if math.Abs(losses[i]-rb.PerExampleLoss[i]) > 1e-5 {
			t.Errorf("example %d: client loss %v, token_ce %v", i, losses[i], rb.PerExampleLoss[i])
		}
	}
}

func TestLossInputErrors(t *testing.T) {
	ctx := context.Background()
	e := lossEngine(t, DPConfig{})
	b := textBatch(t, "abc", "de", "f")
	cases := []struct {
		spec  loss.Spec
		b     func(Batch) Batch
		field string
	}{
		{loss.Spec{Type: "ppo"}, func(b Batch) Batch { return b }, "advantages"},
		{loss.Spec{Type: "importance_sampling"}, func(b Batch) Batch {
			b.Advantages = [][]float64{{0, 1, 1, 1}, {0, 1, 1, 0}, {0, 1, 0, 0}}
			return b
		}, "sampling_logprobs"},
		{loss.Spec{Type: "ppo"}, func(b Batch) Batch {
			b.Advantages = [][]float64{{0, 1, 1, 1}, {0, 1, 1}, {0, 1, 0, 0}}
			b.SamplingLogprobs = b.Advantages
			return b
		}, "advantages[1]"},
		{loss.Spec{Type: "ppo"}, func(b Batch) Batch {
			b.Advantages = [][]float64{{0, 1, 1, 1}, {0, 1, math.NaN(), 0}, {0, 1, 0, 0}}
			b.SamplingLogprobs = b.Advantages
			return b
		}, "advantages[1][2]"},
		{loss.Spec{Type: "dpo"}, func(b Batch) Batch { return b }, "input_ids"},
		{loss.Spec{Type: "mse", Kwargs: map[string]any{"head_token": 3}}, func(b Batch) Batch { return b }, "targets"},
		{loss.Spec{Type: "mse", Kwargs: map[string]any{"head_token": 3}}, func(b Batch) Batch { b.Targets = []float64{1, 2}; return b }, "targets"},
	}
	for _, c := range cases {
		_, err := e.ForwardBackward(ctx, c.b(b), c.spec)
		var be *BatchError
		if !errors.As(err, &be) || be.Field != c.field {
			t.Errorf("%s: error %v, want a BatchError on %s", c.spec.Type, err, c.field)
		}
	}
	if _, err := e.ForwardBackward(ctx, b, loss.Spec{Type: "mse", Kwargs: map[string]any{"head_token": 100000}}); err == nil ||
		!strings.Contains(err.Error(), "kwargs.head_token") {
		t.Errorf("head_token outside the vocabulary: %v", err)
	}
	if e.PendingExamples() != 0 {
		t.Errorf("refused batches accumulated %d examples", e.PendingExamples())
	}
	// Forward without the loss needs none of its inputs.
	if _, err := e.Forward(ctx, b, loss.Spec{Type: "ppo"}, false); err != nil {
		t.Errorf("forward for logprobs: %v", err)
	}
}

// TestRegisteredLossTrains registers a focal loss in the default registry,
// as a Go user would, and trains a DP step with it through the engine.
func TestRegisteredLossTrains(t *testing.T) {
	type focalKwargs struct {
		Gamma float64 `json:"gamma"`
	}
	err := loss.Register("focal", func(kw map[string]any) (loss.Loss, error) {
		k := focalKwargs{Gamma: 2}
		if err := loss.DecodeKwargs(kw, &k); err != nil {
			return loss.Loss{}, err
		}
		return loss.Loss{Metrics: []string{"p_mean"}, Func: func(out loss.Outputs, b loss.Batch) loss.Result {
			_, lp := loss.TokenLogProbs(out, b)
			mask := loss.TargetMask(b)
			p := Exp(lp)
			tok := Mul(Neg(lp), Pow(OneMinus(p), Scalar(lp.Graph(), lp.DType(), k.Gamma)))
			per := Div(ReduceSum(Mul(tok, mask), -1), MaxScalar(ReduceSum(mask, -1), 1))
			return loss.Result{PerExample: per, Metrics: map[string]*Node{
				"p_mean": Div(ReduceAllSum(Mul(p, mask)), ReduceAllSum(mask))}}
		}}, nil
	})
	if err != nil && !errors.Is(err, loss.ErrDuplicate) {
		t.Fatal(err)
	}
	ctx := context.Background()
	e := lossEngine(t, DPConfig{Enabled: true, NoiseMultiplier: 0.5, MaxGradNorm: 1, ExpectedBatch: 2})
	b := textBatch(t, "focus on", "hard tokens")
	if _, err := e.ForwardBackward(ctx, b, loss.Spec{Type: "focal", Kwargs: map[string]any{"alpha": 1}}); err == nil ||
		!strings.Contains(err.Error(), `unknown kwarg "alpha"`) {
		t.Fatalf("unknown kwarg: %v", err)
	}
	before := e.Adapter()
	res, err := e.ForwardBackward(ctx, b, loss.Spec{Type: "focal", Kwargs: map[string]any{"gamma": 1}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.PerExampleNorms) != 2 || !(res.Metrics["p_mean"] > 0 && res.Metrics["p_mean"] < 1) || !(res.Loss > 0) {
		t.Fatalf("result %+v", res)
	}
	if _, err := e.OptimStep(ctx); err != nil {
		t.Fatal(err)
	}
	after := e.Adapter()
	changed := false
	for _, n := range after.Names {
		for j := range after.Values[n] {
			changed = changed || after.Values[n][j] != before.Values[n][j]
		}
	}
	if !changed {
		t.Error("the step with the registered loss changed nothing")
	}
}

// TestGoldenTokenCE checks that token_ce is the Hugging Face causal-LM loss
// computed from the reference logits of the tiny-llama fixture (the adapter
// is freshly initialised with B = 0, so the model is the base model).
func TestGoldenTokenCE(t *testing.T) {
	m, err := model.Load(fixture("tiny-llama"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(fixture("tiny-llama", "golden_logits.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		InputIDs [][]int       `json:"input_ids"`
		Logits   [][][]float64 `json:"logits"`
	}
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	e, err := New(m, Config{LoRA: model.LoRAConfig{Rank: 2, Alpha: 4}, Optimizer: DefaultOptimizer()})
	if err != nil {
		t.Fatal(err)
	}
	// Labels: the inputs with a few positions ignored, as HF takes them.
	b := Batch{InputIDs: g.InputIDs}
	for i, row := range g.InputIDs {
		labels := append([]int(nil), row...)
		labels[3+i] = loss.IgnoreIndex
		b.Labels = append(b.Labels, labels)
	}
	want := make([]float64, len(b.InputIDs))
	for i := range b.InputIDs {
		var sum float64
		n := 0
		for tpos := 0; tpos+1 < len(b.Labels[i]); tpos++ {
			label := b.Labels[i][tpos+1]
			if label == loss.IgnoreIndex {
				continue
			}
			row := g.Logits[i][tpos]
			mx := math.Inf(-1)
			for _, v := range row {
				mx = math.Max(mx, v)
			}
			var s float64
			for _, v := range row {
				s += math.Exp(v - mx)
			}
			sum += mx + math.Log(s) - row[label]
			n++
		}
		want[i] = sum / float64(n)
	}
	fr, err := e.Forward(context.Background(), b, loss.Spec{Type: "token_ce"}, true)
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.ForwardBackward(context.Background(), b, loss.Spec{Type: "token_ce"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if math.Abs(fr.PerExampleLoss[i]-want[i]) > 1e-4 || math.Abs(res.PerExampleLoss[i]-want[i]) > 1e-4 {
			t.Errorf("example %d: forward %v, forward_backward %v, HF %v", i, fr.PerExampleLoss[i], res.PerExampleLoss[i], want[i])
		}
	}
	t.Logf("HF loss %v, ours %v", want, fr.PerExampleLoss)
}

// TestHyperParametersNeedNoRecompile: built-in losses read their numeric
// kwargs at run time, so a new value (an annealed KL coefficient) reuses the
// compiled graph and still takes effect; the number of graphs stays bounded.
func TestHyperParametersNeedNoRecompile(t *testing.T) {
	ctx := context.Background()
	e := lossEngine(t, DPConfig{})
	b := rlBatch(t, e, textBatch(t, "anneal the", "kl penalty"), 2)
	before := e.graphs.len()
	var losses []float64
	for _, kl := range []float64{0.1, 0.5, 2} {
		_, per, _, err := e.PerExampleGradients(ctx, b, loss.Spec{Type: "ppo", Kwargs: map[string]any{"kl_coef": kl, "entropy_coef": kl / 10}})
		if err != nil {
			t.Fatal(err)
		}
		losses = append(losses, per[0])
	}
	if got := e.graphs.len() - before; got != 1 {
		t.Errorf("three kl_coef values built %d graphs, want 1", got)
	}
	if losses[0] == losses[1] || losses[1] == losses[2] {
		t.Errorf("kl_coef had no effect: losses %v", losses)
	}
	// The same values compiled as constants agree with the run-time ones.
	fresh := lossEngine(t, DPConfig{})
	_, per, _, err := fresh.PerExampleGradients(ctx, b, loss.Spec{Type: "ppo", Kwargs: map[string]any{"kl_coef": 2, "entropy_coef": 0.2}})
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(per[0]-losses[2]) > 1e-6*math.Max(1, math.Abs(per[0])) {
		t.Errorf("loss after reuse %v, fresh %v", losses[2], per[0])
	}

	// Losses with kwargs baked into the graph are bounded by maxGraphs.
	for i := range maxGraphs + 3 {
		spec := loss.Spec{Type: "mse", Kwargs: map[string]any{"head_token": i}}
		if _, err := e.Forward(ctx, b, spec, true); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.graphs.len(); n > maxGraphs {
		t.Errorf("%d graphs held, bound %d", n, maxGraphs)
	}
}

// TestLossGradientsThroughModel checks, for every built-in loss on
// tensafe-tiny, that the engine's per-example gradients (summed) are the
// gradient of the losses Forward reports: the directional derivative along
// a random direction of the LoRA weights, by central differences, equals
// ⟨gradient, direction⟩. This covers the grouping of rows into examples,
// the alignment of the RL inputs and the run-time hyper-parameters.
func TestLossGradientsThroughModel(t *testing.T) {
	ctx := context.Background()
	for _, spec := range allLossSpecs() {
		t.Run(spec.Type, func(t *testing.T) {
			l, err := loss.Resolve(spec)
			if err != nil {
				t.Fatal(err)
			}
			e := lossEngine(t, DPConfig{})
			b := rlBatch(t, e, textBatch(t, sixTexts...), len(sixTexts)/l.Group())
			grads, _, _, err := e.PerExampleGradients(ctx, b, spec)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(5, 9))
			dir := map[string][]float64{}
			var norm2, dot float64
			for _, name := range e.lora.Names {
				d := make([]float64, len(e.lora.Values[name]))
				for j := range d {
					d[j] = rng.NormFloat64()
					norm2 += d[j] * d[j]
				}
				dir[name] = d
			}
			for _, name := range e.lora.Names {
				for j := range dir[name] {
					dir[name][j] /= math.Sqrt(norm2)
					for p := range grads[name] {
						dot += float64(grads[name][p][j]) * dir[name][j]
					}
				}
			}
			total := func(eps float64) float64 {
				orig := map[string][]float32{}
				for _, name := range e.lora.Names {
					orig[name] = append([]float32(nil), e.lora.Values[name]...)
					for j := range e.lora.Values[name] {
						e.lora.Values[name][j] += float32(eps * dir[name][j])
					}
				}
				defer func() {
					for _, name := range e.lora.Names {
						copy(e.lora.Values[name], orig[name])
					}
				}()
				r, err := e.Forward(ctx, b, spec, true)
				if err != nil {
					t.Fatal(err)
				}
				var s float64
				for _, v := range r.PerExampleLoss {
					s += v
				}
				return s
			}
			const eps = 1e-2
			fd := (total(eps) - total(-eps)) / (2 * eps)
			if math.Abs(fd-dot) > 2e-2*math.Max(math.Abs(dot), 1e-2) {
				t.Errorf("directional derivative: gradient %.6g, central differences %.6g", dot, fd)
			}
			t.Logf("⟨g, d⟩ = %.6g, central differences %.6g", dot, fd)
		})
	}
}
