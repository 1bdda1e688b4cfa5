package privacy

import (
	"errors"
	"math"
	"testing"
)

// TestPublishedRDP reproduces published ε values of the RDP accountant.
func TestPublishedRDP(t *testing.T) {
	tests := []struct {
		name   string
		source string
		q      float64
		sigma  float64
		steps  int64
		delta  float64
		orders []float64
		conv   Conversion
		want   float64
		tol    float64
		order  float64 // 0: not published
	}{
		{
			// tensorflow/privacy tutorials/README.md: "compute_dp_sgd_privacy.py
			// --N=60000 --batch_size=256 --noise_multiplier=1.1 --epochs=60
			// --delta=1e-5 ... satisfies differential privacy with eps = 3.01";
			// that script used the classic conversion, the orders
			// 1.25..4.5, 5..63, 128, 256, 512 and steps = ceil(60·60000/256).
			name: "TF Privacy README MNIST", q: 256.0 / 60000, sigma: 1.1, steps: 14063, delta: 1e-5,
			orders: TFPrivacyLegacyOrders(), conv: ConversionClassic, want: 3.01, tol: 0.005,
		},
		{
			// tensorflow/privacy tensorflow_privacy/privacy/analysis/
			// compute_dp_sgd_privacy_test.py, Test0: (60000, 150, 1.3, 15, 1e-5,
			// 0.7242234026109595, 19.0); steps = ceil(15·60000/150) = 6000,
			// improved conversion via dp_accounting, assertAlmostEqual (7 places).
			name: "TF Privacy compute_dp_sgd_privacy Test0", q: 150.0 / 60000, sigma: 1.3, steps: 6000, delta: 1e-5,
			orders: TFPrivacyLegacyOrders(), conv: ConversionImproved, want: 0.7242234026109595, tol: 5e-8, order: 19,
		},
		{
			// Same file, Test1: (100000, 100, 1.0, 30, 1e-7, 1.4154988495444845, 13.0).
			name: "TF Privacy compute_dp_sgd_privacy Test1", q: 100.0 / 100000, sigma: 1.0, steps: 30000, delta: 1e-7,
			orders: TFPrivacyLegacyOrders(), conv: ConversionImproved, want: 1.4154988495444845, tol: 5e-8, order: 13,
		},
		{
			// Same file, Test2: (100000000, 1024, 0.1, 10, 1e-7, 5907982.31138195, 1.25):
			// tiny σ, a fractional optimal order; steps = ceil(10·1e8/1024).
			name: "TF Privacy compute_dp_sgd_privacy Test2", q: 1024.0 / 100000000, sigma: 0.1, steps: 976563, delta: 1e-7,
			orders: TFPrivacyLegacyOrders(), conv: ConversionImproved, want: 5907982.31138195, tol: 5e-8, order: 1.25,
		},
		{
			// pytorch/opacus opacus/tests/accountants_test.py test_rdp_accountant:
			// σ = 1.5, q = 0.04, steps = int(90 / 0.04) = 2250, δ = 1e-5,
			// assertAlmostEqual(epsilon, 7.32911117143), DEFAULT_ALPHAS.
			name: "Opacus test_rdp_accountant", q: 0.04, sigma: 1.5, steps: 2250, delta: 1e-5,
			orders: OpacusOrders(), conv: ConversionImproved, want: 7.32911117143, tol: 5e-8,
		},
		{
			// The same with TenSafe's default orders (Opacus's plus 128..1024):
			// the optimum is a small order, so ε is unchanged.
			name: "Opacus test_rdp_accountant, default orders", q: 0.04, sigma: 1.5, steps: 2250, delta: 1e-5,
			orders: nil, conv: ConversionImproved, want: 7.32911117143, tol: 5e-8,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Epsilon([]Run{{tc.q, tc.sigma, tc.steps}}, tc.delta, Options{Orders: tc.orders, Conversion: tc.conv})
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(r.Epsilon-tc.want) > tc.tol {
				t.Errorf("ε = %.17g, want %.17g ± %g", r.Epsilon, tc.want, tc.tol)
			}
			if tc.order != 0 && r.Order != tc.order {
				t.Errorf("order = %v, want %v", r.Order, tc.order)
			}
			if r.Accountant != AccountantRDP || r.Conversion != tc.conv || r.Steps != tc.steps || r.Delta != tc.delta {
				t.Errorf("result metadata = %+v", r)
			}
		})
	}
}

// TestRDPFullBatch: with q = 1 the mechanism is the plain Gaussian, whose RDP
// is exactly α/(2σ²).
func TestRDPFullBatch(t *testing.T) {
	for _, sigma := range []float64{0.3, 1, 1.1, 7} {
		for _, a := range DefaultOrders() {
			got, err := RDP(1, sigma, a)
			if err != nil {
				t.Fatal(err)
			}
			if want := a / (2 * sigma * sigma); got != want {
				t.Fatalf("RDP(q=1, σ=%v, α=%v) = %v, want %v", sigma, a, got, want)
			}
		}
	}
}

// TestRDPIntegerDirect checks the log-space series against A_α summed
// directly in float64 where that cannot overflow.
func TestRDPIntegerDirect(t *testing.T) {
	for _, tc := range []struct{ q, sigma float64 }{{0.01, 1}, {0.1, 2}, {0.5, 3}, {0.9, 5}} {
		for a := 2; a <= 12; a++ {
			sum := 0.0
			for i := 0; i <= a; i++ {
				binom := 1.0
				for k := 1; k <= i; k++ {
					binom = binom * float64(a-i+k) / float64(k)
				}
				sum += binom * math.Pow(tc.q, float64(i)) * math.Pow(1-tc.q, float64(a-i)) *
					math.Exp(float64(i*i-i)/(2*tc.sigma*tc.sigma))
			}
			want := math.Log(sum) / float64(a-1)
			got, err := RDP(tc.q, tc.sigma, float64(a))
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(got-want) > 1e-12*math.Max(1, want) {
				t.Errorf("RDP(%v, %v, %d) = %.17g, direct sum %.17g", tc.q, tc.sigma, a, got, want)
			}
		}
	}
}

// TestRDPMonotoneInOrder: Rényi divergence is non-decreasing in α, so the
// fractional and integer series must interleave consistently.
func TestRDPMonotoneInOrder(t *testing.T) {
	for _, tc := range []struct{ q, sigma float64 }{{0.004, 1.1}, {0.04, 1.5}, {0.3, 0.8}, {1e-5, 0.5}} {
		v, err := RDPVector(tc.q, tc.sigma, DefaultOrders())
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i < len(v); i++ {
			if v[i] < v[i-1]*(1-1e-12) {
				t.Errorf("q=%v σ=%v: RDP(%v) = %v < RDP(%v) = %v", tc.q, tc.sigma,
					DefaultOrders()[i], v[i], DefaultOrders()[i-1], v[i-1])
			}
		}
	}
}

// TestEpsilonMonotone: ε grows with steps and q and falls with σ.
func TestEpsilonMonotone(t *testing.T) {
	eps := func(q, sigma float64, steps int64) float64 {
		r, err := Epsilon([]Run{{q, sigma, steps}}, 1e-5, Options{})
		if err != nil {
			t.Fatal(err)
		}
		return r.Epsilon
	}
	for _, sigma := range []float64{0.7, 1, 2} {
		prev := 0.0
		for _, steps := range []int64{1, 10, 100, 1000, 10000} {
			e := eps(0.01, sigma, steps)
			if !(e > prev) {
				t.Errorf("σ=%v: ε(%d steps) = %v not > %v", sigma, steps, e, prev)
			}
			prev = e
		}
		prev = 0
		for _, q := range []float64{0.001, 0.01, 0.05, 0.2, 1} {
			e := eps(q, sigma, 100)
			if !(e > prev) {
				t.Errorf("σ=%v: ε(q=%v) = %v not > %v", sigma, q, e, prev)
			}
			prev = e
		}
	}
	prev := math.Inf(1)
	for _, sigma := range []float64{0.5, 0.8, 1, 1.5, 3, 10} {
		e := eps(0.01, sigma, 1000)
		if !(e < prev) {
			t.Errorf("ε(σ=%v) = %v not < %v", sigma, e, prev)
		}
		prev = e
	}
}

// TestHeterogeneousComposition: RDP composes additively, so a history with
// changing (q, σ) spends exactly what its aggregate does, in any order.
func TestHeterogeneousComposition(t *testing.T) {
	a := []Run{{0.01, 1, 300}, {0.02, 1.2, 100}, {0.01, 1, 200}}
	b := []Run{{0.02, 1.2, 100}, {0.01, 1, 500}}
	ra, err := Epsilon(a, 1e-5, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := Epsilon(b, 1e-5, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(ra.Epsilon-rb.Epsilon) > 1e-12 || ra.Steps != 600 {
		t.Errorf("ε = %v vs %v, steps %d", ra.Epsilon, rb.Epsilon, ra.Steps)
	}
	only, _ := Epsilon([]Run{{0.01, 1, 500}}, 1e-5, Options{})
	if !(ra.Epsilon > only.Epsilon) {
		t.Errorf("adding steps did not increase ε: %v vs %v", ra.Epsilon, only.Epsilon)
	}
}

func TestConversions(t *testing.T) {
	h := []Run{{0.01, 1.1, 5000}}
	imp, err := Epsilon(h, 1e-5, Options{Conversion: ConversionImproved})
	if err != nil {
		t.Fatal(err)
	}
	cls, err := Epsilon(h, 1e-5, Options{Conversion: ConversionClassic})
	if err != nil {
		t.Fatal(err)
	}
	if !(imp.Epsilon < cls.Epsilon) {
		t.Errorf("improved ε %v not below classic %v", imp.Epsilon, cls.Epsilon)
	}
	// δ for ε is the inverse of ε for δ: at the returned ε, δ is at most the
	// query's δ (and close to it).
	for _, conv := range []Conversion{ConversionImproved, ConversionClassic} {
		e, _ := Epsilon(h, 1e-5, Options{Conversion: conv})
		d, err := Delta(h, e.Epsilon, Options{Conversion: conv})
		if err != nil {
			t.Fatal(err)
		}
		if d.Delta > 1e-5*(1+1e-9) || d.Delta < 0.5e-5 {
			t.Errorf("%s: δ(ε(1e-5)) = %v", conv, d.Delta)
		}
		if d.Order != e.Order {
			t.Errorf("%s: δ order %v, ε order %v", conv, d.Order, e.Order)
		}
	}
	// Classic conversion by hand at one order: ε = r - log δ/(α-1).
	eps, order, _, err := EpsilonFromRDP([]float64{2}, []float64{0.5}, 1e-5, ConversionClassic)
	if err != nil || order != 2 || eps != 0.5-math.Log(1e-5) {
		t.Errorf("classic = %v at %v (%v)", eps, order, err)
	}
	// Improved conversion by hand: r + log(1-1/α) - log(δα)/(α-1).
	eps, _, _, _ = EpsilonFromRDP([]float64{3}, []float64{0.5}, 1e-5, ConversionImproved)
	if want := 0.5 + math.Log1p(-1.0/3) - math.Log(3e-5)/2; math.Abs(eps-want) > 1e-15*want {
		t.Errorf("improved = %v, want %v", eps, want)
	}
}

func TestEdgeOrderWarning(t *testing.T) {
	// Few steps at large σ want a large order.
	r, err := Epsilon([]Run{{0.001, 20, 10}}, 1e-5, Options{Orders: []float64{2, 3, 4}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Order != 4 || len(r.Warnings) != 1 {
		t.Errorf("order %v, warnings %q", r.Order, r.Warnings)
	}
	r, _ = Epsilon([]Run{{0.04, 1.5, 2250}}, 1e-5, Options{})
	if len(r.Warnings) != 0 {
		t.Errorf("unexpected warnings %q", r.Warnings)
	}
}

func TestLogErfc(t *testing.T) {
	// Against log(erfc) where erfc is representable.
	for x := -5.0; x < 26; x += 0.37 {
		if got, want := logErfc(x), math.Log(math.Erfc(x)); math.Abs(got-want) > 1e-14*math.Max(1, math.Abs(want)) {
			t.Errorf("logErfc(%v) = %v, want %v", x, got, want)
		}
	}
	// The asymptotic branch agrees with the direct one where both work.
	for _, x := range []float64{22, 24, 25.9} {
		u := 1 / (2 * x * x)
		sum, term := 1.0, 1.0
		for n := 1; n < 40; n++ {
			term *= -float64(2*n-1) * u
			sum += term
		}
		asym := -x*x - math.Log(x) - 0.5*math.Log(math.Pi) + math.Log(sum)
		if want := math.Log(math.Erfc(x)); math.Abs(asym-want) > 1e-13*math.Abs(want) {
			t.Errorf("asymptotic log erfc(%v) = %v, direct %v", x, asym, want)
		}
	}
	// Far past underflow it stays finite: log erfc(100) = -10⁴ - log(100√π) + log(1 - 1/(2·10⁴) + O(1e-8)).
	if got := logErfc(100); math.Abs(got-(-10000-math.Log(100*math.Sqrt(math.Pi))+math.Log1p(-5e-5))) > 1e-7 {
		t.Errorf("logErfc(100) = %v", got)
	}
}

func TestBadInput(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	good := Run{0.01, 1, 10}
	tests := []struct {
		name  string
		runs  []Run
		delta float64
		opt   Options
		field string
	}{
		{"q zero", []Run{{0, 1, 10}}, 1e-5, Options{}, "q"},
		{"q negative", []Run{{-0.1, 1, 10}}, 1e-5, Options{}, "q"},
		{"q above one", []Run{{1.5, 1, 10}}, 1e-5, Options{}, "q"},
		{"q NaN", []Run{{nan, 1, 10}}, 1e-5, Options{}, "q"},
		{"sigma zero", []Run{{0.01, 0, 10}}, 1e-5, Options{}, "sigma"},
		{"sigma negative", []Run{{0.01, -1, 10}}, 1e-5, Options{}, "sigma"},
		{"sigma NaN", []Run{{0.01, nan, 10}}, 1e-5, Options{}, "sigma"},
		{"sigma Inf", []Run{{0.01, inf, 10}}, 1e-5, Options{}, "sigma"},
		{"count negative", []Run{{0.01, 1, -1}}, 1e-5, Options{}, "count"},
		{"count zero", []Run{{0.01, 1, 0}}, 1e-5, Options{}, "count"},
		{"steps overflow", []Run{{0.01, 1, MaxSteps}, {0.02, 1, 1}}, 1e-5, Options{}, "steps"},
		{"delta zero", []Run{good}, 0, Options{}, "delta"},
		{"delta one", []Run{good}, 1, Options{}, "delta"},
		{"delta negative", []Run{good}, -1e-5, Options{}, "delta"},
		{"delta NaN", []Run{good}, nan, Options{}, "delta"},
		{"accountant", []Run{good}, 1e-5, Options{Accountant: "gdp"}, "accountant"},
		{"conversion", []Run{good}, 1e-5, Options{Conversion: "fancy"}, "conversion"},
		{"order one", []Run{good}, 1e-5, Options{Orders: []float64{1, 2}}, "orders"},
		{"order NaN", []Run{good}, 1e-5, Options{Orders: []float64{nan}}, "orders"},
		{"order huge", []Run{good}, 1e-5, Options{Orders: []float64{1e9}}, "orders"},
		{"orders empty", []Run{good}, 1e-5, Options{Orders: []float64{}}, "orders"},
		{"order twice", []Run{good}, 1e-5, Options{Orders: []float64{2, 2}}, "orders"},
		{"eps_error", []Run{good}, 1e-5, Options{Accountant: AccountantPRV, EpsError: -1}, "eps_error"},
		{"delta_error NaN", []Run{good}, 1e-5, Options{Accountant: AccountantPRV, DeltaError: nan}, "delta_error"},
		{"delta_error ≥ delta", []Run{good}, 1e-5, Options{Accountant: AccountantPRV, DeltaError: 1e-5}, "delta_error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Epsilon(tc.runs, tc.delta, tc.opt)
			var ie *InputError
			if !errors.As(err, &ie) || !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("err = %v, want an InputError", err)
			}
			if ie.Field != tc.field {
				t.Errorf("field = %q, want %q (%v)", ie.Field, tc.field, err)
			}
		})
	}
	for _, e := range []float64{-1, nan, inf} {
		if _, err := Delta([]Run{good}, e, Options{}); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("Delta(ε=%v): err = %v", e, err)
		}
	}
}

// TestHugeSteps: step counts up to 2^53 give finite, non-NaN answers, and
// beyond that a clear error.
func TestHugeSteps(t *testing.T) {
	for _, n := range []int64{1 << 31, 1 << 40, MaxSteps} {
		r, err := Epsilon([]Run{{1e-6, 5, n}}, 1e-5, Options{})
		if err != nil {
			t.Fatalf("%d steps: %v", n, err)
		}
		if math.IsNaN(r.Epsilon) || math.IsInf(r.Epsilon, 0) || r.Epsilon <= 0 || r.Steps != n {
			t.Errorf("%d steps: %+v", n, r)
		}
		d, err := Delta([]Run{{1e-6, 5, n}}, 1, Options{})
		if err != nil || math.IsNaN(d.Delta) || d.Delta < 0 || d.Delta > 1 {
			t.Errorf("%d steps: δ = %v (%v)", n, d.Delta, err)
		}
	}
	if _, err := Epsilon([]Run{{0.01, 1, MaxSteps + 1}}, 1e-5, Options{}); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("2^53+1 steps: err = %v", err)
	}
	// Huge q·steps/σ²: ε is enormous but finite.
	r, err := Epsilon([]Run{{1, 0.01, MaxSteps}}, 1e-5, Options{})
	if err != nil || math.IsNaN(r.Epsilon) || math.IsInf(r.Epsilon, 0) {
		t.Errorf("q=1 σ=0.01 2^53 steps: %v (%v)", r.Epsilon, err)
	}
}

func TestZeroSteps(t *testing.T) {
	r, err := Epsilon(nil, 1e-5, Options{})
	if err != nil || r.Epsilon != 0 || r.Steps != 0 {
		t.Errorf("no steps: %+v, %v", r, err)
	}
	r, err = Epsilon(nil, 1e-5, Options{Accountant: AccountantPRV})
	if err != nil || r.Epsilon != 0 {
		t.Errorf("no steps, prv: %+v, %v", r, err)
	}
}

func TestUnbounded(t *testing.T) {
	// σ so small that every order's RDP is infinite.
	_, err := Epsilon([]Run{{1, 1e-200, 1}}, 1e-5, Options{})
	if !errors.Is(err, ErrUnbounded) {
		t.Errorf("err = %v, want ErrUnbounded", err)
	}
}

func TestParseOrders(t *testing.T) {
	good := []struct {
		in   string
		want []float64
	}{
		{"2,3,4.5", []float64{2, 3, 4.5}},
		{" 1.5 , 12..14 ,128", []float64{1.5, 12, 13, 14, 128}},
		{"opacus", OpacusOrders()},
		{"default", DefaultOrders()},
		{"tfp-legacy", TFPrivacyLegacyOrders()},
	}
	for _, tc := range good {
		got, err := ParseOrders(tc.in)
		if err != nil {
			t.Errorf("ParseOrders(%q): %v", tc.in, err)
			continue
		}
		if len(got) != len(tc.want) {
			t.Errorf("ParseOrders(%q) = %v", tc.in, got)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("ParseOrders(%q) = %v", tc.in, got)
				break
			}
		}
	}
	for _, in := range []string{"", "1", "0.5", "abc", "2,,3", "NaN", "Inf", "2,2", "3..2", "1..5", "2..100000", "2..x", "1e9", "2..600"} {
		if _, err := ParseOrders(in); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("ParseOrders(%q): err = %v", in, err)
		}
	}
}
