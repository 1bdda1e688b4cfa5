package privacy

import (
	"math"
	"slices"
)

// Limits on RDP orders. Integer orders cost α+1 terms each, so an order list
// is bounded to keep one RDP vector computation cheap.
const (
	MaxOrder      = 10000
	MaxOrderCount = 512
	// maxFracTerms caps the series for one fractional order. The series needs
	// about σ²·ln(1/q) terms; beyond the cap (σ ≳ 35 at q = 0.01) the order is
	// left out (its RDP set to +Inf), which can only make ε larger, never
	// smaller, as dp_accounting does after 1000 terms.
	maxFracTerms = 20000
)

// OpacusOrders are Opacus's RDPAccountant.DEFAULT_ALPHAS:
// 1 + x/10 for x in 1..99, then the integers 12..63.
func OpacusOrders() []float64 {
	o := make([]float64, 0, 99+52)
	for x := 1; x < 100; x++ {
		o = append(o, 1+float64(x)/10.0)
	}
	for a := 12; a < 64; a++ {
		o = append(o, float64(a))
	}
	return o
}

// DefaultOrders are OpacusOrders plus dp_accounting's large orders 128, 256,
// 512 and 1024, which matter for small ε and large σ.
func DefaultOrders() []float64 {
	return append(OpacusOrders(), 128, 256, 512, 1024)
}

// TFPrivacyLegacyOrders are the orders of TF Privacy's compute_dp_sgd_privacy
// (and the MNIST tutorial): 1.25, 1.5, 1.75, 2, 2.25, 2.5, 3, 3.5, 4, 4.5,
// 5..63, 128, 256, 512.
func TFPrivacyLegacyOrders() []float64 {
	o := []float64{1.25, 1.5, 1.75, 2, 2.25, 2.5, 3, 3.5, 4, 4.5}
	for a := 5; a < 64; a++ {
		o = append(o, float64(a))
	}
	return append(o, 128, 256, 512)
}

// ValidateOrders checks an order list: 1 to MaxOrderCount finite orders, each
// in (1, MaxOrder], no duplicates.
func ValidateOrders(orders []float64) error {
	if len(orders) == 0 {
		return inputErr("orders", "must list at least one order")
	}
	if len(orders) > MaxOrderCount {
		return inputErr("orders", "at most %d orders, got %d", MaxOrderCount, len(orders))
	}
	seen := make(map[float64]bool, len(orders))
	for i, a := range orders {
		if math.IsNaN(a) || !(a > 1) || a > MaxOrder {
			return inputErr("orders", "order %d is %v; each must be in (1, %d]", i, a, MaxOrder)
		}
		if seen[a] {
			return inputErr("orders", "order %v is listed twice", a)
		}
		seen[a] = true
	}
	return nil
}

// RDP returns the Rényi DP at order alpha of one step of the
// Poisson-subsampled Gaussian mechanism with sampling rate q and noise
// multiplier sigma (noise standard deviation over L2 sensitivity). It is
// +Inf where the order cannot be certified.
func RDP(q, sigma, alpha float64) (float64, error) {
	if err := validateQSigma(q, sigma); err != nil {
		return 0, err
	}
	if math.IsNaN(alpha) || !(alpha > 1) || alpha > MaxOrder {
		return 0, inputErr("order", "must be in (1, %d], got %v", MaxOrder, alpha)
	}
	var lg []float64
	if alpha == math.Trunc(alpha) {
		lg = lgammaTable(int(alpha))
	}
	return rdpOrder(q, sigma, alpha, lg), nil
}

// RDPVector returns RDP(q, sigma, α) for each α in orders.
func RDPVector(q, sigma float64, orders []float64) ([]float64, error) {
	if err := validateQSigma(q, sigma); err != nil {
		return nil, err
	}
	if err := ValidateOrders(orders); err != nil {
		return nil, err
	}
	return rdpVector(q, sigma, orders), nil
}

func rdpVector(q, sigma float64, orders []float64) []float64 {
	maxInt := 0
	for _, a := range orders {
		if a == math.Trunc(a) && int(a) > maxInt {
			maxInt = int(a)
		}
	}
	lg := lgammaTable(maxInt)
	out := make([]float64, len(orders))
	for i, a := range orders {
		out[i] = rdpOrder(q, sigma, a, lg)
	}
	return out
}

// lgammaTable returns lg[k] = log Γ(k+1) = log k! for k = 0..n.
func lgammaTable(n int) []float64 {
	lg := make([]float64, n+1)
	for k := range lg {
		lg[k], _ = math.Lgamma(float64(k) + 1)
	}
	return lg
}

// rdpOrder is Opacus's _compute_rdp for a validated (q, σ, α); lg must hold
// log k! up to k = α when α is an integer.
func rdpOrder(q, sigma, alpha float64, lg []float64) float64 {
	if q == 1 {
		return alpha / (2 * sigma * sigma)
	}
	var logA float64
	if alpha == math.Trunc(alpha) {
		logA = logAInt(q, sigma, int(alpha), lg)
	} else {
		logA = logAFrac(q, sigma, alpha)
	}
	r := logA / (alpha - 1)
	if math.IsNaN(r) {
		return math.Inf(1)
	}
	return r
}

// logAInt computes log A_α for integer α (Mironov, Talwar, Zhang 2019,
// Section 3.3): A_α = Σ_{i=0..α} C(α,i) q^i (1-q)^(α-i) exp((i²-i)/(2σ²)).
// Opacus _compute_log_a_for_int_alpha; the binomial in log space via lgamma
// as dp_accounting's _log_comb, so orders above 1029 do not overflow.
func logAInt(q, sigma float64, alpha int, lg []float64) float64 {
	logA := math.Inf(-1)
	logq, log1mq := math.Log(q), math.Log1p(-q)
	s2 := 2 * sigma * sigma
	for i := 0; i <= alpha; i++ {
		fi := float64(i)
		logCoef := lg[alpha] - lg[i] - lg[alpha-i] + fi*logq + float64(alpha-i)*log1mq
		s := logCoef + (fi*fi-fi)/s2
		logA = logAdd(logA, s)
	}
	return logA
}

// logAFrac computes log A_α for fractional α as Opacus's
// _compute_log_a_for_frac_alpha: the two halves of the integral split at
// z0, each a series whose terms carry the sign of C(α, i); it stops when
// both terms fall below e^-30.
func logAFrac(q, sigma, alpha float64) float64 {
	logA0, logA1 := math.Inf(-1), math.Inf(-1)
	z0 := sigma*sigma*math.Log(1/q-1) + 0.5
	logq, log1mq := math.Log(q), math.Log1p(-q)
	s2 := 2 * sigma * sigma
	sq2s := math.Sqrt2 * sigma
	lgA1, _ := math.Lgamma(alpha + 1)
	log05 := math.Log(0.5)
	for i := 0; i < maxFracTerms; i++ {
		fi := float64(i)
		// C(α, i) = Γ(α+1) / (Γ(i+1) Γ(α-i+1)); only Γ(α-i+1) can be negative.
		lgI, _ := math.Lgamma(fi + 1)
		lgJ, sign := math.Lgamma(alpha - fi + 1)
		logCoef := lgA1 - lgI - lgJ
		j := alpha - fi

		logT0 := logCoef + fi*logq + j*log1mq
		logT1 := logCoef + j*logq + fi*log1mq

		logE0 := log05 + logErfc((fi-z0)/sq2s)
		logE1 := log05 + logErfc((z0-j)/sq2s)

		logS0 := logT0 + (fi*fi-fi)/s2 + logE0
		logS1 := logT1 + (j*j-j)/s2 + logE1

		if sign > 0 {
			logA0 = logAdd(logA0, logS0)
			logA1 = logAdd(logA1, logS1)
		} else {
			var ok0, ok1 bool
			logA0, ok0 = logSub(logA0, logS0)
			logA1, ok1 = logSub(logA1, logS1)
			if !ok0 || !ok1 {
				return math.Inf(1) // Opacus raises; leave the order out.
			}
		}
		if math.Max(logS0, logS1) < -30 {
			return logAdd(logA0, logA1)
		}
	}
	return math.Inf(1)
}

func validateQSigma(q, sigma float64) error {
	if math.IsNaN(q) || !(q > 0) || q > 1 {
		return inputErr("q", "sampling rate must be in (0, 1], got %v", q)
	}
	if math.IsNaN(sigma) || !(sigma > 0) || math.IsInf(sigma, 1) {
		return inputErr("sigma", "noise multiplier must be positive and finite, got %v", sigma)
	}
	return nil
}

func minMax(xs []float64) (lo, hi float64) {
	return slices.Min(xs), slices.Max(xs)
}
