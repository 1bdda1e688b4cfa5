package privacy

import (
	"fmt"
	"math"
)

// Conversion selects how an RDP curve becomes an (ε, δ) guarantee.
type Conversion string

const (
	// ConversionImproved is Balle et al. 2020, "Hypothesis testing
	// interpretations and Rényi differential privacy", Theorem 21 (as
	// Opacus get_privacy_spent and dp_accounting compute_epsilon):
	// ε = r + log(1 - 1/α) - (log δ + log α)/(α - 1).
	ConversionImproved Conversion = "improved"
	// ConversionClassic is Mironov 2017, Proposition 3:
	// ε = r - log δ/(α - 1).
	ConversionClassic Conversion = "classic"
)

// ParseConversion accepts "improved" or "classic"; "" means improved.
func ParseConversion(s string) (Conversion, error) {
	switch Conversion(s) {
	case "", ConversionImproved:
		return ConversionImproved, nil
	case ConversionClassic:
		return ConversionClassic, nil
	}
	return "", inputErr("conversion", "must be %q or %q, got %q", ConversionImproved, ConversionClassic, s)
}

// EpsilonFromRDP converts the RDP values rdp (at orders) to the smallest ε
// such that the mechanism is (ε, delta)-DP, and returns the order that
// attains it. A warning is returned when that order is the smallest or the
// largest of the list: a wider list may give a tighter ε.
func EpsilonFromRDP(orders, rdp []float64, delta float64, conv Conversion) (eps, order float64, warning string, err error) {
	if err := ValidateOrders(orders); err != nil {
		return 0, 0, "", err
	}
	if len(rdp) != len(orders) {
		return 0, 0, "", inputErr("rdp", "has %d values for %d orders", len(rdp), len(orders))
	}
	for i, r := range rdp {
		if math.IsNaN(r) || r < 0 {
			return 0, 0, "", inputErr("rdp", "value %d is %v; RDP must be ≥ 0 (+Inf allowed)", i, r)
		}
	}
	if err := validateDelta(delta); err != nil {
		return 0, 0, "", err
	}
	if _, err := ParseConversion(string(conv)); err != nil {
		return 0, 0, "", err
	}
	eps, order = epsilonFromRDP(orders, rdp, delta, conv)
	if math.IsInf(eps, 1) {
		return eps, order, "", fmt.Errorf("privacy: epsilon: %w (every order's RDP is infinite)", ErrUnbounded)
	}
	return eps, order, edgeWarning(orders, order), nil
}

// epsilonFromRDP is EpsilonFromRDP on validated input.
func epsilonFromRDP(orders, rdp []float64, delta float64, conv Conversion) (float64, float64) {
	best, bestOrder := math.Inf(1), math.NaN()
	logDelta := math.Log(delta)
	for i, a := range orders {
		r := rdp[i]
		var e float64
		switch {
		case math.IsInf(r, 1):
			e = math.Inf(1)
		case conv == ConversionClassic:
			// TF Privacy _compute_eps (classic).
			e = r - logDelta/(a-1)
		case delta*delta+math.Expm1(-r) > 0:
			// dp_accounting compute_epsilon: bound via KL divergence,
			// δ ≤ sqrt(1 - exp(-KL)) and KL ≤ r.
			e = 0
		case a > 1.01:
			// dp_accounting compute_epsilon (Balle et al. 2020 Thm 21);
			// unstable as α → 1, where it is useless anyway.
			e = r + math.Log1p(-1/a) - math.Log(delta*a)/(a-1)
		default:
			e = math.Inf(1)
		}
		if e < best { // first minimum wins, as numpy's argmin
			best, bestOrder = e, a
		}
	}
	if math.IsNaN(bestOrder) {
		return math.Inf(1), orders[0]
	}
	return math.Max(0, best), bestOrder
}

// DeltaFromRDP returns the smallest δ such that the mechanism is (epsilon,
// δ)-DP given its RDP curve, and the order that attains it.
func DeltaFromRDP(orders, rdp []float64, epsilon float64, conv Conversion) (delta, order float64, warning string, err error) {
	if err := ValidateOrders(orders); err != nil {
		return 0, 0, "", err
	}
	if len(rdp) != len(orders) {
		return 0, 0, "", inputErr("rdp", "has %d values for %d orders", len(rdp), len(orders))
	}
	for i, r := range rdp {
		if math.IsNaN(r) || r < 0 {
			return 0, 0, "", inputErr("rdp", "value %d is %v; RDP must be ≥ 0 (+Inf allowed)", i, r)
		}
	}
	if err := validateEpsilon(epsilon); err != nil {
		return 0, 0, "", err
	}
	if _, err := ParseConversion(string(conv)); err != nil {
		return 0, 0, "", err
	}
	delta, order = deltaFromRDP(orders, rdp, epsilon, conv)
	return delta, order, edgeWarning(orders, order), nil
}

func deltaFromRDP(orders, rdp []float64, epsilon float64, conv Conversion) (float64, float64) {
	bestLog, bestOrder := math.Inf(1), orders[0]
	for i, a := range orders {
		r := rdp[i]
		var ld float64
		switch {
		case math.IsInf(r, 1):
			ld = math.Inf(1)
		case conv == ConversionClassic:
			// TF Privacy _compute_delta (classic): δ = exp((r - ε)(α - 1)).
			ld = (r - epsilon) * (a - 1)
		default:
			// dp_accounting compute_delta: min of the KL bound
			// sqrt(1 - exp(-r)) and Balle et al. 2020 Prop. 12 / Thm 21.
			if r == 0 {
				ld = math.Inf(-1)
			} else {
				ld = 0.5 * math.Log1p(-math.Exp(-r))
			}
			if a > 1.01 {
				b := (a-1)*(r-epsilon+math.Log1p(-1/a)) - math.Log(a)
				ld = math.Min(ld, b)
			}
		}
		if ld < bestLog {
			bestLog, bestOrder = ld, a
		}
	}
	return math.Min(math.Exp(bestLog), 1), bestOrder
}

func edgeWarning(orders []float64, order float64) string {
	lo, hi := minMax(orders)
	switch {
	case len(orders) == 1:
		return ""
	case order == lo:
		return fmt.Sprintf("optimal RDP order %v is the smallest order; consider adding smaller orders for a tighter bound", order)
	case order == hi:
		return fmt.Sprintf("optimal RDP order %v is the largest order; consider adding larger orders for a tighter bound", order)
	}
	return ""
}

func validateDelta(delta float64) error {
	if math.IsNaN(delta) || !(delta > 0) || !(delta < 1) {
		return inputErr("delta", "must be in (0, 1), got %v", delta)
	}
	return nil
}

func validateEpsilon(eps float64) error {
	if math.IsNaN(eps) || eps < 0 || math.IsInf(eps, 1) {
		return inputErr("epsilon", "must be finite and ≥ 0, got %v", eps)
	}
	return nil
}
