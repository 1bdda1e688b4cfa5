package loss

import (
	"math"
	"strings"
	"testing"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/tensafe/tensafe/compute"
)

func TestTokenCEHandComputed(t *testing.T) {
	b, err := compute.Backend()
	if err != nil {
		t.Fatal(err)
	}
	// One example, two positions, vocabulary 3.
	logits := [][][]float32{{{1, 2, 3}, {0, 0, 0}}}
	targets := [][]int32{{2, 1}}
	weights := [][]float32{{1, 3}}
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
		fn, err := Resolve(Spec{Type: "token_ce", Kwargs: map[string]any{"label_smoothing": c.eps}})
		if err != nil {
			t.Fatal(err)
		}
		out, err := ExecOnce(b, func(l, tg, w *Node) *Node {
			return fn(Outputs{Logits: l}, Batch{Targets: tg, Weights: w})
		}, tensors.FromValue(logits), tensors.FromValue(targets), tensors.FromValue(weights))
		if err != nil {
			t.Fatal(err)
		}
		got := tensors.MustCopyFlatData[float32](out)[0]
		if math.Abs(float64(got)-c.want) > 1e-5 {
			t.Errorf("ε=%v: loss %v, want %v", c.eps, got, c.want)
		}
	}
}

func TestResolveErrors(t *testing.T) {
	cases := map[string]Spec{
		"nope":            {Type: "nope"},
		"smoothing":       {Type: "token_ce", Kwargs: map[string]any{"smoothing": 0.1}},
		"label_smoothing": {Type: "token_ce", Kwargs: map[string]any{"label_smoothing": 1.5}},
	}
	for want, s := range cases {
		if _, err := Resolve(s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: error %v does not name %q", s, err, want)
		}
	}
}
