package privacy

import (
	"errors"
	"math"
	"math/cmplx"
	"math/rand/v2"
	"testing"
)

// TestPublishedPRV reproduces Opacus's PRV accountant test.
func TestPublishedPRV(t *testing.T) {
	// pytorch/opacus opacus/tests/accountants_test.py test_prv_accountant:
	// σ = 1.5, q = 0.04, steps = int(90 // 0.04), δ = 1e-5,
	// assertAlmostEqual(epsilon, 6.777395712150674). Python's 90 // 0.04 is
	// 2249.0 (0.04 is slightly above 1/25), so that test runs 2249 steps;
	// eps_error = 0.01, delta_error = δ/1000 (get_epsilon's defaults).
	r, err := Epsilon([]Run{{0.04, 1.5, 2249}}, 1e-5, Options{Accountant: AccountantPRV})
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(r.Epsilon-6.777395712150674) > 5e-8 {
		t.Errorf("ε = %.17g, want 6.777395712150674", r.Epsilon)
	}
	if r.EpsError != 0.01 || r.DeltaError != 1e-8 || !(r.Lower < r.Estimate && r.Estimate < r.Epsilon) {
		t.Errorf("bounds: %+v", r)
	}
	if math.Abs(r.Epsilon-r.Estimate-0.01) > 0.005 || math.Abs(r.Estimate-r.Lower-0.01) > 0.005 {
		t.Errorf("error bounds not about ±eps_error: %+v", r)
	}

	// The issue states the same case with 2250 steps (int(90 / 0.04)):
	// one more step moves ε by far less than the error bound.
	r2, err := Epsilon([]Run{{0.04, 1.5, 2250}}, 1e-5, Options{Accountant: AccountantPRV})
	if err != nil {
		t.Fatal(err)
	}
	if d := r2.Epsilon - 6.777395712150674; d < 0 || d > r2.EpsError {
		t.Errorf("2250 steps: ε = %v, want within eps_error above 6.777395712150674", r2.Epsilon)
	}
	// PRV is tighter than RDP (7.329 here).
	rdp, _ := Epsilon([]Run{{0.04, 1.5, 2250}}, 1e-5, Options{})
	if !(r2.Epsilon < rdp.Epsilon) {
		t.Errorf("PRV ε %v not below RDP ε %v", r2.Epsilon, rdp.Epsilon)
	}
}

// TestPRVExactGaussian: with q = 1 the composition of n Gaussian mechanisms
// is one Gaussian mechanism with σ/√n, whose exact δ(ε) is known in closed
// form (Balle & Wang 2018): δ = Φ(-ε/μ + μ/2) - e^ε Φ(-ε/μ - μ/2), μ = √n/σ.
// The PRV bounds must bracket it.
func TestPRVExactGaussian(t *testing.T) {
	phi := func(x float64) float64 { return 0.5 * math.Erfc(-x/math.Sqrt2) }
	const sigma, n = 4.0, 50
	mu := math.Sqrt(n) / sigma
	exactDelta := func(eps float64) float64 { return phi(-eps/mu+mu/2) - math.Exp(eps)*phi(-eps/mu-mu/2) }
	r, err := Epsilon([]Run{{1, sigma, n}}, 1e-5, Options{Accountant: AccountantPRV})
	if err != nil {
		t.Fatal(err)
	}
	// The exact ε at δ = 1e-5, by bisection on the closed form.
	lo, hi := 0.0, 50.0
	for range 200 {
		mid := (lo + hi) / 2
		if exactDelta(mid) > 1e-5 {
			lo = mid
		} else {
			hi = mid
		}
	}
	if !(r.Lower <= hi && hi <= r.Epsilon) {
		t.Errorf("exact ε = %v outside PRV bounds [%v, %v]", hi, r.Lower, r.Epsilon)
	}
	if math.Abs(r.Estimate-hi) > 1e-3 {
		t.Errorf("PRV estimate %v, exact %v", r.Estimate, hi)
	}
	d, err := Delta([]Run{{1, sigma, n}}, hi, Options{Accountant: AccountantPRV, DeltaError: 1e-9})
	if err != nil {
		t.Fatal(err)
	}
	if !(d.Lower <= 1e-5 && 1e-5 <= d.Delta) || math.Abs(d.Estimate-1e-5) > 1e-7 {
		t.Errorf("δ bounds %+v around exact 1e-5", d)
	}
}

// TestPRVHeterogeneous: changing (q, σ) goes through the convolution tree
// and lands between the homogeneous runs it mixes.
func TestPRVHeterogeneous(t *testing.T) {
	opt := Options{Accountant: AccountantPRV}
	mixed, err := Epsilon([]Run{{0.02, 1.2, 300}, {0.04, 1.5, 300}, {0.01, 1.0, 200}}, 1e-5, opt)
	if err != nil {
		t.Fatal(err)
	}
	rdp, err := Epsilon([]Run{{0.02, 1.2, 300}, {0.04, 1.5, 300}, {0.01, 1.0, 200}}, 1e-5, Options{})
	if err != nil {
		t.Fatal(err)
	}
	part, err := Epsilon([]Run{{0.02, 1.2, 300}, {0.04, 1.5, 300}}, 1e-5, opt)
	if err != nil {
		t.Fatal(err)
	}
	if !(part.Epsilon < mixed.Epsilon && mixed.Epsilon < rdp.Epsilon) {
		t.Errorf("ε: two runs %v, three runs %v, RDP %v", part.Epsilon, mixed.Epsilon, rdp.Epsilon)
	}
}

func TestPRVDomainTooLarge(t *testing.T) {
	_, err := Epsilon([]Run{{0.01, 1, 1 << 40}}, 1e-5, Options{Accountant: AccountantPRV})
	if !errors.Is(err, ErrDomainTooLarge) {
		t.Errorf("err = %v, want ErrDomainTooLarge", err)
	}
}

func naiveDFT(x []complex128, sign float64) []complex128 {
	n := len(x)
	out := make([]complex128, n)
	for k := range out {
		var s complex128
		for j, v := range x {
			s += v * cmplx.Rect(1, sign*2*math.Pi*float64((j*k)%n)/float64(n))
		}
		out[k] = s
	}
	return out
}

func TestDFT(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 17, 30, 64, 97, 100, 128, 250} {
		x := make([]complex128, n)
		for i := range x {
			x[i] = complex(rng.NormFloat64(), rng.NormFloat64())
		}
		d := newDFT(n)
		got := d.forward(x)
		want := naiveDFT(x, -1)
		for k := range got {
			if cmplx.Abs(got[k]-want[k]) > 1e-11*float64(n) {
				t.Fatalf("n=%d: X[%d] = %v, want %v", n, k, got[k], want[k])
			}
		}
		back := d.inverse(got)
		for k := range back {
			if cmplx.Abs(back[k]-x[k]) > 1e-12*float64(n) {
				t.Fatalf("n=%d: inverse[%d] = %v, want %v", n, k, back[k], x[k])
			}
		}
	}
}

func TestConvolveSame(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 2, 5, 8, 11, 20} {
		a, b := make([]float64, n), make([]float64, n)
		for i := range a {
			a[i], b[i] = rng.Float64(), rng.Float64()
		}
		full := make([]float64, 2*n-1)
		for i := range a {
			for j := range b {
				full[i+j] += a[i] * b[j]
			}
		}
		got := convolveSame(a, b)
		for j := range got {
			if want := full[(n-1)/2+j]; math.Abs(got[j]-want) > 1e-12 {
				t.Fatalf("n=%d: same[%d] = %v, want %v", n, j, got[j], want)
			}
		}
	}
}

// TestComposeFourierAlignment: self-composition of a two-point PMF is a
// binomial on the grid, landing at the right t after the roll.
func TestComposeFourierAlignment(t *testing.T) {
	const size, dt = 16, 0.5
	// Domain as createAligned builds it: t_min = -K·dt, size = 2K+2.
	dom := prvDomain{tMin: -7 * dt, tMax: 8 * dt, size: size}
	pmf := make([]float64, size)
	pmf[7], pmf[8] = 0.5, 0.5 // t = 0 and t = 0.5
	for _, n := range []int64{1, 2, 3, 4} {
		c := composeFourier(discretePRV{pmf: pmf, domain: dom}, n)
		ts := c.domain.ts()
		for k := int64(0); k <= n; k++ {
			want := float64(binom(n, k)) / math.Pow(2, float64(n))
			tk := float64(k) * dt
			found := false
			for i, tv := range ts {
				if math.Abs(tv-tk) < 1e-12 {
					found = true
					if math.Abs(c.pmf[i]-want) > 1e-12 {
						t.Errorf("n=%d: P(t=%v) = %v, want %v", n, tk, c.pmf[i], want)
					}
				}
			}
			if !found {
				t.Errorf("n=%d: t=%v not on the grid", n, tk)
			}
		}
	}
}

func binom(n, k int64) int64 {
	r := int64(1)
	for i := int64(1); i <= k; i++ {
		r = r * (n - k + i) / i
	}
	return r
}

func TestIntegrate(t *testing.T) {
	tests := []struct {
		f    func(float64) float64
		a, b float64
		want float64
	}{
		{math.Exp, 0, 1, math.E - 1},
		{math.Sin, 0, math.Pi, 2},
		{func(x float64) float64 { return 1 / (1 + x*x) }, -10, 10, 2 * math.Atan(10)},
		{func(x float64) float64 { return math.Sqrt(x) }, 0, 1, 2.0 / 3},
	}
	for i, tc := range tests {
		if got := integrate(tc.f, tc.a, tc.b, 1e-14, 1e-13, 500); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("%d: ∫ = %.17g, want %.17g", i, got, tc.want)
		}
	}
}

// TestPRVCDF: the CDF is a distribution function and its pieces match the
// closed form at q = 1 (a Gaussian privacy loss N(μ²/2, μ²), μ = 1/σ).
func TestPRVCDF(t *testing.T) {
	sigma := 2.0
	mu := 1 / sigma
	for _, x := range []float64{-1, -0.1, 0, 0.05, 0.3, 1} {
		want := 0.5 * math.Erfc(-(x-mu*mu/2)/(mu*math.Sqrt2))
		if got := prvCDF(1, sigma, x); math.Abs(got-want) > 1e-14 {
			t.Errorf("cdf(%v) = %v, want %v", x, got, want)
		}
	}
	prev := 0.0
	for x := -3.0; x < 3; x += 0.01 {
		c := prvCDF(0.05, 1.1, x)
		if c < prev-1e-15 || c < 0 || c > 1 {
			t.Fatalf("cdf not monotone in [0,1] at %v: %v after %v", x, c, prev)
		}
		prev = c
	}
}

func TestRealDFT(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{2, 4, 6, 10, 14, 16, 34, 100, 194} {
		x := make([]float64, n)
		c := make([]complex128, n)
		for i := range x {
			x[i] = rng.NormFloat64()
			c[i] = complex(x[i], 0)
		}
		r := newRealDFT(n)
		got := r.forward(x)
		want := naiveDFT(c, -1)
		for k := range got {
			if cmplx.Abs(got[k]-want[k]) > 1e-11*float64(n) {
				t.Fatalf("n=%d: X[%d] = %v, want %v", n, k, got[k], want[k])
			}
		}
		back := r.inverse(got)
		for j := range back {
			if math.Abs(back[j]-x[j]) > 1e-12*float64(n) {
				t.Fatalf("n=%d: x[%d] = %v, want %v", n, j, back[j], x[j])
			}
		}
	}
}
