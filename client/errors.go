package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tensafe/tensafe/api"
)

// APIError is an error answered by the server: its HTTP status and the
// decoded error envelope.
type APIError struct {
	// Status is the HTTP status code (for a failed future, the status its
	// code maps to).
	Status int
	// Code is the envelope's code (api.CodeNotFound, …). When the body was
	// not an envelope, it is derived from Status.
	Code    string
	Message string
	// Field is the JSON path of the offending request field, if any.
	Field string
	// RetryAfter is the server's Retry-After, zero when absent.
	RetryAfter time.Duration
	// RequestID is the server's X-Request-Id header, if any.
	RequestID string
}

func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("tensafe: ")
	if e.Status != 0 {
		fmt.Fprintf(&b, "%d ", e.Status)
	}
	b.WriteString(e.Code)
	if e.Field != "" {
		b.WriteString(" (field ")
		b.WriteString(e.Field)
		b.WriteString(")")
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.RequestID != "" {
		b.WriteString(" [request ")
		b.WriteString(e.RequestID)
		b.WriteString("]")
	}
	return b.String()
}

// FutureError is returned by Future.Result when the operation failed on the
// server. It unwraps to the *APIError of the future's error, so the Is…
// helpers apply.
type FutureError struct {
	FutureID string
	Kind     string
	Err      *APIError
}

func (e *FutureError) Error() string {
	return fmt.Sprintf("tensafe: operation %s (%s) failed: %v", e.FutureID, e.Kind, e.Err)
}

func (e *FutureError) Unwrap() error { return e.Err }

// ErrMalformedResponse is matched by errors decoding a server's success
// response (not JSON of the expected shape, or over the size limit).
var ErrMalformedResponse = errors.New("tensafe: malformed response")

func codeIs(err error, code string) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Code == code
}

// IsBudgetExceeded reports whether err is a refusal because the next step
// would exceed the client's privacy budget (409 privacy_budget_exceeded).
func IsBudgetExceeded(err error) bool { return codeIs(err, api.CodePrivacyBudgetExceeded) }

// IsNotFound reports whether err is a 404: a missing id, or another tenant's.
func IsNotFound(err error) bool { return codeIs(err, api.CodeNotFound) }

// IsInvalidArgument reports whether err is a 400; APIError.Field names the field.
func IsInvalidArgument(err error) bool { return codeIs(err, api.CodeInvalidArgument) }

// IsUnauthenticated reports whether err is a 401 (missing, unknown or revoked key).
func IsUnauthenticated(err error) bool { return codeIs(err, api.CodeUnauthenticated) }

// IsPermissionDenied reports whether err is a 403 (the key's role may not do this).
func IsPermissionDenied(err error) bool { return codeIs(err, api.CodePermissionDenied) }

// IsFailedPrecondition reports whether err is a 409 failed_precondition
// (e.g. save_state with gradients pending, or training before load_state
// after a restart).
func IsFailedPrecondition(err error) bool { return codeIs(err, api.CodeFailedPrecondition) }

// IsConflict reports whether err is a 409 conflict: e.g. an Idempotency-Key
// reused with another request (APIError.Field is then "Idempotency-Key").
func IsConflict(err error) bool { return codeIs(err, api.CodeConflict) }

// IsRateLimited reports whether err is a 429 that outlasted the retries.
func IsRateLimited(err error) bool { return codeIs(err, api.CodeRateLimited) }

// IsServerRestarted reports whether err is a future cut off by a server restart.
func IsServerRestarted(err error) bool { return codeIs(err, api.CodeServerRestarted) }

// codeForStatus is the envelope code a bare HTTP status stands for.
func codeForStatus(status int) string {
	switch status {
	case http.StatusBadRequest:
		return api.CodeInvalidArgument
	case http.StatusUnauthorized:
		return api.CodeUnauthenticated
	case http.StatusForbidden:
		return api.CodePermissionDenied
	case http.StatusNotFound:
		return api.CodeNotFound
	case http.StatusConflict:
		return api.CodeConflict
	case http.StatusRequestEntityTooLarge:
		return api.CodeTooLarge
	case http.StatusTooManyRequests:
		return api.CodeRateLimited
	case http.StatusServiceUnavailable:
		return api.CodeUnavailable
	}
	return api.CodeInternal
}

// maxMessage bounds a message quoted from a body that was not an envelope.
const maxMessage = 256

// decodeError builds the *APIError of a non-2xx response from its status,
// headers and (size-limited) body. It accepts any bytes: a body that is not
// the envelope yields a code derived from the status and a short, printable
// excerpt as the message.
func decodeError(status int, h http.Header, body []byte) *APIError {
	e := &APIError{Status: status, RequestID: h.Get("X-Request-Id")}
	if d, ok := parseRetryAfter(h.Get("Retry-After"), time.Now()); ok {
		e.RetryAfter = d
	}
	var env api.ErrorResponse
	if err := json.Unmarshal(body, &env); err == nil && env.Error.Code != "" {
		e.Code = printable(env.Error.Code, 64)
		e.Message = printable(env.Error.Message, 4096)
		e.Field = printable(env.Error.Field, 512)
		return e
	}
	e.Code = codeForStatus(status)
	msg := printable(strings.TrimSpace(string(body)), maxMessage)
	if msg == "" {
		msg = http.StatusText(status)
	}
	e.Message = msg
	return e
}

// printable returns s with invalid UTF-8 and control characters replaced,
// cut to at most max bytes on a rune boundary.
func printable(s string, max int) string {
	var b strings.Builder
	for _, r := range s {
		if r == utf8.RuneError || (r < 0x20 && r != '\t') || r == 0x7f {
			r = '?'
		}
		if b.Len()+utf8.RuneLen(r) > max {
			b.WriteString("…")
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

// maxRetryAfter bounds how long a Retry-After may make the client wait.
const maxRetryAfter = 5 * time.Minute

// parseRetryAfter reads a Retry-After value: delay-seconds or an HTTP date
// (RFC 9110 §10.2.3). It reports false for an absent or malformed value.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseUint(v, 10, 63); err == nil {
		if n > uint64(maxRetryAfter/time.Second) {
			return maxRetryAfter, true
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	d := t.Sub(now)
	switch {
	case d < 0:
		d = 0
	case d > maxRetryAfter:
		d = maxRetryAfter
	}
	return d, true
}
