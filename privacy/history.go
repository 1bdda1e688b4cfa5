package privacy

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

// MaxSteps is the largest total number of steps any history may hold
// (2^53, so that every step count is exact as a float64).
const MaxSteps int64 = 1 << 53

// Run is Count consecutive steps of the Poisson-subsampled Gaussian
// mechanism with sampling rate Q and noise multiplier Sigma. A history is a
// run-length encoded list of runs, in the order they happened.
//
// In JSON a run is the array [q, sigma, count].
type Run struct {
	Q     float64
	Sigma float64
	Count int64
}

// MarshalJSON writes [q, sigma, count].
func (r Run) MarshalJSON() ([]byte, error) {
	if err := r.validate("run"); err != nil {
		return nil, err
	}
	return json.Marshal([]any{r.Q, r.Sigma, r.Count})
}

// UnmarshalJSON reads [q, sigma, count]; count must be an integer literal.
func (r *Run) UnmarshalJSON(data []byte) error {
	var raw []json.Number
	if err := json.Unmarshal(data, &raw); err != nil {
		return inputErr("run", "must be an array [q, sigma, count]: %v", err)
	}
	if len(raw) != 3 {
		return inputErr("run", "must be an array [q, sigma, count], got %d elements", len(raw))
	}
	q, err := strconv.ParseFloat(raw[0].String(), 64)
	if err != nil {
		return inputErr("q", "not a number: %q", raw[0])
	}
	sigma, err := strconv.ParseFloat(raw[1].String(), 64)
	if err != nil {
		return inputErr("sigma", "not a number: %q", raw[1])
	}
	count, err := strconv.ParseInt(raw[2].String(), 10, 64)
	if err != nil {
		return inputErr("count", "must be an integer, got %q", raw[2])
	}
	v := Run{Q: q, Sigma: sigma, Count: count}
	if err := v.validate("run"); err != nil {
		return err
	}
	*r = v
	return nil
}

func (r Run) validate(where string) error {
	if err := validateQSigma(r.Q, r.Sigma); err != nil {
		return err
	}
	if r.Count < 1 || r.Count > MaxSteps {
		return inputErr("count", "%s: must be in [1, 2^53], got %d", where, r.Count)
	}
	return nil
}

// ValidateHistory checks every run and that the total number of steps is at
// most MaxSteps. It returns the total.
func ValidateHistory(runs []Run) (int64, error) {
	var total int64
	for i, r := range runs {
		if err := r.validate(fmt.Sprintf("history[%d]", i)); err != nil {
			var ie *InputError
			if asInputError(err, &ie) && ie.Field != "count" {
				return 0, inputErr(ie.Field, "history[%d]: %s", i, ie.Reason)
			}
			return 0, err
		}
		if r.Count > MaxSteps-total {
			return 0, inputErr("steps", "history holds more than 2^53 steps")
		}
		total += r.Count
	}
	return total, nil
}

func asInputError(err error, target **InputError) bool {
	ie, ok := err.(*InputError)
	if ok {
		*target = ie
	}
	return ok
}

// pair identifies the mechanism of a step; composition is commutative, so
// the accountants aggregate a history by pair.
type pair struct{ q, sigma float64 }

// aggregate sums the counts of equal (q, σ) pairs, in order of first
// appearance.
func aggregate(runs []Run) []Run {
	idx := make(map[pair]int, len(runs))
	var out []Run
	for _, r := range runs {
		k := pair{r.Q, r.Sigma}
		if i, ok := idx[k]; ok {
			out[i].Count += r.Count
			continue
		}
		idx[k] = len(out)
		out = append(out, r)
	}
	return out
}

func validateSteps(steps int64) error {
	if steps < 0 {
		return inputErr("steps", "must be ≥ 0, got %d", steps)
	}
	if steps > MaxSteps {
		return inputErr("steps", "must be at most 2^53 (%d), got %d", MaxSteps, steps)
	}
	return nil
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
