package compute

import (
	"reflect"
	"slices"
	"sync"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX graph code reads best with its ops unqualified.
	"github.com/gomlx/gomlx/pkg/core/shapes"
)

var (
	installOnce sync.Once
	stockVJP    VJP
)

// InstallFixes replaces GoMLX v0.26.0's DotGeneral gradient with
// matmulVJP. GoMLX offers no per-graph hook for this, only the exported
// registry graph.VJPRegistration; it is written once, before any gradient
// is built, and never again.
func InstallFixes() {
	installOnce.Do(func() {
		stockVJP = VJPRegistration[NodeTypeDotGeneral]
		VJPRegistration[NodeTypeDotGeneral] = matmulVJP
	})
}

// StockDotGeneralVJP returns v0.26.0's own DotGeneral gradient, kept for
// tests and benchmarks that compare against it.
func StockDotGeneralVJP() VJP {
	InstallFixes()
	return stockVJP
}

// MatmulVJP is the replacement DotGeneral gradient, exported for tests.
func MatmulVJP() VJP { return matmulVJP }

// matmulVJP computes the gradients of out = DotGeneral(lhs, rhs) as two
// DotGenerals:
//
//	dLHS = DotGeneral(v, rhs) contracting v's rhs-cross axes with rhs's
//	       cross axes, batch axes aligned; then transposed to lhs's layout.
//	dRHS = DotGeneral(v, lhs) likewise with lhs's cross axes.
//
// The output of a DotGeneral is laid out [batch..., lhsCross..., rhsCross...],
// cross axes in increasing axis order.
func matmulVJP(node *Node, vjpOutputs []*Node, _ shapes.Shape) []*Node {
	v := vjpOutputs[0]
	in := node.Inputs()
	lhs, rhs := in[0], in[1]
	lc, lb, rc, rb := dotGeneralAxes(node)
	lCross := crossAxes(lhs.Rank(), lc, lb)
	rCross := crossAxes(rhs.Rank(), rc, rb)
	nb := len(lb)
	vBatch := iota(0, nb)
	vL := iota(nb, len(lCross))
	vR := iota(nb+len(lCross), len(rCross))
	grad := func(this *Node, thisContract, thisBatch, thisCross []int,
		other *Node, otherContract, otherBatch, otherCross []int, vThisCross, vOtherCross []int) *Node {
		// g = DotGeneral(v, other): contract v's other-cross axes with
		// other's cross axes; batch axes aligned. Result layout:
		// [batch..., v's this-cross (in order)..., other's remaining axes
		// (= other's contracting axes, in increasing axis order)...].
		g := DotGeneral(v, vOtherCross, vBatch, other, otherCross, otherBatch)
		remaining := slices.Clone(otherContract)
		slices.Sort(remaining)
		// Position in g of each of this's axes.
		pos := make([]int, this.Rank())
		for i, ax := range thisBatch {
			pos[ax] = i
		}
		for i, ax := range thisCross {
			pos[ax] = nb + i
		}
		for i, ax := range thisContract {
			// this's i-th contracting axis pairs with other's otherContract[i].
			j := slices.Index(remaining, otherContract[i])
			pos[ax] = nb + len(thisCross) + j
		}
		identity := true
		for i, p := range pos {
			if i != p {
				identity = false
			}
		}
		if !identity {
			g = TransposeAllAxes(g, pos...)
		}
		if g.DType() != this.DType() {
			g = ConvertDType(g, this.DType())
		}
		return g
	}
	dl := grad(lhs, lc, lb, lCross, rhs, rc, rb, rCross, vL, vR)
	dr := grad(rhs, rc, rb, rCross, lhs, lc, lb, lCross, vR, vL)
	return []*Node{dl, dr}
}

func crossAxes(rank int, contract, batch []int) []int {
	var out []int
	for ax := 0; ax < rank; ax++ {
		if !slices.Contains(contract, ax) && !slices.Contains(batch, ax) {
			out = append(out, ax)
		}
	}
	return out
}

func iota(start, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = start + i
	}
	return out
}

// dotGeneralAxes reads a DotGeneral node's axes. GoMLX v0.26.0 keeps them in
// an unexported struct with no accessor; reflection reads them without
// modifying anything. The tests compare matmulVJP with the stock gradient,
// so a change of that struct in another GoMLX version fails loudly.
func dotGeneralAxes(node *Node) (lc, lb, rc, rb []int) {
	in := reflect.ValueOf(node).Elem().FieldByName("inputs")
	if !in.IsValid() || in.IsNil() {
		panic("compute: DotGeneral node without inputs")
	}
	params := in.Elem().Elem()
	read := func(name string) []int {
		f := params.FieldByName(name)
		if !f.IsValid() {
			panic("compute: GoMLX DotGeneral inputs lack field " + name)
		}
		out := make([]int, f.Len())
		for i := range out {
			out[i] = int(f.Index(i).Int())
		}
		return out
	}
	return read("lhsContractingAxes"), read("lhsBatchAxes"), read("rhsContractingAxes"), read("rhsBatchAxes")
}

// UseStockDotGeneralGradient switches between v0.26.0's own DotGeneral
// gradient (true) and matmulVJP (false) for graphs built afterwards. It
// exists for benchmarks that measure the fix; it must not race with graph
// construction.
func UseStockDotGeneralGradient(stock bool) {
	InstallFixes()
	if stock {
		VJPRegistration[NodeTypeDotGeneral] = stockVJP
	} else {
		VJPRegistration[NodeTypeDotGeneral] = matmulVJP
	}
}
