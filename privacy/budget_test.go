package privacy

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestBudgetEnforces(t *testing.T) {
	b, err := NewBudget(BudgetConfig{TargetEpsilon: 2, Delta: 1e-5})
	if err != nil {
		t.Fatal(err)
	}
	const q, sigma = 0.01, 1.2
	want, err := MaxStepsFor(t.Context(), 2, 1e-5, q, sigma, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for {
		d, err := b.CanStep(q, sigma)
		if err != nil {
			t.Fatal(err)
		}
		if d.Steps != n+1 || d.TargetEpsilon != 2 || d.Delta != 1e-5 {
			t.Fatalf("decision %+v", d)
		}
		if !d.Allowed {
			if !(d.Epsilon > 2) {
				t.Fatalf("refused at ε %v", d.Epsilon)
			}
			break
		}
		if err := b.RecordStep(q, sigma); err != nil {
			t.Fatal(err)
		}
		n++
		if n > want.Steps+1 {
			t.Fatal("budget did not stop")
		}
	}
	if n != want.Steps {
		t.Errorf("budget allowed %d steps, MaxStepsFor says %d", n, want.Steps)
	}
	s, err := b.Spent()
	if err != nil {
		t.Fatal(err)
	}
	direct, _ := Epsilon([]Run{{q, sigma, n}}, 1e-5, Options{})
	if s.Epsilon != direct.Epsilon || s.Order != direct.Order || s.Steps != n || s.TargetEpsilon != 2 ||
		s.Accountant != AccountantRDP || s.Delta != 1e-5 {
		t.Errorf("spent %+v, direct %+v", s, direct)
	}
	if h := b.History(); len(h) != 1 || h[0] != (Run{q, sigma, n}) {
		t.Errorf("history %v", h)
	}
}

// TestBudgetHeterogeneous: CanStep's ε after the step equals Spent after
// recording it, bit for bit, also across (q, σ) changes.
func TestBudgetHeterogeneous(t *testing.T) {
	for _, acc := range []Accountant{AccountantRDP, AccountantPRV} {
		b, err := NewBudget(BudgetConfig{TargetEpsilon: 100, Delta: 1e-5, Accountant: acc})
		if err != nil {
			t.Fatal(err)
		}
		steps := []Run{{0.01, 1, 3}, {0.02, 1.5, 2}, {0.01, 1, 2}}
		for _, r := range steps {
			for range r.Count {
				d, err := b.CanStep(r.Q, r.Sigma)
				if err != nil {
					t.Fatal(err)
				}
				if err := b.RecordStep(r.Q, r.Sigma); err != nil {
					t.Fatal(err)
				}
				s, err := b.Spent()
				if err != nil {
					t.Fatal(err)
				}
				if s.Epsilon != d.Epsilon {
					t.Fatalf("%s: CanStep ε %v, Spent %v", acc, d.Epsilon, s.Epsilon)
				}
			}
		}
		h := b.History()
		if len(h) != 3 || h[0].Count != 3 || h[2].Count != 2 {
			t.Errorf("history %v", h)
		}
		s, _ := b.Spent()
		direct, _ := Epsilon(steps, 1e-5, Options{Accountant: acc})
		if s.Epsilon != direct.Epsilon || s.Steps != 7 {
			t.Errorf("%s: spent %v, direct %v", acc, s.Epsilon, direct.Epsilon)
		}
	}
}

func TestBudgetRoundTrip(t *testing.T) {
	for _, cfg := range []BudgetConfig{
		{TargetEpsilon: 8, Delta: 1e-5},
		{TargetEpsilon: 3.3, Delta: 1e-6, Conversion: ConversionClassic, Orders: []float64{1.5, 2, 3, 10.25, 64}},
		{TargetEpsilon: 5, Delta: 1e-5, Accountant: AccountantPRV, EpsError: 0.02},
	} {
		b, err := NewBudget(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 25 {
			q := 0.1 / 3 // not exactly representable: must survive exactly
			if i%7 == 6 {
				q = 0.017
			}
			if err := b.RecordStep(q, 1.1+float64(i/10)*0.123456789); err != nil {
				t.Fatal(err)
			}
		}
		data, err := b.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		c, err := ParseBudget(data)
		if err != nil {
			t.Fatalf("%s: %v", data, err)
		}
		again, _ := c.MarshalBinary()
		if !bytes.Equal(data, again) {
			t.Errorf("round trip changed the state:\n%s\n%s", data, again)
		}
		s1, err1 := b.Spent()
		s2, err2 := c.Spent()
		if err1 != nil || err2 != nil || s1.Epsilon != s2.Epsilon || s1.Steps != s2.Steps {
			t.Errorf("spent %+v (%v) vs %+v (%v)", s1, err1, s2, err2)
		}
		// The restored budget keeps going.
		d1, _ := b.CanStep(0.02, 1)
		d2, _ := c.CanStep(0.02, 1)
		if d1 != d2 {
			t.Errorf("decisions differ: %+v %+v", d1, d2)
		}
	}
}

func TestBudgetStateFormat(t *testing.T) {
	b, _ := NewBudget(BudgetConfig{TargetEpsilon: 1, Delta: 1e-5, Orders: []float64{2, 4.5}})
	_ = b.RecordStep(0.5, 2)
	_ = b.RecordStep(0.5, 2)
	data, _ := b.MarshalBinary()
	want := `{"config":{"accountant":"rdp","conversion":"improved","delta":0.00001,"orders":[2,4.5],"target_epsilon":1},"format":"tensafe-privacy-budget/v1","history":[[0.5,2,2]]}`
	if string(data) != want {
		t.Errorf("state\n got %s\nwant %s", data, want)
	}
}

func TestBudgetBadInputLeavesStateUnchanged(t *testing.T) {
	b, _ := NewBudget(BudgetConfig{TargetEpsilon: 1, Delta: 1e-5})
	_ = b.RecordStep(0.01, 1)
	before, _ := b.MarshalBinary()
	for _, s := range []struct{ q, sigma float64 }{{0, 1}, {2, 1}, {math.NaN(), 1}, {0.01, 0}, {0.01, math.Inf(1)}, {0.01, -3}} {
		if err := b.RecordStep(s.q, s.sigma); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("RecordStep(%v, %v): err = %v", s.q, s.sigma, err)
		}
		if _, err := b.CanStep(s.q, s.sigma); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("CanStep(%v, %v): err = %v", s.q, s.sigma, err)
		}
	}
	bad := [][]byte{
		nil,
		[]byte(`{}`),
		[]byte(`{"format":"tensafe-privacy-budget/v2","config":{"target_epsilon":1,"delta":1e-5,"accountant":"rdp"},"history":[]}`),
		[]byte(`{"format":"tensafe-privacy-budget/v1","config":{"target_epsilon":-1,"delta":1e-5,"accountant":"rdp"},"history":[]}`),
		[]byte(`{"format":"tensafe-privacy-budget/v1","config":{"target_epsilon":1,"delta":1e-5,"accountant":"rdp"},"history":[[0.1,1,0]]}`),
		[]byte(`{"format":"tensafe-privacy-budget/v1","config":{"target_epsilon":1,"delta":1e-5,"accountant":"rdp"},"history":[[0.1,1,1.5]]}`),
		[]byte(`{"format":"tensafe-privacy-budget/v1","config":{"target_epsilon":1,"delta":1e-5,"accountant":"rdp"},"history":[[0.1,1,1],[0.1,1,1]]}`),
		[]byte(`{"format":"tensafe-privacy-budget/v1","config":{"target_epsilon":1,"delta":1e-5,"accountant":"rdp"},"history":[[0.1,1,9007199254740992],[0.2,1,1]]}`),
		[]byte(`{"format":"tensafe-privacy-budget/v1","config":{"target_epsilon":1,"delta":1e-5,"accountant":"rdp"},"history":[],"extra":1}`),
		[]byte(`{"format":"tensafe-privacy-budget/v1","format":"x","config":{"target_epsilon":1,"delta":1e-5,"accountant":"rdp"},"history":[]}`),
		[]byte(`{"format":"tensafe-privacy-budget/v1","config":{"target_epsilon":1,"delta":1e-5,"accountant":"rdp"},"history":[]} {}`),
		[]byte(`{"format":"tensafe-privacy-budget/v1","config":{"target_epsilon":1,"delta":1e-5,"accountant":"prv","orders":[2]},"history":[]}`),
	}
	for _, data := range bad {
		if err := b.UnmarshalBinary(data); err == nil {
			t.Errorf("accepted %s", data)
		}
		after, _ := b.MarshalBinary()
		if !bytes.Equal(before, after) {
			t.Fatalf("failed unmarshal of %s changed the budget", data)
		}
	}
	if _, err := NewBudget(BudgetConfig{TargetEpsilon: 1, Delta: 1e-5, Accountant: "gdp"}); err == nil || !strings.Contains(err.Error(), "accountant") {
		t.Errorf("bad accountant: %v", err)
	}
}

// TestBudgetOverspendRecorded: a step that happened is recorded even past the
// target, and Spent says so.
func TestBudgetOverspendRecorded(t *testing.T) {
	b, _ := NewBudget(BudgetConfig{TargetEpsilon: 0.5, Delta: 1e-5})
	for range 3 {
		if err := b.RecordStep(1, 0.8); err != nil {
			t.Fatal(err)
		}
	}
	s, err := b.Spent()
	if err != nil || !(s.Epsilon > s.TargetEpsilon) || s.Steps != 3 {
		t.Errorf("spent %+v, %v", s, err)
	}
	d, _ := b.CanStep(1, 0.8)
	if d.Allowed {
		t.Errorf("over-budget step allowed: %+v", d)
	}
}
