package privacy

import "math"

// Log-space arithmetic, as in Opacus opacus/accountants/analysis/rdp.py and
// TF Privacy rdp_accountant.py: a number x ≥ 0 is carried as log x, with 0 as
// -Inf, so that sums of terms far outside float64's range stay exact.

// logAdd returns log(exp(logx) + exp(logy)).
func logAdd(logx, logy float64) float64 {
	a, b := math.Min(logx, logy), math.Max(logx, logy)
	if math.IsInf(a, -1) { // adding 0
		return b
	}
	// exp(a) + exp(b) = (exp(a - b) + 1) * exp(b)
	return math.Log1p(math.Exp(a-b)) + b
}

// logSub returns log(exp(logx) - exp(logy)); ok is false when the result
// would be negative.
func logSub(logx, logy float64) (r float64, ok bool) {
	if logx < logy {
		return math.NaN(), false
	}
	if math.IsInf(logy, -1) { // subtracting 0
		return logx, true
	}
	if logx == logy {
		return math.Inf(-1), true
	}
	d := logx - logy
	em := math.Expm1(d)
	if math.IsInf(em, 1) {
		// Python's math.expm1 raises OverflowError here and Opacus then
		// returns logx; exp(logy) is negligible next to exp(logx).
		return logx, true
	}
	return math.Log(em) + logy, true
}

// logErfc returns log(erfc(x)) accurately also where erfc(x) underflows.
// (Opacus computes it as log 2 + log_ndtr(-x√2).)
func logErfc(x float64) float64 {
	if x < 26 {
		// erfc(26) ≈ 5.7e-296 is still a normal float64 and Go's Erfc is
		// accurate to about 1 ulp relative on the whole range.
		return math.Log(math.Erfc(x))
	}
	// Asymptotic expansion, erfc(x) = exp(-x²)/(x√π) · Σ (-1)^n (2n-1)!!/(2x²)^n;
	// for x ≥ 26 its terms shrink by at least 2n/1352 each, so a few reach
	// full precision.
	u := 1 / (2 * x * x)
	sum, term := 1.0, 1.0
	for n := 1; n < 40; n++ {
		term *= -float64(2*n-1) * u
		sum += term
		if math.Abs(term) < 1e-18 {
			break
		}
	}
	return -x*x - math.Log(x) - 0.5*math.Log(math.Pi) + math.Log(sum)
}
