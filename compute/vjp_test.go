package compute

import (
	"math"
	"math/rand/v2"
	"testing"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

func randTensor(rng *rand.Rand, dims ...int) *tensors.Tensor {
	n := 1
	for _, d := range dims {
		n *= d
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return tensors.FromFlatDataAndDimensions(v, dims...)
}

// TestMatmulVJPMatchesStock compares the replacement DotGeneral gradient
// with v0.26.0's own on contractions of every layout the model uses.
func TestMatmulVJPMatchesStock(t *testing.T) {
	b, err := New("go:ops_sequential")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		eq       string
		lhs, rhs []int
	}{
		{"ij,jk->ik", []int{3, 4}, []int{4, 5}},
		{"bti,oi->bto", []int{2, 3, 4}, []int{5, 4}},
		{"btd,brd->btr", []int{2, 3, 4}, []int{2, 5, 4}},
		{"btr,bor->bto", []int{2, 3, 5}, []int{2, 6, 5}},
		{"bqkgd,bksd->bkgqs", []int{2, 3, 2, 2, 4}, []int{2, 2, 5, 4}},
		{"bkgqs,bksd->bqkgd", []int{2, 2, 2, 3, 5}, []int{2, 2, 5, 4}},
		{"abchd,oh->abcod", []int{2, 3, 2, 2, 4}, []int{2, 2}},
		{"bth,vh->btv", []int{2, 3, 4}, []int{7, 4}},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range cases {
		lhs, rhs := randTensor(rng, c.lhs...), randTensor(rng, c.rhs...)
		grads := func(vjp VJP) []*tensors.Tensor {
			exec, err := NewExec(b, func(l, r *Node) []*Node {
				VJPRegistration[NodeTypeDotGeneral] = vjp
				defer func() { VJPRegistration[NodeTypeDotGeneral] = matmulVJP }()
				out := Einsum(c.eq, l, r)
				// A non-uniform adjoint: weight the output by its own sine.
				loss := ReduceAllSum(Mul(out, Sin(StopGradient(out))))
				return Gradient(loss, l, r)
			})
			if err != nil {
				t.Fatal(err)
			}
			out, err := exec.Exec(lhs, rhs)
			if err != nil {
				t.Fatal(err)
			}
			return out
		}
		want := grads(StockDotGeneralVJP())
		got := grads(matmulVJP)
		for i := range want {
			w, g := tensors.MustCopyFlatData[float32](want[i]), tensors.MustCopyFlatData[float32](got[i])
			if !want[i].Shape().Equal(got[i].Shape()) {
				t.Fatalf("%s: grad %d shape %s, want %s", c.eq, i, got[i].Shape(), want[i].Shape())
			}
			for j := range w {
				if math.Abs(float64(w[j]-g[j])) > 1e-4*(1+math.Abs(float64(w[j]))) {
					t.Fatalf("%s: grad %d[%d] = %v, stock %v", c.eq, i, j, g[j], w[j])
				}
			}
		}
	}
}
