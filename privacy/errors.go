package privacy

import (
	"errors"
	"fmt"
)

// ErrInvalidInput is matched (errors.Is) by every *InputError.
var ErrInvalidInput = errors.New("invalid input")

// ErrUnbounded reports that no finite ε (or δ < 1) can be certified for the
// given parameters, for example σ so small that every RDP order is infinite.
var ErrUnbounded = errors.New("privacy loss is unbounded")

// ErrBudgetTooSmall reports that no noise multiplier up to MaxSigma reaches
// the requested (ε, δ).
var ErrBudgetTooSmall = errors.New("privacy budget is too small")

// ErrDomainTooLarge reports that the PRV accountant would need a
// discretisation grid larger than MaxPRVDomainSize; use the RDP accountant
// (or a larger eps_error) for such long runs.
var ErrDomainTooLarge = errors.New("prv: discretisation domain too large")

// InputError is a bad argument: Field names it (as it is called in the API,
// the JSON formats and the CLI flags) and Reason says what is wrong.
type InputError struct {
	Field  string
	Reason string
}

func (e *InputError) Error() string {
	return fmt.Sprintf("privacy: %s: %s", e.Field, e.Reason)
}

// Is makes errors.Is(err, ErrInvalidInput) true for every InputError.
func (e *InputError) Is(target error) bool { return target == ErrInvalidInput }

func inputErr(field, format string, args ...any) error {
	return &InputError{Field: field, Reason: fmt.Sprintf(format, args...)}
}
