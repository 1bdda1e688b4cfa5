package privacy

import (
	"container/heap"
	"math"
)

// Adaptive Gauss–Kronrod 10/21-point quadrature (QUADPACK QK21)
// for the PRV mean, where Opacus calls scipy.integrate.quad.

var gk21x = [11]float64{
	0.995657163025808080735527280689003,
	0.973906528517171720077964012084452,
	0.930157491355708226001207180059508,
	0.865063366688984510732096688423493,
	0.780817726586416897063717578345042,
	0.679409568299024406234327365114874,
	0.562757134668604683339000099272694,
	0.433395394129247190799265943165784,
	0.294392862701460198131126603103866,
	0.148874338981631210884826001129720,
	0,
}

var gk21w = [11]float64{
	0.011694638867371874278064396062192,
	0.032558162307964727478818972459390,
	0.054755896574351996031381300244580,
	0.075039674810919952767043140916190,
	0.093125454583697605535065465083366,
	0.109387158802297641899210590325805,
	0.123491976262065851077208932299524,
	0.134709217311473325928054001771707,
	0.142775938577060080797094273138717,
	0.147739104901338491374841515972068,
	0.149445554002916905664936468389821,
}

// Gauss 10-point weights, for the nodes gk21x[1], gk21x[3], ..., gk21x[9].
var g10w = [5]float64{
	0.066671344308688137593568809893332,
	0.149451349150580593145776339657697,
	0.219086362515982043995534934228163,
	0.269266719309996355091226921569469,
	0.295524224714752870173892994651338,
}

// qk21 returns the 21-point Kronrod estimate of ∫_a^b f and |Kronrod - Gauss|.
func qk21(f func(float64) float64, a, b float64) (float64, float64) {
	c, h := (a+b)/2, (b-a)/2
	fc := f(c)
	k := fc * gk21w[10]
	g := 0.0
	for i := 0; i < 10; i++ {
		dx := h * gk21x[i]
		s := f(c-dx) + f(c+dx)
		k += gk21w[i] * s
		if i%2 == 1 {
			g += g10w[i/2] * s
		}
	}
	return k * h, math.Abs((k - g) * h)
}

type quadSeg struct{ a, b, val, err float64 }
type quadHeap []quadSeg

func (h quadHeap) Len() int           { return len(h) }
func (h quadHeap) Less(i, j int) bool { return h[i].err > h[j].err }
func (h quadHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *quadHeap) Push(x any)        { *h = append(*h, x.(quadSeg)) }
func (h *quadHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// integrate returns ∫_a^b f by globally adaptive bisection (at most limit
// segments) until the summed |Kronrod - Gauss| is below max(epsAbs,
// epsRel·|∫|). That error estimate is very pessimistic for smooth f: the
// Kronrod value is typically exact to rounding well before it is met.
func integrate(f func(float64) float64, a, b, epsAbs, epsRel float64, limit int) float64 {
	v, e := qk21(f, a, b)
	h := &quadHeap{{a, b, v, e}}
	total, totalErr := v, e
	for h.Len() < limit && totalErr > math.Max(epsAbs, epsRel*math.Abs(total)) {
		s := heap.Pop(h).(quadSeg)
		m := (s.a + s.b) / 2
		v1, e1 := qk21(f, s.a, m)
		v2, e2 := qk21(f, m, s.b)
		total += v1 + v2 - s.val
		totalErr += e1 + e2 - s.err
		heap.Push(h, quadSeg{s.a, m, v1, e1})
		heap.Push(h, quadSeg{m, s.b, v2, e2})
	}
	// Re-sum to avoid drift from the running updates.
	total = 0
	for _, s := range *h {
		total += s.val
	}
	return total
}
