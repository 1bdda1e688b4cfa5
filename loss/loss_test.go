package loss

import (
	"errors"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/tensafe/tensafe/compute"
)

// in is a small batch in float64, fed to a loss in a float64 graph so that
// finite differences are accurate.
type in struct {
	logits, hidden                [][][]float64 // [B, T, V], [B, T, H]
	targets                       [][]int32     // [B, T], shifted
	weights, mask, adv, samp, ref [][]float64   // [B, T]
	lpg                           [][]float64   // [B, T]
	exTargets                     []float64     // [P]
}

func zeros2(B, T int) [][]float64 {
	out := make([][]float64, B)
	for i := range out {
		out[i] = make([]float64, T)
	}
	return out
}

// fill gives every absent [B, T] input zeros (and mask, weights ones).
func (x *in) fill(P int) {
	B, T := len(x.logits), len(x.logits[0])
	ones := func() [][]float64 {
		o := zeros2(B, T)
		for i := range o {
			for j := range o[i] {
				o[i][j] = 1
			}
		}
		return o
	}
	if x.weights == nil {
		x.weights = ones()
	}
	if x.mask == nil {
		x.mask = ones()
	}
	for _, p := range []*[][]float64{&x.adv, &x.samp, &x.ref, &x.lpg} {
		if *p == nil {
			*p = zeros2(B, T)
		}
	}
	if x.hidden == nil {
		x.hidden = make([][][]float64, B)
		for i := range x.hidden {
			x.hidden[i] = make([][]float64, T)
			for j := range x.hidden[i] {
				x.hidden[i][j] = []float64{1, 0}
			}
		}
	}
	if x.exTargets == nil {
		x.exTargets = make([]float64, P)
	}
}

func (x *in) args(coef []float64) []any {
	return []any{tensors.FromValue(x.logits), tensors.FromValue(x.hidden), tensors.FromValue(x.targets),
		tensors.FromValue(x.weights), tensors.FromValue(x.mask), tensors.FromValue(x.adv), tensors.FromValue(x.samp),
		tensors.FromValue(x.ref), tensors.FromValue(x.lpg), tensors.FromValue(x.exTargets), tensors.FromValue(coef)}
}

// harness runs a loss and the gradient of Σ_i coef_i·loss_i with respect to
// the logits and the hidden states.
type harness struct {
	t    testing.TB
	l    Loss
	exec *Exec
}

func newHarness(t testing.TB, l Loss) *harness {
	t.Helper()
	b, err := compute.Backend()
	if err != nil {
		t.Fatal(err)
	}
	exec, err := NewExec(b, func(n []*Node) []*Node {
		out := Outputs{Logits: n[0], Hidden: n[1]}
		bt := Batch{Targets: n[2], Weights: n[3], Mask: n[4], Advantages: n[5], SamplingLogProbs: n[6],
			ReferenceLogProbs: n[7], LogProbGrads: n[8], ExampleTargets: n[9], Params: n[11:]}
		r := l.Func(out, bt)
		total := ReduceAllSum(Mul(r.PerExample, n[10]))
		g := Gradient(total, n[0], n[1])
		outs := []*Node{total, g[0], g[1], r.PerExample}
		for _, m := range l.Metrics {
			outs = append(outs, r.Metrics[m])
		}
		return outs
	})
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, l: l, exec: exec}
}

type got struct {
	total        float64
	dLogits      []float64
	dHidden      []float64
	perExample   []float64
	metrics      map[string]float64
	metricsOrder []string
}

func (h *harness) run(x *in, coef []float64) got {
	h.t.Helper()
	args := x.args(coef)
	for _, v := range h.l.Params {
		args = append(args, tensors.FromScalar(v))
	}
	out, err := h.exec.Exec(args...)
	if err != nil {
		h.t.Fatal(err)
	}
	r := got{
		total:      tensors.MustCopyFlatData[float64](out[0])[0],
		dLogits:    tensors.MustCopyFlatData[float64](out[1]),
		dHidden:    tensors.MustCopyFlatData[float64](out[2]),
		perExample: tensors.MustCopyFlatData[float64](out[3]),
		metrics:    map[string]float64{},
	}
	for i, m := range h.l.Metrics {
		r.metrics[m] = tensors.MustCopyFlatData[float64](out[4+i])[0]
	}
	return r
}

func resolve(t *testing.T, typ string, kw map[string]any) Loss {
	t.Helper()
	l, err := Resolve(Spec{Type: typ, Kwargs: kw})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func logSoftmax(row []float64) []float64 {
	m := math.Inf(-1)
	for _, v := range row {
		m = math.Max(m, v)
	}
	var s float64
	for _, v := range row {
		s += math.Exp(v - m)
	}
	lse := m + math.Log(s)
	out := make([]float64, len(row))
	for i, v := range row {
		out[i] = v - lse
	}
	return out
}

func entropyOf(row []float64) float64 {
	var h float64
	for _, lp := range logSoftmax(row) {
		h -= math.Exp(lp) * lp
	}
	return h
}

func near(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol*math.Max(1, math.Abs(want)) {
		t.Errorf("%s = %.10g, want %.10g", what, got, want)
	}
}

// pairCase: one pair (row 0 chosen, row 1 rejected), two positions,
// vocabulary 3; row 1's second position has no target.
func pairCase() *in {
	x := &in{
		logits:  [][][]float64{{{1, 2, 3}, {0, 0, 0}}, {{3, 2, 1}, {1, 1, 0}}},
		targets: [][]int32{{2, 1}, {2, 0}},
		weights: [][]float64{{1, 1}, {1, 0}},
		adv:     [][]float64{{0.5, -1}, {2, 0}},
		samp:    [][]float64{{-0.5, -1.2}, {-2.0, 0}},
		ref:     [][]float64{{-0.6, -1.0}, {-2.5, 0}},
	}
	x.fill(1)
	return x
}

// lp returns log p(target) at row b, position t of x.
func (x *in) lp(b, t int) float64 { return logSoftmax(x.logits[b][t])[x.targets[b][t]] }

func TestHandComputedValues(t *testing.T) {
	x := pairCase()
	l00, l01, l10 := x.lp(0, 0), x.lp(0, 1), x.lp(1, 0)
	sC, sR := l00+l01, l10
	r00, r01, r10 := math.Exp(l00-x.samp[0][0]), math.Exp(l01-x.samp[0][1]), math.Exp(l10-x.samp[1][0])
	clip := func(r float64) float64 { return math.Min(math.Max(r, 0.8), 1.2) }
	ppoTok := func(r, a float64) float64 { return math.Min(r*a, clip(r)*a) }
	k3 := func(ref, lp float64) float64 { d := ref - lp; return math.Exp(d) - d - 1 }
	ent := func(b, t int) float64 { return entropyOf(x.logits[b][t]) }
	z := 0.1 * ((sC - (x.ref[0][0] + x.ref[0][1])) - (sR - x.ref[1][0]))
	outside := 0.0
	for _, r := range []float64{r00, r01, r10} {
		if r < 0.8 || r > 1.2 {
			outside++
		}
	}
	cases := []struct {
		typ     string
		kw      map[string]any
		want    []float64
		metrics map[string]float64
	}{
		{"margin_ranking", nil, []float64{math.Max(0, 1-(sC-sR))}, nil},
		{"margin_ranking", map[string]any{"margin": 0.25, "normalize": "mean"}, []float64{math.Max(0, 0.25-(sC/2-sR))}, nil},
		{"importance_sampling", nil, []float64{-(r00*0.5 + r01*-1), -(r10 * 2)},
			map[string]float64{"ratio_mean": (r00 + r01 + r10) / 3}},
		{"importance_sampling", map[string]any{"entropy_coef": 0.3}, []float64{-(r00*0.5 + r01*-1) - 0.3*(ent(0, 0)+ent(0, 1)), -(r10 * 2) - 0.3*ent(1, 0)}, nil},
		{"ppo", nil, []float64{-(ppoTok(r00, 0.5) + ppoTok(r01, -1)), -ppoTok(r10, 2)},
			map[string]float64{"clip_fraction": outside / 3, "ratio_mean": (r00 + r01 + r10) / 3,
				"approx_kl": ((r00 - 1 - math.Log(r00)) + (r01 - 1 - math.Log(r01)) + (r10 - 1 - math.Log(r10))) / 3}},
		{"ppo", map[string]any{"kl_coef": 0.2, "entropy_coef": 0.1, "clip_low_threshold": 0.9, "clip_high_threshold": 1.05},
			[]float64{
				-(math.Min(r00*0.5, math.Min(math.Max(r00, 0.9), 1.05)*0.5) + math.Min(r01*-1, math.Min(math.Max(r01, 0.9), 1.05)*-1)) +
					0.2*(k3(x.ref[0][0], l00)+k3(x.ref[0][1], l01)) - 0.1*(ent(0, 0)+ent(0, 1)),
				-math.Min(r10*2, math.Min(math.Max(r10, 0.9), 1.05)*2) + 0.2*k3(x.ref[1][0], l10) - 0.1*ent(1, 0),
			}, nil},
		{"dpo", nil, []float64{math.Log1p(math.Exp(-z))}, map[string]float64{"reward_margin": z, "reward_accuracy": b2f(z > 0)}},
		{"dpo", map[string]any{"beta": 2.5}, []float64{math.Log1p(math.Exp(-25 * z))}, nil},
	}
	for _, c := range cases {
		h := newHarness(t, resolve(t, c.typ, c.kw))
		g := h.run(x, make([]float64, len(c.want)))
		if len(g.perExample) != len(c.want) {
			t.Fatalf("%s: %d per-example losses, want %d", c.typ, len(g.perExample), len(c.want))
		}
		for i := range c.want {
			near(t, c.typ+" loss", g.perExample[i], c.want[i], 1e-9)
		}
		for m, w := range c.metrics {
			near(t, c.typ+" metric "+m, g.metrics[m], w, 1e-9)
		}
	}
	// The case must exercise PPO's clipping on both sides of the range.
	if outside == 0 || outside == 3 {
		t.Fatalf("ppo case has %v of 3 ratios outside the clip range", outside)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func TestTokenCEHandComputed(t *testing.T) {
	// One example, two positions, vocabulary 3.
	x := &in{logits: [][][]float64{{{1, 2, 3}, {0, 0, 0}}}, targets: [][]int32{{2, 1}}, weights: [][]float64{{1, 3}}}
	x.fill(1)
	lse := math.Log(math.Exp(1) + math.Exp(2) + math.Exp(3))
	nll0 := lse - 3     // −log p(2) at position 0
	nll1 := math.Log(3) // uniform at position 1
	mean0 := lse - 2    // −mean_v log p(v) at position 0
	mean1 := math.Log(3)
	cases := []struct {
		eps  float64
		want float64
	}{
		{0, (nll0 + 3*nll1) / 4},
		{0.1, (0.9*nll0 + 0.1*mean0 + 3*(0.9*nll1+0.1*mean1)) / 4},
	}
	for _, c := range cases {
		h := newHarness(t, resolve(t, "token_ce", map[string]any{"label_smoothing": c.eps}))
		g := h.run(x, []float64{1})
		near(t, "token_ce", g.perExample[0], c.want, 1e-12)
		// Analytic gradient of the weighted mean without smoothing:
		// d/dlogit_v = w_t (p_v − 1[v = target]) / Σw.
		if c.eps == 0 {
			for tpos, w := range []float64{1, 3} {
				lp := logSoftmax(x.logits[0][tpos])
				for v := range 3 {
					want := w * math.Exp(lp[v]) / 4
					if int32(v) == x.targets[0][tpos] {
						want -= w / 4
					}
					near(t, "token_ce gradient", g.dLogits[tpos*3+v], want, 1e-12)
				}
			}
		}
	}
}

func TestContrastiveHandComputed(t *testing.T) {
	// A group of three rows of two tokens; the negative's second token is
	// padding. Mean-pooled: anchor (1, 0), positive (1, 1), negative (0, 1).
	x := &in{
		logits:  [][][]float64{{{0}, {0}}, {{0}, {0}}, {{0}, {0}}},
		hidden:  [][][]float64{{{1, 0}, {1, 0}}, {{2, 0}, {0, 2}}, {{0, 1}, {5, 5}}},
		targets: [][]int32{{0, 0}, {0, 0}, {0, 0}},
		mask:    [][]float64{{1, 1}, {1, 1}, {1, 0}},
	}
	x.fill(1)
	for _, tau := range []float64{0.05, 0.5} {
		h := newHarness(t, resolve(t, "contrastive", map[string]any{"temperature": tau}))
		g := h.run(x, []float64{1})
		pos, neg := 1/math.Sqrt2/tau, 0.0
		want := -(pos - math.Log(math.Exp(pos)+math.Exp(neg)))
		near(t, "contrastive", g.perExample[0], want, 1e-9)
		near(t, "contrastive accuracy", g.metrics["accuracy"], 1, 0)
	}
}

func TestMSEHandComputed(t *testing.T) {
	// Two examples, vocabulary 2, head token 1; example 1's last token is padding.
	x := &in{
		logits:    [][][]float64{{{0, 1}, {0, 3}}, {{0, -2}, {0, 7}}},
		targets:   [][]int32{{0, 0}, {0, 0}},
		mask:      [][]float64{{1, 1}, {1, 0}},
		exTargets: []float64{1.5, 0.5},
	}
	x.fill(2)
	for _, c := range []struct {
		pooling string
		want    []float64
	}{
		{"mean", []float64{(2 - 1.5) * (2 - 1.5), (-2 - 0.5) * (-2 - 0.5)}},
		{"last", []float64{(3 - 1.5) * (3 - 1.5), (-2 - 0.5) * (-2 - 0.5)}},
	} {
		h := newHarness(t, resolve(t, "mse", map[string]any{"head_token": 1, "pooling": c.pooling}))
		g := h.run(x, []float64{1, 1})
		for i := range c.want {
			near(t, "mse "+c.pooling, g.perExample[i], c.want[i], 1e-12)
		}
	}
}

// randomCase draws a batch of B rows (T positions, vocabulary V, hidden H)
// in which sampling and reference log-probabilities sit near the model's,
// so that ratios fall on both sides of PPO's clip range.
func randomCase(rng *rand.Rand, B, T, V, H, P int) *in {
	x := &in{targets: make([][]int32, B), weights: zeros2(B, T), mask: zeros2(B, T), adv: zeros2(B, T),
		samp: zeros2(B, T), ref: zeros2(B, T), lpg: zeros2(B, T), exTargets: make([]float64, P)}
	x.logits = make([][][]float64, B)
	x.hidden = make([][][]float64, B)
	for b := range B {
		x.targets[b] = make([]int32, T)
		x.logits[b] = make([][]float64, T)
		x.hidden[b] = make([][]float64, T)
		n := T - rng.IntN(2) // some rows padded by one
		for t := range T {
			x.logits[b][t] = make([]float64, V)
			for v := range V {
				x.logits[b][t][v] = rng.NormFloat64()
			}
			x.hidden[b][t] = make([]float64, H)
			for k := range H {
				x.hidden[b][t][k] = rng.NormFloat64()
			}
			if t < n {
				x.mask[b][t] = 1
			}
			if t < n-1 {
				x.targets[b][t] = int32(rng.IntN(V))
				x.weights[b][t] = 0.5 + rng.Float64()
				lp := logSoftmax(x.logits[b][t])[x.targets[b][t]]
				x.adv[b][t] = rng.NormFloat64()
				x.samp[b][t] = lp + 0.4*rng.NormFloat64()
				x.ref[b][t] = lp + 0.4*rng.NormFloat64()
				x.lpg[b][t] = rng.NormFloat64()
			}
		}
	}
	for i := range x.exTargets {
		x.exTargets[i] = rng.NormFloat64()
	}
	return x
}

// TestGradientsFiniteDifferences checks every built-in loss's gradient with
// respect to the logits and the hidden states against central finite
// differences, in float64, of Σ_i c_i·loss_i with random c_i.
func TestGradientsFiniteDifferences(t *testing.T) {
	const B, T, V, H = 6, 3, 4, 3
	specs := []Spec{
		{Type: "token_ce"},
		{Type: "token_ce", Kwargs: map[string]any{"label_smoothing": 0.2}},
		{Type: "margin_ranking", Kwargs: map[string]any{"margin": 5}},
		{Type: "margin_ranking", Kwargs: map[string]any{"margin": 5, "normalize": "mean"}},
		{Type: "contrastive", Kwargs: map[string]any{"temperature": 0.5}},
		{Type: "contrastive", Kwargs: map[string]any{"temperature": 0.7, "group_size": 6}},
		{Type: "mse", Kwargs: map[string]any{"head_token": 2}},
		{Type: "mse", Kwargs: map[string]any{"head_token": 3, "pooling": "last"}},
		{Type: "importance_sampling", Kwargs: map[string]any{"entropy_coef": 0.1}},
		{Type: "ppo"},
		{Type: "ppo", Kwargs: map[string]any{"kl_coef": 0.3, "entropy_coef": 0.05}},
		{Type: "dpo", Kwargs: map[string]any{"beta": 0.5}},
	}
	rng := rand.New(rand.NewPCG(7, 11))
	for _, s := range specs {
		l := resolve(t, s.Type, s.Kwargs)
		P := B / l.Group()
		x := randomCase(rng, B, T, V, H, P)
		coef := make([]float64, P)
		for i := range coef {
			coef[i] = 0.5 + rng.Float64()
		}
		h := newHarness(t, l)
		g := h.run(x, coef)
		const eps = 1e-6
		worst := 0.0
		check := func(what string, p *float64, analytic float64) {
			old := *p
			*p = old + eps
			up := h.run(x, coef).total
			*p = old - eps
			down := h.run(x, coef).total
			*p = old
			fd := (up - down) / (2 * eps)
			d := math.Abs(fd - analytic)
			worst = math.Max(worst, d)
			if d > 1e-6*math.Max(1, math.Abs(fd)) {
				t.Errorf("%s %s: analytic %.9g, finite differences %.9g", s.Key(), what, analytic, fd)
			}
		}
		nonzero := 0.0
		for b := range B {
			for tp := range T {
				for v := range V {
					check("d/dlogits", &x.logits[b][tp][v], g.dLogits[(b*T+tp)*V+v])
					nonzero += math.Abs(g.dLogits[(b*T+tp)*V+v])
				}
				for k := range H {
					check("d/dhidden", &x.hidden[b][tp][k], g.dHidden[(b*T+tp)*H+k])
					nonzero += math.Abs(g.dHidden[(b*T+tp)*H+k])
				}
			}
		}
		if nonzero == 0 {
			t.Errorf("%s: the gradient is identically zero", s.Key())
		}
		t.Logf("%-55s worst |analytic − FD| = %.2g", s.Key(), worst)
	}
}

func TestLogProbSurrogate(t *testing.T) {
	// The surrogate's gradient with respect to logp_t is g_t at target
	// positions: check d/dlogits = Σ_t g_t (onehot − p).
	x := pairCase()
	x.lpg = [][]float64{{0.7, -0.2}, {1.5, 9}} // 9 sits at a non-target position and is ignored
	h := newHarness(t, LogProbSurrogate())
	g := h.run(x, []float64{1, 1})
	for b := range 2 {
		for tp := range 2 {
			lp := logSoftmax(x.logits[b][tp])
			for v := range 3 {
				want := 0.0
				if x.weights[b][tp] > 0 {
					want = -x.lpg[b][tp] * math.Exp(lp[v])
					if int32(v) == x.targets[b][tp] {
						want += x.lpg[b][tp]
					}
				}
				near(t, "surrogate gradient", g.dLogits[(b*2+tp)*3+v], want, 1e-12)
			}
		}
	}
	near(t, "surrogate value", g.perExample[0], 0.7*x.lp(0, 0)-0.2*x.lp(0, 1), 1e-12)
}

func TestResolveErrors(t *testing.T) {
	cases := []struct {
		s    Spec
		want string
	}{
		{Spec{Type: "nope"}, `unknown loss type "nope"`},
		{Spec{Type: "token_ce", Kwargs: map[string]any{"smoothing": 0.1}}, `unknown kwarg "smoothing"`},
		{Spec{Type: "token_ce", Kwargs: map[string]any{"label_smoothing": 1.5}}, "label_smoothing"},
		{Spec{Type: "token_ce", Kwargs: map[string]any{"ignore_index": 1.5}}, "kwargs.ignore_index"},
		{Spec{Type: "margin_ranking", Kwargs: map[string]any{"normalize": "max"}}, "kwargs.normalize"},
		{Spec{Type: "margin_ranking", Kwargs: map[string]any{"margin": "big"}}, "kwargs.margin"},
		{Spec{Type: "contrastive", Kwargs: map[string]any{"group_size": 2}}, "kwargs.group_size"},
		{Spec{Type: "contrastive", Kwargs: map[string]any{"temperature": 0}}, "kwargs.temperature"},
		{Spec{Type: "mse"}, "kwargs.head_token is required"},
		{Spec{Type: "mse", Kwargs: map[string]any{"head_token": -1}}, "kwargs.head_token"},
		{Spec{Type: "mse", Kwargs: map[string]any{"head_token": 1, "pooling": "max"}}, "kwargs.pooling"},
		{Spec{Type: "importance_sampling", Kwargs: map[string]any{"clip": 1}}, `unknown kwarg "clip"`},
		{Spec{Type: "ppo", Kwargs: map[string]any{"clip_low_threshold": 1.5}}, "kwargs.clip_low_threshold"},
		{Spec{Type: "ppo", Kwargs: map[string]any{"clip_high_threshold": 0.5}}, "kwargs.clip_high_threshold"},
		{Spec{Type: "ppo", Kwargs: map[string]any{"kl_coef": -1}}, "kwargs.kl_coef"},
		{Spec{Type: "ppo", Kwargs: map[string]any{"clip_epsilon": 0.2}}, `unknown kwarg "clip_epsilon"`},
		{Spec{Type: "dpo", Kwargs: map[string]any{"beta": -0.1}}, "kwargs.beta"},
		{Spec{Type: "dpo", Kwargs: map[string]any{"label_smoothing": 0.1}}, `unknown kwarg "label_smoothing"`},
	}
	for _, c := range cases {
		if _, err := Resolve(c.s); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v does not name %q", c.s, err, c.want)
		}
	}
}

func TestNeeds(t *testing.T) {
	cases := []struct {
		s     Spec
		needs []Field
		group int
	}{
		{Spec{}, nil, 1},
		{Spec{Type: "importance_sampling"}, []Field{FieldAdvantages, FieldSamplingLogProbs}, 1},
		{Spec{Type: "ppo"}, []Field{FieldAdvantages, FieldSamplingLogProbs}, 1},
		{Spec{Type: "ppo", Kwargs: map[string]any{"kl_coef": 0.1}}, []Field{FieldAdvantages, FieldSamplingLogProbs, FieldReferenceLogProbs}, 1},
		{Spec{Type: "dpo"}, []Field{FieldReferenceLogProbs}, 2},
		{Spec{Type: "margin_ranking"}, nil, 2},
		{Spec{Type: "contrastive", Kwargs: map[string]any{"group_size": 5}}, nil, 5},
		{Spec{Type: "mse", Kwargs: map[string]any{"head_token": 3}}, []Field{FieldTargets}, 1},
	}
	for _, c := range cases {
		l, err := Resolve(c.s)
		if err != nil {
			t.Fatal(err)
		}
		if l.Group() != c.group || len(l.Needs) != len(c.needs) {
			t.Errorf("%+v: group %d needs %v, want %d %v", c.s, l.Group(), l.Needs, c.group, c.needs)
			continue
		}
		for i := range c.needs {
			if l.Needs[i] != c.needs[i] {
				t.Errorf("%+v: needs %v, want %v", c.s, l.Needs, c.needs)
			}
		}
	}
	ce, _ := Resolve(Spec{Type: "token_ce", Kwargs: map[string]any{"ignore_index": 0}})
	if ce.Ignore() != 0 {
		t.Errorf("ignore_index 0: Ignore() = %d", ce.Ignore())
	}
	if l, _ := Resolve(Spec{}); l.Ignore() != IgnoreIndex {
		t.Errorf("default Ignore() = %d", l.Ignore())
	}
}

func TestRegistry(t *testing.T) {
	r := NewRegistry()
	type kw struct {
		Gamma float64 `json:"gamma"`
	}
	focal := func(k map[string]any) (Loss, error) {
		c := kw{Gamma: 2}
		if err := DecodeKwargs(k, &c); err != nil {
			return Loss{}, err
		}
		return Loss{Func: func(out Outputs, b Batch) Result {
			_, lp := TokenLogProbs(out, b)
			p := Exp(lp)
			tok := Mul(Neg(lp), Pow(OneMinus(p), Scalar(lp.Graph(), lp.DType(), c.Gamma)))
			return Result{PerExample: ReduceSum(Mul(tok, TargetMask(b)), -1)}
		}}, nil
	}
	if err := r.Register("focal", focal); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"focal", "token_ce", "cross_entropy"} {
		if err := r.Register(name, focal); !errors.Is(err, ErrDuplicate) {
			t.Errorf("Register(%q) twice: %v, want ErrDuplicate", name, err)
		}
	}
	for _, bad := range []string{"", "Focal", "1x", "a-b", strings.Repeat("a", 65)} {
		if err := r.Register(bad, focal); err == nil {
			t.Errorf("Register(%q) accepted", bad)
		}
	}
	if _, err := r.Resolve(Spec{Type: "focal", Kwargs: map[string]any{"alpha": 1}}); err == nil ||
		!strings.Contains(err.Error(), `loss: focal: unknown kwarg "alpha" (allowed: gamma)`) {
		t.Errorf("unknown kwarg: %v", err)
	}
	l, err := r.Resolve(Spec{Type: "focal", Kwargs: map[string]any{"gamma": 0}})
	if err != nil {
		t.Fatal(err)
	}
	// With γ = 0 focal loss is the summed NLL.
	x := pairCase()
	g := newHarness(t, l).run(x, []float64{1, 1})
	near(t, "focal γ=0", g.perExample[0], -(x.lp(0, 0) + x.lp(0, 1)), 1e-12)
	// The isolated registry does not leak into the default one.
	if _, err := Resolve(Spec{Type: "focal"}); !errors.Is(err, ErrUnknownLoss) {
		t.Errorf("default registry resolved focal: %v", err)
	}
	names := r.Names()
	if !sort.StringsAreSorted(names) || len(names) != len(builtins)+1 {
		t.Errorf("Names() = %v", names)
	}
}

func TestSpecKey(t *testing.T) {
	a := Spec{Type: "ppo", Kwargs: map[string]any{"kl_coef": 0.1, "clip_low_threshold": 0.7}}
	b := Spec{Type: "ppo", Kwargs: map[string]any{"clip_low_threshold": 0.7, "kl_coef": 0.1}}
	if a.Key() != b.Key() || (Spec{}).Key() != (Spec{Type: "token_ce"}).Key() || a.Key() == (Spec{Type: "ppo"}).Key() {
		t.Errorf("keys: %q %q", a.Key(), b.Key())
	}
}

func TestGraphKeys(t *testing.T) {
	key := func(typ string, kw map[string]any) string { return resolve(t, typ, kw).Key }
	same := [][2]string{
		{key("ppo", map[string]any{"kl_coef": 0.1}), key("ppo", map[string]any{"kl_coef": 0.7, "clip_low_threshold": 0.5})},
		{key("token_ce", map[string]any{"label_smoothing": 0.1}), key("token_ce", map[string]any{"label_smoothing": 0.2})},
		{key("importance_sampling", map[string]any{"entropy_coef": 0.1}), key("importance_sampling", map[string]any{"entropy_coef": -0.2})},
		{key("dpo", nil), key("dpo", map[string]any{"beta": 3})},
		{key("contrastive", nil), key("contrastive", map[string]any{"temperature": 1})},
	}
	for _, p := range same {
		if p[0] != p[1] || p[0] == "" {
			t.Errorf("keys %q and %q should be the same graph", p[0], p[1])
		}
	}
	differ := [][2]string{
		{key("ppo", nil), key("ppo", map[string]any{"kl_coef": 0.1})},
		{key("token_ce", nil), key("token_ce", map[string]any{"ignore_index": 0})},
		{key("token_ce", nil), key("token_ce", map[string]any{"label_smoothing": 0.1})},
		{key("ppo", nil), key("ppo", map[string]any{"entropy_coef": 0.01})},
		{key("margin_ranking", nil), key("margin_ranking", map[string]any{"normalize": "mean"})},
		{key("contrastive", nil), key("contrastive", map[string]any{"group_size": 4})},
	}
	for _, p := range differ {
		if p[0] == p[1] {
			t.Errorf("keys %q and %q should differ", p[0], p[1])
		}
	}
}
