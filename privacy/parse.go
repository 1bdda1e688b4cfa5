package privacy

import (
	"math"
	"strconv"
	"strings"
)

// ParseOrders parses an order list as given on a command line: a named set
// ("default", "opacus", "tfp-legacy") or comma-separated items, each a
// number ("1.5") or an inclusive integer range ("12..63"). The result is
// checked with ValidateOrders.
func ParseOrders(s string) ([]float64, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "default":
		return DefaultOrders(), nil
	case "opacus":
		return OpacusOrders(), nil
	case "tfp-legacy":
		return TFPrivacyLegacyOrders(), nil
	case "":
		return nil, inputErr("orders", "empty; give numbers, ranges like 12..63, or default, opacus, tfp-legacy")
	}
	if len(s) > 1<<14 {
		return nil, inputErr("orders", "list too long (%d bytes)", len(s))
	}
	var orders []float64
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if lo, hi, ok := strings.Cut(item, ".."); ok {
			a, errA := strconv.ParseInt(strings.TrimSpace(lo), 10, 64)
			b, errB := strconv.ParseInt(strings.TrimSpace(hi), 10, 64)
			if errA != nil || errB != nil {
				return nil, inputErr("orders", "range %q must be two integers, like 12..63", item)
			}
			if a < 2 || b > MaxOrder || a > b {
				return nil, inputErr("orders", "range %q must satisfy 2 ≤ low ≤ high ≤ %d", item, MaxOrder)
			}
			if b-a+1 > int64(MaxOrderCount-len(orders)) {
				return nil, inputErr("orders", "at most %d orders", MaxOrderCount)
			}
			for v := a; v <= b; v++ {
				orders = append(orders, float64(v))
			}
			continue
		}
		v, err := strconv.ParseFloat(item, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, inputErr("orders", "%q is not a number", item)
		}
		if len(orders) >= MaxOrderCount {
			return nil, inputErr("orders", "at most %d orders", MaxOrderCount)
		}
		orders = append(orders, v)
	}
	if err := ValidateOrders(orders); err != nil {
		return nil, err
	}
	return orders, nil
}
