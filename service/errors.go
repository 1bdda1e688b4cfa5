package service

import (
	"errors"
	"fmt"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/store"
)

// Sentinel errors. Callers distinguish them with errors.Is.
var (
	// ErrNotFound: no such object, or an object of another tenant, which
	// is reported exactly like a missing one.
	ErrNotFound = errors.New("service: not found")
	// ErrInvalid is matched by every *FieldError.
	ErrInvalid = errors.New("service: invalid input")
	// ErrBudgetExceeded is matched by *BudgetExceededError.
	ErrBudgetExceeded = errors.New("service: privacy budget exceeded")
	// ErrFailedPrecondition: the request is well-formed but the client's
	// state does not allow it (e.g. save_state with un-noised gradients
	// pending, a checkpoint of another base model).
	ErrFailedPrecondition = errors.New("service: failed precondition")
	// ErrBusy: the client has Config.MaxQueued operations queued; retry
	// once some have finished.
	ErrBusy = errors.New("service: too many operations queued on the training client")
	// ErrClosed: the service is shutting down and accepts no new work.
	ErrClosed = errors.New("service: closed")
)

// FieldError reports a malformed request field. Field is its JSON path
// ("dp_config.noise_multiplier", "batch.input_ids[2][7]").
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return "field " + e.Field + ": " + e.Reason }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// BudgetExceededError refuses an optim_step that would take the client's ε
// past its target. Nothing was changed.
type BudgetExceededError struct {
	EpsilonWouldBe float64 // ε after the refused step (+Inf when unbounded)
	EpsilonSpent   float64 // ε spent so far
	TargetEpsilon  float64
	Delta          float64
	Steps          int64 // steps taken so far
}

func (e *BudgetExceededError) Error() string {
	return fmt.Sprintf("privacy budget exceeded: the next optim_step would spend ε = %.4g > target ε = %.4g (δ = %g) after %d steps; nothing was changed",
		e.EpsilonWouldBe, e.TargetEpsilon, e.Delta, e.Steps)
}

// Is makes errors.Is(err, ErrBudgetExceeded) true.
func (e *BudgetExceededError) Is(target error) bool { return target == ErrBudgetExceeded }

// CodeOf returns the api error code for err (api.CodeInternal for errors
// the caller must not be told about in detail) and the offending field.
func CodeOf(err error) (code, field string) {
	var fe *FieldError
	var se *store.FieldError
	var de *api.DecodeError
	var nf *NotFoundError
	switch {
	case err == nil:
		return "", ""
	case errors.Is(err, api.ErrTooLarge):
		return api.CodeTooLarge, ""
	case errors.As(err, &de):
		return api.CodeInvalidArgument, de.Field
	case errors.As(err, &fe):
		return api.CodeInvalidArgument, fe.Field
	case errors.As(err, &se):
		return api.CodeInvalidArgument, se.Field
	case errors.Is(err, ErrInvalid), errors.Is(err, store.ErrInvalid):
		return api.CodeInvalidArgument, ""
	case errors.As(err, &nf):
		return api.CodeNotFound, nf.Field
	case errors.Is(err, ErrNotFound), errors.Is(err, store.ErrNotFound):
		return api.CodeNotFound, ""
	case errors.Is(err, ErrBudgetExceeded):
		return api.CodePrivacyBudgetExceeded, ""
	case errors.Is(err, ErrFailedPrecondition):
		return api.CodeFailedPrecondition, ""
	case errors.Is(err, store.ErrConflict):
		return api.CodeConflict, ""
	case errors.Is(err, ErrBusy):
		return api.CodeRateLimited, ""
	case errors.Is(err, ErrClosed):
		return api.CodeUnavailable, ""
	}
	return api.CodeInternal, ""
}
