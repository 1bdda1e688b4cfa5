package privacy

import (
	"fmt"
	"math"
	"slices"
	"sync"
)

// BudgetFormat is the format tag of a serialized Budget.
const BudgetFormat = "tensafe-privacy-budget/v1"

// BudgetConfig fixes a budget's target and how it is accounted.
type BudgetConfig struct {
	// TargetEpsilon is the ε that no step may push the run beyond.
	TargetEpsilon float64 `json:"target_epsilon"`
	// Delta is the δ at which ε is accounted.
	Delta float64 `json:"delta"`
	// Accountant is "rdp" (default) or "prv".
	Accountant Accountant `json:"accountant"`
	// Conversion and Orders apply to RDP; NewBudget fills in the defaults
	// (improved, DefaultOrders) so a stored budget is self-describing.
	Conversion Conversion `json:"conversion,omitempty"`
	Orders     []float64  `json:"orders,omitempty"`
	// EpsError and DeltaError apply to PRV; NewBudget fills in the defaults
	// (0.01 and δ/1000).
	EpsError   float64 `json:"eps_error,omitempty"`
	DeltaError float64 `json:"delta_error,omitempty"`
}

// normalize validates c and fills in its defaults.
func (c BudgetConfig) normalize() (BudgetConfig, Options, error) {
	if !finite(c.TargetEpsilon) || !(c.TargetEpsilon > 0) {
		return c, Options{}, inputErr("target_epsilon", "must be positive and finite, got %v", c.TargetEpsilon)
	}
	if err := validateDelta(c.Delta); err != nil {
		return c, Options{}, err
	}
	acc, err := ParseAccountant(string(c.Accountant))
	if err != nil {
		return c, Options{}, err
	}
	c.Accountant = acc
	switch acc {
	case AccountantRDP:
		if c.EpsError != 0 || c.DeltaError != 0 {
			return c, Options{}, inputErr("eps_error", "eps_error and delta_error apply to the prv accountant only")
		}
		if c.Conversion, err = ParseConversion(string(c.Conversion)); err != nil {
			return c, Options{}, err
		}
		if c.Orders == nil {
			c.Orders = DefaultOrders()
		} else {
			c.Orders = slices.Clone(c.Orders)
		}
	case AccountantPRV:
		if c.Conversion != "" || c.Orders != nil {
			return c, Options{}, inputErr("conversion", "conversion and orders apply to the rdp accountant only")
		}
		if c.EpsError == 0 {
			c.EpsError = DefaultEpsError
		}
		if c.DeltaError == 0 {
			c.DeltaError = c.Delta * DefaultDeltaErrorRatio
		}
		if !finite(c.DeltaError) || !(c.DeltaError > 0) || c.DeltaError >= c.Delta {
			return c, Options{}, inputErr("delta_error", "must be in (0, delta), got %v", c.DeltaError)
		}
	}
	opt, err := Options{Accountant: c.Accountant, Conversion: c.Conversion, Orders: c.Orders,
		EpsError: c.EpsError, DeltaError: c.DeltaError}.normalize()
	if err != nil {
		return c, Options{}, err
	}
	return c, opt, nil
}

// Budget enforces an (ε, δ) target over a DP-SGD run: CanStep answers, before
// a step, whether it would keep ε within the target; RecordStep records a step
// that has happened. Its methods are safe for concurrent use, but a check and
// the record that follows it are two calls: callers serialise steps of one
// run (the service's per-session op queue does).
//
// RecordStep is O(1) amortized (the history is run-length encoded and
// aggregated by (q, σ)); an RDP ε query costs O(#distinct (q, σ) × #orders)
// with each (q, σ) pair's RDP vector computed once and cached. A PRV query is
// a full PRV composition (tens to hundreds of milliseconds); its result is
// cached until the history changes.
type Budget struct {
	mu      sync.Mutex
	cfg     BudgetConfig
	opt     Options
	history []Run
	steps   int64
	index   map[pair]int // position in agg
	agg     []Run
	cache   rdpCache // one-step RDP vectors over the orders this accountant uses

	spent *Result // ε of the current history
	probe *probe  // last CanStep answer for the current history
}

type probe struct {
	p   pair
	res Result
	err error
}

// Decision answers CanStep.
type Decision struct {
	// Allowed is true when the step keeps ε ≤ TargetEpsilon.
	Allowed bool
	// Epsilon is the ε the run would have spent after the step (+Inf when
	// it cannot be bounded).
	Epsilon       float64
	TargetEpsilon float64
	Delta         float64
	// Order is the optimal RDP order after the step (RDP only).
	Order float64
	// Steps is the number of steps after the step.
	Steps int64
}

// Spent is what a budget has spent so far.
type Spent struct {
	Result
	TargetEpsilon float64 `json:"target_epsilon"`
}

// NewBudget returns an empty budget.
func NewBudget(cfg BudgetConfig) (*Budget, error) {
	cfg, opt, err := cfg.normalize()
	if err != nil {
		return nil, fmt.Errorf("privacy: new budget: %w", err)
	}
	return &Budget{cfg: cfg, opt: opt, index: map[pair]int{}, cache: rdpCache{}}, nil
}

// Config returns the budget's (normalized) configuration.
func (b *Budget) Config() BudgetConfig {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.cfg
	c.Orders = slices.Clone(c.Orders)
	return c
}

// History returns the run-length encoded steps recorded so far.
func (b *Budget) History() []Run {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.history)
}

// Steps returns the number of steps recorded.
func (b *Budget) Steps() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.steps
}

func (b *Budget) validateStep(q, sigma float64) error {
	if err := validateQSigma(q, sigma); err != nil {
		return err
	}
	if b.steps >= MaxSteps {
		return inputErr("steps", "the budget already holds 2^53 steps")
	}
	return nil
}

// epsilonOf runs the configured accountant over an aggregated history.
func (b *Budget) epsilonOf(agg []Run, steps int64) (Result, error) {
	if len(b.cache) > 4096 {
		clear(b.cache) // probes of ever new (q, σ) must not grow it forever
	}
	return epsilon(agg, steps, b.cfg.Delta, b.opt, b.cache)
}

// CanStep reports whether one more step with sampling rate q and noise
// multiplier sigma would keep ε within the target, and the ε after it. It
// changes nothing.
func (b *Budget) CanStep(q, sigma float64) (Decision, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.validateStep(q, sigma); err != nil {
		return Decision{}, fmt.Errorf("privacy: can step: %w", err)
	}
	p := pair{q, sigma}
	if b.probe == nil || b.probe.p != p {
		agg := slices.Clone(b.agg)
		if i, ok := b.index[p]; ok {
			agg[i].Count++
		} else {
			agg = append(agg, Run{Q: q, Sigma: sigma, Count: 1})
		}
		res, err := b.epsilonOf(agg, b.steps+1)
		b.probe = &probe{p: p, res: res, err: err}
	}
	d := Decision{TargetEpsilon: b.cfg.TargetEpsilon, Delta: b.cfg.Delta, Steps: b.steps + 1}
	switch {
	case b.probe.err == nil:
		d.Epsilon, d.Order = b.probe.res.Epsilon, b.probe.res.Order
		d.Allowed = d.Epsilon <= b.cfg.TargetEpsilon
	case isUnbounded(b.probe.err):
		d.Epsilon = math.Inf(1)
	default:
		return Decision{}, fmt.Errorf("privacy: can step: %w", b.probe.err)
	}
	return d, nil
}

// RecordStep records one step that has happened, with sampling rate q and
// noise multiplier sigma. The noise has been released, so a valid step is
// always recorded, even one that takes ε past the target (Spent then
// reports it); only invalid input is refused, and leaves the budget
// unchanged.
func (b *Budget) RecordStep(q, sigma float64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.validateStep(q, sigma); err != nil {
		return fmt.Errorf("privacy: record step: %w", err)
	}
	p := pair{q, sigma}
	if n := len(b.history); n > 0 && b.history[n-1].Q == q && b.history[n-1].Sigma == sigma {
		b.history[n-1].Count++
	} else {
		b.history = append(b.history, Run{Q: q, Sigma: sigma, Count: 1})
	}
	if i, ok := b.index[p]; ok {
		b.agg[i].Count++
	} else {
		b.index[p] = len(b.agg)
		b.agg = append(b.agg, Run{Q: q, Sigma: sigma, Count: 1})
	}
	b.steps++
	// The last CanStep for this pair computed exactly the new state.
	if b.probe != nil && b.probe.p == p && b.probe.err == nil {
		r := b.probe.res
		b.spent = &r
	} else {
		b.spent = nil
	}
	b.probe = nil
	return nil
}

// Spent returns the ε spent so far (at the budget's δ).
func (b *Budget) Spent() (Spent, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.spent == nil {
		r, err := b.epsilonOf(b.agg, b.steps)
		if err != nil {
			return Spent{}, fmt.Errorf("privacy: spent: %w", err)
		}
		b.spent = &r
	}
	r := *b.spent
	r.Warnings = slices.Clone(r.Warnings)
	return Spent{Result: r, TargetEpsilon: b.cfg.TargetEpsilon}, nil
}

// budgetState is the serialized form of a Budget.
type budgetState struct {
	Format  string       `json:"format"`
	Config  BudgetConfig `json:"config"`
	History []Run        `json:"history"`
}

// MarshalBinary returns the budget's state as canonical JSON (see
// docs/PRIVACY_ACCOUNTING.md): its configuration and run-length history, from
// which every number it reports is recomputed exactly.
func (b *Budget) MarshalBinary() ([]byte, error) {
	b.mu.Lock()
	st := budgetState{Format: BudgetFormat, Config: b.cfg, History: slices.Clone(b.history)}
	b.mu.Unlock()
	if st.History == nil {
		st.History = []Run{}
	}
	out, err := canonicalJSON(st)
	if err != nil {
		return nil, fmt.Errorf("privacy: marshal budget: %w", err)
	}
	return out, nil
}

// UnmarshalBinary restores a state written by MarshalBinary. On error the
// budget is left unchanged.
func (b *Budget) UnmarshalBinary(data []byte) error {
	nb, err := parseBudget(data)
	if err != nil {
		return fmt.Errorf("privacy: unmarshal budget: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cfg, b.opt, b.history, b.steps = nb.cfg, nb.opt, nb.history, nb.steps
	b.index, b.agg, b.cache = nb.index, nb.agg, nb.cache
	b.spent, b.probe = nil, nil
	return nil
}

// ParseBudget decodes a state written by MarshalBinary.
func ParseBudget(data []byte) (*Budget, error) {
	b, err := parseBudget(data)
	if err != nil {
		return nil, fmt.Errorf("privacy: parse budget: %w", err)
	}
	return b, nil
}

func parseBudget(data []byte) (*Budget, error) {
	var st budgetState
	if err := decodeStrict(data, &st); err != nil {
		return nil, err
	}
	if st.Format != BudgetFormat {
		return nil, inputErr("format", "must be %q, got %q", BudgetFormat, st.Format)
	}
	if st.History == nil {
		return nil, inputErr("history", "missing")
	}
	b, err := NewBudget(st.Config)
	if err != nil {
		return nil, err
	}
	if st.Config.Accountant == "" {
		return nil, inputErr("accountant", "missing")
	}
	steps, err := ValidateHistory(st.History)
	if err != nil {
		return nil, err
	}
	for i := 1; i < len(st.History); i++ {
		if st.History[i].Q == st.History[i-1].Q && st.History[i].Sigma == st.History[i-1].Sigma {
			return nil, inputErr("history", "runs %d and %d have the same (q, sigma); runs must be merged", i-1, i)
		}
	}
	b.history, b.steps = st.History, steps
	b.agg = aggregate(st.History)
	for i, r := range b.agg {
		b.index[pair{r.Q, r.Sigma}] = i
	}
	return b, nil
}
