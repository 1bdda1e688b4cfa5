package privacy

import (
	"fmt"
	"math"
)

// Accountant names an accounting method.
type Accountant string

const (
	// AccountantRDP is Rényi DP of the subsampled Gaussian (Mironov, Talwar,
	// Zhang 2019) with an RDP → (ε, δ) conversion.
	AccountantRDP Accountant = "rdp"
	// AccountantPRV is numerical composition of privacy loss random variables
	// (Gopi, Lee, Wutschitz 2021) as in Opacus's PRVAccountant.
	AccountantPRV Accountant = "prv"
)

// ParseAccountant accepts "rdp" or "prv"; "" means rdp.
func ParseAccountant(s string) (Accountant, error) {
	switch Accountant(s) {
	case "", AccountantRDP:
		return AccountantRDP, nil
	case AccountantPRV:
		return AccountantPRV, nil
	}
	return "", inputErr("accountant", "must be %q or %q, got %q", AccountantRDP, AccountantPRV, s)
}

// Default PRV error parameters (Opacus PRVAccountant.get_epsilon).
const (
	DefaultEpsError = 0.01
	// DefaultDeltaErrorRatio: for an ε query, delta_error = δ/1000.
	DefaultDeltaErrorRatio = 1e-3
)

// Options choose the accountant and its parameters. The zero value is the
// RDP accountant with the improved conversion over DefaultOrders.
type Options struct {
	Accountant Accountant
	// Conversion applies to RDP only; "" means improved.
	Conversion Conversion
	// Orders applies to RDP only; nil means DefaultOrders().
	Orders []float64
	// EpsError applies to PRV only; 0 means DefaultEpsError.
	EpsError float64
	// DeltaError applies to PRV only; 0 means δ/1000 for an ε query and
	// δ_RDP(ε)/1000 for a δ query (δ_RDP: the RDP accountant's δ).
	DeltaError float64
}

func (o Options) normalize() (Options, error) {
	acc, err := ParseAccountant(string(o.Accountant))
	if err != nil {
		return o, err
	}
	o.Accountant = acc
	conv, err := ParseConversion(string(o.Conversion))
	if err != nil {
		return o, err
	}
	o.Conversion = conv
	if o.Orders == nil {
		o.Orders = DefaultOrders()
	} else if err := ValidateOrders(o.Orders); err != nil {
		return o, err
	}
	if o.EpsError == 0 {
		o.EpsError = DefaultEpsError
	}
	if !finite(o.EpsError) || !(o.EpsError > 0) || o.EpsError >= 1 {
		return o, inputErr("eps_error", "must be in (0, 1), got %v", o.EpsError)
	}
	if !finite(o.DeltaError) || o.DeltaError < 0 || o.DeltaError >= 1 {
		return o, inputErr("delta_error", "must be in (0, 1) or 0 for the default, got %v", o.DeltaError)
	}
	return o, nil
}

// Result is an (ε, δ) guarantee and how it was obtained.
type Result struct {
	// Epsilon is the certified ε: for PRV the upper bound (estimate plus
	// discretisation error), never the bare estimate.
	Epsilon float64 `json:"epsilon"`
	// Delta is the certified δ: the query's δ, or for a δ query the
	// computed δ (for PRV its upper bound).
	Delta      float64    `json:"delta"`
	Accountant Accountant `json:"accountant"`
	// Conversion and Order (the optimal RDP order) are set for RDP.
	Conversion Conversion `json:"conversion,omitempty"`
	Order      float64    `json:"order,omitempty"`
	// PRV: the estimate and lower bound of the queried quantity, and the
	// error parameters used.
	Estimate   float64  `json:"estimate,omitempty"`
	Lower      float64  `json:"lower,omitempty"`
	EpsError   float64  `json:"eps_error,omitempty"`
	DeltaError float64  `json:"delta_error,omitempty"`
	Steps      int64    `json:"steps"`
	Warnings   []string `json:"warnings,omitempty"`
}

// Epsilon returns the ε spent by the history for the given δ.
func Epsilon(history []Run, delta float64, opt Options) (Result, error) {
	opt, err := opt.normalize()
	if err != nil {
		return Result{}, err
	}
	if err := validateDelta(delta); err != nil {
		return Result{}, err
	}
	steps, err := ValidateHistory(history)
	if err != nil {
		return Result{}, err
	}
	return epsilon(aggregate(history), steps, delta, opt, nil)
}

// rdpCache maps a (q, σ) pair to its one-step RDP vector over the orders of
// the accountant; nil means no cache.
type rdpCache map[pair][]float64

func (c rdpCache) vector(p pair, orders []float64) []float64 {
	if v, ok := c[p]; ok {
		return v
	}
	v := rdpVector(p.q, p.sigma, orders)
	if c != nil {
		c[p] = v
	}
	return v
}

// totalRDP is Σ count × RDP(q, σ) over an aggregated history (Opacus:
// sum of compute_rdp(q, σ, steps, orders) over the history).
func totalRDP(agg []Run, orders []float64, cache rdpCache) []float64 {
	total := make([]float64, len(orders))
	for _, r := range agg {
		v := cache.vector(pair{r.Q, r.Sigma}, orders)
		c := float64(r.Count)
		for i := range total {
			total[i] += v[i] * c
		}
	}
	return total
}

func epsilon(agg []Run, steps int64, delta float64, opt Options, cache rdpCache) (Result, error) {
	res := Result{Delta: delta, Accountant: opt.Accountant, Steps: steps}
	if steps == 0 {
		if opt.Accountant == AccountantRDP {
			res.Conversion = opt.Conversion
		}
		return res, nil
	}
	switch opt.Accountant {
	case AccountantPRV:
		deltaErr := opt.DeltaError
		if deltaErr == 0 {
			deltaErr = delta * DefaultDeltaErrorRatio
		}
		if deltaErr >= delta {
			return Result{}, inputErr("delta_error", "must be smaller than delta (%v), got %v", delta, deltaErr)
		}
		d, err := composePRV(agg, opt.EpsError, deltaErr, cache)
		if err != nil {
			return Result{}, err
		}
		lower, est, upper, err := d.epsilon(delta, deltaErr, opt.EpsError)
		if err != nil {
			return Result{}, err
		}
		res.Epsilon, res.Estimate, res.Lower = upper, est, lower
		res.EpsError, res.DeltaError = opt.EpsError, deltaErr
		return res, nil
	default:
		res.Conversion = opt.Conversion
		total := totalRDP(agg, opt.Orders, cache)
		eps, order := epsilonFromRDP(opt.Orders, total, delta, opt.Conversion)
		if math.IsInf(eps, 1) {
			return Result{}, fmt.Errorf("privacy: epsilon: %w: the RDP of every order is infinite", ErrUnbounded)
		}
		res.Epsilon, res.Order = eps, order
		if w := edgeWarning(opt.Orders, order); w != "" {
			res.Warnings = append(res.Warnings, w)
		}
		return res, nil
	}
}

// Delta returns the δ at which the history is (epsilon, δ)-DP.
func Delta(history []Run, epsilon float64, opt Options) (Result, error) {
	opt, err := opt.normalize()
	if err != nil {
		return Result{}, err
	}
	if err := validateEpsilon(epsilon); err != nil {
		return Result{}, err
	}
	steps, err := ValidateHistory(history)
	if err != nil {
		return Result{}, err
	}
	agg := aggregate(history)
	res := Result{Epsilon: epsilon, Accountant: opt.Accountant, Steps: steps}
	if steps == 0 {
		if opt.Accountant == AccountantRDP {
			res.Conversion = opt.Conversion
		}
		return res, nil
	}
	// The RDP δ: the answer for RDP, and for PRV the scale of delta_error.
	rdpOpt := opt
	if opt.Accountant == AccountantPRV {
		rdpOpt.Orders, rdpOpt.Conversion = OpacusOrders(), ConversionImproved
	}
	total := totalRDP(agg, rdpOpt.Orders, nil)
	d, order := deltaFromRDP(rdpOpt.Orders, total, epsilon, rdpOpt.Conversion)
	if opt.Accountant == AccountantRDP {
		res.Delta, res.Order, res.Conversion = d, order, opt.Conversion
		if w := edgeWarning(opt.Orders, order); w != "" {
			res.Warnings = append(res.Warnings, w)
		}
		return res, nil
	}
	deltaErr := opt.DeltaError
	if deltaErr == 0 {
		deltaErr = d * DefaultDeltaErrorRatio
	}
	if !(deltaErr > 0) {
		// The RDP δ underflowed: report the RDP bound itself.
		return Result{}, fmt.Errorf("privacy: delta: RDP δ is %v, too small for the PRV accountant; use rdp", d)
	}
	dprv, err := composePRV(agg, opt.EpsError, deltaErr, nil)
	if err != nil {
		return Result{}, err
	}
	lower, est, upper := dprv.delta(epsilon, opt.EpsError, deltaErr)
	res.Delta, res.Estimate, res.Lower = math.Min(upper, 1), est, math.Max(lower, 0)
	res.EpsError, res.DeltaError = opt.EpsError, deltaErr
	return res, nil
}
