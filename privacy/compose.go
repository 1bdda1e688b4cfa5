package privacy

import (
	"fmt"
	"slices"
)

// Composition of histories. A history lists every application of the
// mechanism that touched the data; the RDP and PRV accountants both compose
// mechanisms by concatenating their histories, so the accountant of "this
// run, and then that run" is the budget of the concatenated history. These
// helpers let a caller that merges two runs (the service's load_state)
// decide whether one history already contains the other and compose them
// otherwise.

// canonical returns runs with adjacent runs of the same (q, σ) merged.
func canonical(runs []Run) []Run {
	out := make([]Run, 0, len(runs))
	for _, r := range runs {
		if n := len(out); n > 0 && out[n-1].Q == r.Q && out[n-1].Sigma == r.Sigma {
			out[n-1].Count += r.Count
			continue
		}
		out = append(out, r)
	}
	return out
}

// HistoryHasPrefix reports whether the steps of prefix, in order, are the
// first steps of history: the same mechanisms (q, σ) in the same order, the
// last of prefix's runs possibly shorter than history's. An empty prefix is
// a prefix of every history. Runs are compared after merging adjacent runs
// of the same (q, σ). Both histories must be valid (ValidateHistory).
//
// Equal values do not prove that two histories come from the same run: the
// caller decides that (a checkpoint saved by the same training client); this
// only checks that the claimed ancestor is consistent with the descendant.
func HistoryHasPrefix(history, prefix []Run) bool {
	h, p := canonical(history), canonical(prefix)
	if len(p) > len(h) {
		return false
	}
	for i, r := range p {
		if r.Q != h[i].Q || r.Sigma != h[i].Sigma {
			return false
		}
		if r.Count > h[i].Count || (r.Count < h[i].Count && i != len(p)-1) {
			return false
		}
	}
	return true
}

// ComposeHistories returns the history of a run that took first's steps and
// then second's: their concatenation, with the runs at the seam merged when
// they have the same (q, σ). It refuses invalid runs and a total of more
// than MaxSteps steps. The inputs are not changed.
func ComposeHistories(first, second []Run) ([]Run, error) {
	n1, err := ValidateHistory(first)
	if err != nil {
		return nil, fmt.Errorf("privacy: compose histories: first: %w", err)
	}
	n2, err := ValidateHistory(second)
	if err != nil {
		return nil, fmt.Errorf("privacy: compose histories: second: %w", err)
	}
	if n2 > MaxSteps-n1 {
		return nil, fmt.Errorf("privacy: compose histories: %w", inputErr("steps", "the composition holds %d + %d steps, more than 2^53", n1, n2))
	}
	return canonical(append(slices.Clone(first), second...)), nil
}

// NewBudgetWithHistory returns a budget of cfg that has recorded history
// (as ParseBudget would restore a state holding them). Adjacent runs of the
// same (q, σ) are merged; an invalid configuration or history is an error.
func NewBudgetWithHistory(cfg BudgetConfig, history []Run) (*Budget, error) {
	b, err := NewBudget(cfg)
	if err != nil {
		return nil, err
	}
	steps, err := ValidateHistory(history)
	if err != nil {
		return nil, fmt.Errorf("privacy: new budget: %w", err)
	}
	b.history, b.steps = canonical(history), steps
	b.agg = aggregate(b.history)
	for i, r := range b.agg {
		b.index[pair{r.Q, r.Sigma}] = i
	}
	return b, nil
}
