package privacy

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

func TestHistoryHasPrefix(t *testing.T) {
	h := []Run{{0.01, 1, 5}, {0.02, 1, 3}, {0.01, 1, 2}}
	for _, c := range []struct {
		name   string
		prefix []Run
		want   bool
	}{
		{"empty", nil, true},
		{"itself", h, true},
		{"first run shorter", []Run{{0.01, 1, 4}}, true},
		{"first run whole", []Run{{0.01, 1, 5}}, true},
		{"into the second run", []Run{{0.01, 1, 5}, {0.02, 1, 1}}, true},
		{"into the last run", []Run{{0.01, 1, 5}, {0.02, 1, 3}, {0.01, 1, 1}}, true},
		{"split runs merge", []Run{{0.01, 1, 2}, {0.01, 1, 3}, {0.02, 1, 2}}, true},
		{"first run longer", []Run{{0.01, 1, 6}}, false},
		{"middle run shorter", []Run{{0.01, 1, 5}, {0.02, 1, 2}, {0.01, 1, 1}}, false},
		{"other sigma", []Run{{0.01, 1.1, 1}}, false},
		{"other q", []Run{{0.02, 1, 1}}, false},
		{"longer than history", append(slices.Clone(h), Run{0.5, 2, 1}), false},
		{"last run longer", []Run{{0.01, 1, 5}, {0.02, 1, 3}, {0.01, 1, 3}}, false},
	} {
		if got := HistoryHasPrefix(h, c.prefix); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	if HistoryHasPrefix(nil, []Run{{0.01, 1, 1}}) || !HistoryHasPrefix(nil, nil) {
		t.Error("prefixes of the empty history")
	}
}

// TestComposeHistories: the composition is the concatenation (seam merged),
// and its ε is the ε of a budget that recorded both runs' steps one by one.
func TestComposeHistories(t *testing.T) {
	a := []Run{{0.01, 1, 5}, {0.02, 1.5, 3}}
	b := []Run{{0.02, 1.5, 2}, {0.01, 1, 4}}
	got, err := ComposeHistories(a, b)
	if err != nil {
		t.Fatal(err)
	}
	want := []Run{{0.01, 1, 5}, {0.02, 1.5, 5}, {0.01, 1, 4}}
	if !slices.Equal(got, want) {
		t.Fatalf("composed %v, want %v", got, want)
	}
	if !slices.Equal(a, []Run{{0.01, 1, 5}, {0.02, 1.5, 3}}) || !slices.Equal(b, []Run{{0.02, 1.5, 2}, {0.01, 1, 4}}) {
		t.Fatal("inputs changed")
	}
	if got, err := ComposeHistories(nil, b); err != nil || !slices.Equal(got, b) {
		t.Fatalf("empty ∘ b = %v, %v", got, err)
	}
	for _, acc := range []Accountant{AccountantRDP, AccountantPRV} {
		cfg := BudgetConfig{TargetEpsilon: 100, Delta: 1e-5, Accountant: acc}
		composed, err := NewBudgetWithHistory(cfg, got)
		if err != nil {
			t.Fatal(err)
		}
		stepped, err := NewBudget(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range [][]Run{a, b} {
			for _, r := range h {
				for range r.Count {
					if err := stepped.RecordStep(r.Q, r.Sigma); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		sc, err := composed.Spent()
		if err != nil {
			t.Fatal(err)
		}
		ss, err := stepped.Spent()
		if err != nil {
			t.Fatal(err)
		}
		if sc.Epsilon != ss.Epsilon || sc.Steps != 14 || composed.Steps() != 14 {
			t.Errorf("%s: composed ε %v (%d steps), stepped %v", acc, sc.Epsilon, sc.Steps, ss.Epsilon)
		}
		one, err := NewBudgetWithHistory(cfg, a)
		if err != nil {
			t.Fatal(err)
		}
		so, _ := one.Spent()
		if !(sc.Epsilon > so.Epsilon) {
			t.Errorf("%s: composed ε %v not above one part's %v", acc, sc.Epsilon, so.Epsilon)
		}
		// Same state bytes as the budget that stepped.
		mc, _ := composed.MarshalBinary()
		ms, _ := stepped.MarshalBinary()
		if !bytes.Equal(mc, ms) {
			t.Errorf("%s: state %s, stepped %s", acc, mc, ms)
		}
	}
}

func TestComposeHistoriesRefuses(t *testing.T) {
	for name, c := range map[string][2][]Run{
		"too many steps": {{{0.01, 1, MaxSteps}}, {{0.01, 1, 1}}},
		"bad q":          {{{0, 1, 1}}, nil},
		"bad sigma":      {nil, {{0.1, -1, 1}}},
		"bad count":      {{{0.1, 1, 0}}, nil},
	} {
		if _, err := ComposeHistories(c[0], c[1]); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("%s: %v, want ErrInvalidInput", name, err)
		}
	}
	if _, err := NewBudgetWithHistory(BudgetConfig{TargetEpsilon: 1, Delta: 1e-5}, []Run{{2, 1, 1}}); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("bad history: %v", err)
	}
	if _, err := NewBudgetWithHistory(BudgetConfig{TargetEpsilon: 0, Delta: 1e-5}, nil); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("bad config: %v", err)
	}
	b, err := NewBudgetWithHistory(BudgetConfig{TargetEpsilon: 1, Delta: 1e-5}, nil)
	if err != nil || b.Steps() != 0 {
		t.Fatalf("empty history: %v", err)
	}
}
