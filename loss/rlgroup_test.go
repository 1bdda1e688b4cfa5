package loss

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestRLGroupValues: with group_size G, importance_sampling and ppo return
// one loss per group of G consecutive rows, equal to the sum of the rows'
// losses with group_size 1; their metrics (token means over the batch) do
// not change.
func TestRLGroupValues(t *testing.T) {
	const B, T, V, H = 6, 3, 4, 3
	rng := rand.New(rand.NewPCG(21, 5))
	x := randomCase(rng, B, T, V, H, B)
	for _, typ := range []string{"importance_sampling", "ppo"} {
		for _, kw := range []map[string]any{{"entropy_coef": 0.1}, {"entropy_coef": 0.1, "kl_coef": 0.2}} {
			if typ == "importance_sampling" && kw["kl_coef"] != nil {
				continue
			}
			perRow := newHarness(t, resolve(t, typ, kw)).run(x, make([]float64, B))
			for _, G := range []int{2, 3, 6} {
				gkw := map[string]any{"group_size": G}
				for k, v := range kw {
					gkw[k] = v
				}
				l := resolve(t, typ, gkw)
				if l.Group() != G {
					t.Fatalf("%s group_size %d: Group() = %d", typ, G, l.Group())
				}
				g := newHarness(t, l).run(x, make([]float64, B/G))
				if len(g.perExample) != B/G {
					t.Fatalf("%s group_size %d: %d per-example losses, want %d", typ, G, len(g.perExample), B/G)
				}
				for p := range B / G {
					var want float64
					for r := p * G; r < (p+1)*G; r++ {
						want += perRow.perExample[r]
					}
					near(t, typ+" group loss", g.perExample[p], want, 1e-12)
				}
				for m, w := range perRow.metrics {
					near(t, typ+" metric "+m, g.metrics[m], w, 1e-12)
				}
			}
		}
	}
	// A hand-computed case: pairCase's two rows as one example.
	x = pairCase()
	l00, l01, l10 := x.lp(0, 0), x.lp(0, 1), x.lp(1, 0)
	r00, r01, r10 := math.Exp(l00-x.samp[0][0]), math.Exp(l01-x.samp[0][1]), math.Exp(l10-x.samp[1][0])
	g := newHarness(t, resolve(t, "importance_sampling", map[string]any{"group_size": 2})).run(x, []float64{0})
	near(t, "importance_sampling pair", g.perExample[0], -(r00*0.5+r01*-1)-r10*2, 1e-12)
}

// TestRLGroupGradients checks the grouped losses' gradients against finite
// differences of Σ_p c_p·loss_p, where c_p weights whole groups.
func TestRLGroupGradients(t *testing.T) {
	const B, T, V, H = 6, 3, 4, 3
	specs := []Spec{
		{Type: "importance_sampling", Kwargs: map[string]any{"group_size": 3, "entropy_coef": 0.1}},
		{Type: "ppo", Kwargs: map[string]any{"group_size": 2}},
		{Type: "ppo", Kwargs: map[string]any{"group_size": 3, "kl_coef": 0.3, "entropy_coef": 0.05}},
	}
	rng := rand.New(rand.NewPCG(13, 17))
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
		nonzero := 0.0
		for b := range B {
			for tp := range T {
				for v := range V {
					p := &x.logits[b][tp][v]
					old := *p
					*p = old + eps
					up := h.run(x, coef).total
					*p = old - eps
					down := h.run(x, coef).total
					*p = old
					fd := (up - down) / (2 * eps)
					analytic := g.dLogits[(b*T+tp)*V+v]
					if math.Abs(fd-analytic) > 1e-6*math.Max(1, math.Abs(fd)) {
						t.Errorf("%s d/dlogits[%d][%d][%d]: analytic %.9g, finite differences %.9g", s.Key(), b, tp, v, analytic, fd)
					}
					nonzero += math.Abs(analytic)
				}
			}
		}
		if nonzero == 0 {
			t.Errorf("%s: the gradient is identically zero", s.Key())
		}
	}
}

func TestRLGroupKwargs(t *testing.T) {
	for _, typ := range []string{"importance_sampling", "ppo"} {
		if l := resolve(t, typ, nil); l.Group() != 1 {
			t.Errorf("%s: default group %d, want 1", typ, l.Group())
		}
		for _, bad := range []any{0, -2, MaxRLGroupSize + 1, 2.5, "4"} {
			_, err := Resolve(Spec{Type: typ, Kwargs: map[string]any{"group_size": bad}})
			if err == nil || !strings.Contains(err.Error(), "kwargs.group_size") {
				t.Errorf("%s group_size %v: error %v does not name kwargs.group_size", typ, bad, err)
			}
		}
		// group_size changes the graph's structure: a different key.
		a, b := resolve(t, typ, nil).Key, resolve(t, typ, map[string]any{"group_size": 4}).Key
		if a == b {
			t.Errorf("%s: group_size 1 and 4 share the graph key %q", typ, a)
		}
	}
}
