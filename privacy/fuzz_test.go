package privacy

import (
	"bytes"
	"errors"
	"math"
	"testing"
)

// FuzzParseCertificate: any input either fails to parse or is a valid
// certificate whose canonical JSON is exactly the input.
func FuzzParseCertificate(f *testing.F) {
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"format":"tensafe-dp-certificate/v1"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseCertificate(data)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("parsed certificate does not validate: %v", err)
		}
		canon, err := c.CanonicalJSON()
		if err != nil || !bytes.Equal(canon, data) {
			t.Fatalf("canonical form differs from the parsed input (%v)", err)
		}
	})
}

// FuzzBudgetUnmarshal: any input either fails (leaving the budget as it was)
// or restores a budget whose state round-trips exactly.
func FuzzBudgetUnmarshal(f *testing.F) {
	f.Add([]byte(`{"config":{"accountant":"rdp","conversion":"improved","delta":0.00001,"orders":[2,4.5],"target_epsilon":1},"format":"tensafe-privacy-budget/v1","history":[[0.5,2,2]]}`))
	f.Add([]byte(`{"config":{"accountant":"prv","delta":0.00001,"target_epsilon":1},"format":"tensafe-privacy-budget/v1","history":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, _ := NewBudget(BudgetConfig{TargetEpsilon: 1, Delta: 1e-5, Orders: []float64{2, 3}})
		_ = b.RecordStep(0.01, 1)
		before, _ := b.MarshalBinary()
		if err := b.UnmarshalBinary(data); err != nil {
			if after, _ := b.MarshalBinary(); !bytes.Equal(before, after) {
				t.Fatalf("failed unmarshal changed the budget: %v", err)
			}
			return
		}
		out, err := b.MarshalBinary()
		if err != nil {
			t.Fatalf("marshal restored budget: %v", err)
		}
		c, err := ParseBudget(out)
		if err != nil {
			t.Fatalf("re-parse %s: %v", out, err)
		}
		again, _ := c.MarshalBinary()
		if !bytes.Equal(out, again) {
			t.Fatalf("state not stable:\n%s\n%s", out, again)
		}
		cfg := b.Config()
		if cfg.Accountant == AccountantRDP && len(b.History()) <= 3 && len(cfg.Orders) <= 8 {
			s, err := b.Spent()
			if err == nil && (math.IsNaN(s.Epsilon) || s.Epsilon < 0) {
				t.Fatalf("spent ε = %v", s.Epsilon)
			}
		}
	})
}

// FuzzParseOrders: the --orders flag parser never panics and returns only
// valid order lists.
func FuzzParseOrders(f *testing.F) {
	for _, s := range []string{"2,3,4.5", "12..63", "opacus", "default", "tfp-legacy", "1.5, 2..5 ,128", "", "1", "2..1", "nan", "1e3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		orders, err := ParseOrders(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("error not an InputError: %v", err)
			}
			return
		}
		if err := ValidateOrders(orders); err != nil {
			t.Fatalf("ParseOrders(%q) returned invalid orders: %v", s, err)
		}
	})
}

// FuzzEpsilonInputs drives the numeric CLI inputs (q, σ, steps, δ) through
// the RDP accountant: every input is an InputError or a finite ε ≥ 0 (or
// ErrUnbounded), never NaN or a panic.
func FuzzEpsilonInputs(f *testing.F) {
	f.Add(0.04, 1.5, int64(2250), 1e-5)
	f.Add(1.0, 0.5, int64(1), 0.5)
	f.Add(1e-9, 100.0, int64(1)<<53, 1e-12)
	f.Add(0.0, 1.0, int64(-1), 2.0)
	f.Fuzz(func(t *testing.T, q, sigma float64, steps int64, delta float64) {
		orders := []float64{1.5, 2, 8, 64}
		r, err := Epsilon([]Run{{q, sigma, steps}}, delta, Options{Orders: orders})
		if err != nil {
			if !errors.Is(err, ErrInvalidInput) && !errors.Is(err, ErrUnbounded) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if math.IsNaN(r.Epsilon) || math.IsInf(r.Epsilon, 0) || r.Epsilon < 0 {
			t.Fatalf("ε = %v for q=%v σ=%v steps=%d δ=%v", r.Epsilon, q, sigma, steps, delta)
		}
		if d, err := Delta([]Run{{q, sigma, steps}}, r.Epsilon, Options{Orders: orders}); err != nil || math.IsNaN(d.Delta) || d.Delta < 0 || d.Delta > 1 {
			t.Fatalf("δ = %v (%v)", d.Delta, err)
		}
	})
}
