package privacy

import (
	"context"
	"errors"
	"math"
	"testing"
)

// TestPublishedSigma reproduces Opacus's get_noise_multiplier tests
// (pytorch/opacus opacus/tests/accountants_test.py), each checked with
// assertAlmostEqual(noise_multiplier, want, places=4), ε = 8, δ = 1e-5,
// q = 0.04 and the default epsilon_tolerance 0.01.
func TestPublishedSigma(t *testing.T) {
	tests := []struct {
		name  string
		req   SigmaRequest
		acc   Accountant
		want  float64
		steps int64
	}{
		// test_get_noise_multiplier_rdp_epochs: 90 epochs → 1.416.
		{"rdp epochs", SigmaRequest{Epochs: 90}, AccountantRDP, 1.416, 2250},
		// test_get_noise_multiplier_rdp_steps: 2000 steps → 1.3562.
		{"rdp steps", SigmaRequest{Steps: 2000}, AccountantRDP, 1.3562, 2000},
		// test_get_noise_multiplier_prv_epochs: 90 epochs → 1.34765625.
		{"prv epochs", SigmaRequest{Epochs: 90}, AccountantPRV, 1.34765625, 2250},
		// test_get_noise_multiplier_prv_steps: 2000 steps → 1.2915.
		{"prv steps", SigmaRequest{Steps: 2000}, AccountantPRV, 1.2915, 2000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.acc == AccountantPRV && testing.Short() {
				t.Skip("about 4 s of PRV compositions")
			}
			req := tc.req
			req.TargetEpsilon, req.Delta, req.Q = 8, 1e-5, 0.04
			got, err := CalibrateSigma(context.Background(), req, Options{Accountant: tc.acc})
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(got.Sigma-tc.want) > 5e-5 {
				t.Errorf("σ = %v, want %v", got.Sigma, tc.want)
			}
			if got.Steps != tc.steps {
				t.Errorf("steps = %d, want %d", got.Steps, tc.steps)
			}
			// The guarantee: the returned σ spends at most the target, and
			// within the tolerance of it.
			if !(got.Result.Epsilon <= 8 && got.Result.Epsilon >= 8-DefaultSigmaTolerance) {
				t.Errorf("ε(σ) = %v", got.Result.Epsilon)
			}
			check, _ := Epsilon([]Run{{0.04, got.Sigma, got.Steps}}, 1e-5, Options{Accountant: tc.acc})
			if check.Epsilon != got.Result.Epsilon {
				t.Errorf("recomputed ε %v != reported %v", check.Epsilon, got.Result.Epsilon)
			}
		})
	}
}

func TestCalibrateSigmaTolerance(t *testing.T) {
	got, err := CalibrateSigma(context.Background(),
		SigmaRequest{TargetEpsilon: 3, Delta: 1e-6, Q: 0.01, Steps: 5000, Tolerance: 1e-6}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if e := got.Result.Epsilon; !(e <= 3 && e >= 3-1e-6) {
		t.Errorf("ε = %v", e)
	}
	// A classic-conversion calibration needs more noise.
	cls, err := CalibrateSigma(context.Background(),
		SigmaRequest{TargetEpsilon: 3, Delta: 1e-6, Q: 0.01, Steps: 5000, Tolerance: 1e-6}, Options{Conversion: ConversionClassic})
	if err != nil {
		t.Fatal(err)
	}
	if !(cls.Sigma > got.Sigma) {
		t.Errorf("classic σ %v not above improved σ %v", cls.Sigma, got.Sigma)
	}
}

func TestCalibrateSigmaErrors(t *testing.T) {
	ctx := context.Background()
	bad := []struct {
		req   SigmaRequest
		field string
	}{
		{SigmaRequest{TargetEpsilon: 0, Delta: 1e-5, Q: 0.01, Steps: 10}, "epsilon"},
		{SigmaRequest{TargetEpsilon: math.NaN(), Delta: 1e-5, Q: 0.01, Steps: 10}, "epsilon"},
		{SigmaRequest{TargetEpsilon: 1, Delta: 2, Q: 0.01, Steps: 10}, "delta"},
		{SigmaRequest{TargetEpsilon: 1, Delta: 1e-5, Q: 0, Steps: 10}, "q"},
		{SigmaRequest{TargetEpsilon: 1, Delta: 1e-5, Q: 0.01, Steps: -1}, "steps"},
		{SigmaRequest{TargetEpsilon: 1, Delta: 1e-5, Q: 0.01}, "steps"},
		{SigmaRequest{TargetEpsilon: 1, Delta: 1e-5, Q: 0.01, Steps: 5, Epochs: 1}, "steps"},
		{SigmaRequest{TargetEpsilon: 1, Delta: 1e-5, Q: 0.01, Epochs: -1}, "epochs"},
		{SigmaRequest{TargetEpsilon: 1, Delta: 1e-5, Q: 0.01, Epochs: 1e300}, "epochs"},
		{SigmaRequest{TargetEpsilon: 1, Delta: 1e-5, Q: 0.01, Steps: 5, Tolerance: -1}, "tolerance"},
	}
	for _, tc := range bad {
		_, err := CalibrateSigma(ctx, tc.req, Options{})
		var ie *InputError
		if !errors.As(err, &ie) || ie.Field != tc.field {
			t.Errorf("%+v: err = %v, want field %q", tc.req, err, tc.field)
		}
	}
	// A budget no σ ≤ 10^6 reaches.
	_, err := CalibrateSigma(ctx, SigmaRequest{TargetEpsilon: 1e-9, Delta: 1e-12, Q: 1, Steps: 1 << 40}, Options{})
	if !errors.Is(err, ErrBudgetTooSmall) {
		t.Errorf("err = %v, want ErrBudgetTooSmall", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := CalibrateSigma(cancelled, SigmaRequest{TargetEpsilon: 1, Delta: 1e-5, Q: 0.01, Steps: 10}, Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err = %v", err)
	}
}

// TestMaxSteps: the answer n fits the budget and n+1 does not.
func TestMaxSteps(t *testing.T) {
	ctx := context.Background()
	for _, acc := range []Accountant{AccountantRDP, AccountantPRV} {
		if acc == AccountantPRV && testing.Short() {
			continue
		}
		opt := Options{Accountant: acc}
		r, err := MaxStepsFor(ctx, 2, 1e-5, 0.01, 1.2, opt)
		if err != nil {
			t.Fatal(err)
		}
		at, _ := Epsilon([]Run{{0.01, 1.2, r.Steps}}, 1e-5, opt)
		next, _ := Epsilon([]Run{{0.01, 1.2, r.Steps + 1}}, 1e-5, opt)
		if !(at.Epsilon <= 2 && next.Epsilon > 2) || at.Epsilon != r.Result.Epsilon {
			t.Errorf("%s: %d steps: ε = %v, next %v, reported %v", acc, r.Steps, at.Epsilon, next.Epsilon, r.Result.Epsilon)
		}
	}
	// One step already overspends.
	r, err := MaxStepsFor(ctx, 0.01, 1e-5, 1, 0.5, Options{})
	if err != nil || r.Steps != 0 {
		t.Errorf("tiny budget: %+v, %v", r, err)
	}
	// A budget that never runs out within 2^53 steps.
	r, err = MaxStepsFor(ctx, 1e6, 0.5, 1e-9, 1e3, Options{})
	if err != nil || !r.Capped || r.Steps != MaxSteps {
		t.Errorf("huge budget: %+v, %v", r, err)
	}
	if _, err := MaxStepsFor(ctx, 1, 1e-5, 0.01, -1, Options{}); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("σ = -1: err = %v", err)
	}
}
