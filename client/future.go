package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/tensafe/tensafe/api"
)

// Future is an operation submitted on a training client. T is its result
// type (api.ForwardBackwardResult, api.OptimStepResult, …).
type Future[T any] struct {
	c *ServiceClient
	// ID is the operation's id ("op_…").
	ID string
	// Kind is the operation kind ("forward_backward", …).
	Kind string
	// Submitted is the future as the server answered the submission.
	Submitted api.Future
}

// FutureOf resumes waiting on an operation submitted earlier (for example
// by another process) whose result type is T.
func FutureOf[T any](c *ServiceClient, id string) *Future[T] {
	return &Future[T]{c: c, ID: id}
}

func newFuture[T any](c *ServiceClient, f api.Future) (*Future[T], error) {
	if f.ID == "" {
		return nil, fmt.Errorf("tensafe: submitted operation has no id: %w", ErrMalformedResponse)
	}
	return &Future[T]{c: c, ID: f.ID, Kind: f.Kind, Submitted: f}, nil
}

// Status fetches the future's current state without waiting.
func (f *Future[T]) Status(ctx context.Context) (*api.Future, error) {
	var out api.Future
	if err := f.c.do(ctx, "GET", "/api/v1/futures/"+url.PathEscape(f.ID), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Wait long-polls the future until it has finished (succeeded or failed) or
// ctx is done, and returns its final state.
func (f *Future[T]) Wait(ctx context.Context) (*api.Future, error) {
	q := url.Values{"wait": {strconv.Itoa(int(f.c.pollWait / time.Second))}}
	if f.c.pollWait == 0 {
		q.Set("wait", "30")
	}
	path := "/api/v1/futures/" + url.PathEscape(f.ID)
	// A server that ignores wait answers at once; back off then, so a
	// waiting client never spins.
	idle := 0
	for {
		start := time.Now()
		var out api.Future
		if err := f.c.do(ctx, "GET", path, q, nil, &out); err != nil {
			return nil, err
		}
		if out.Done() {
			return &out, nil
		}
		if time.Since(start) >= 500*time.Millisecond {
			idle = 0
			continue
		}
		idle++
		d := min(25*time.Millisecond<<min(idle, 6), time.Second)
		if err := f.c.wait(ctx, d); err != nil {
			return nil, fmt.Errorf("tensafe: wait for %s: %w", f.ID, err)
		}
	}
}

// Result waits for the operation to finish and returns its result, or a
// *FutureError when it failed.
func (f *Future[T]) Result(ctx context.Context) (*T, error) {
	st, err := f.Wait(ctx)
	if err != nil {
		return nil, err
	}
	return decodeResult[T](st)
}

func decodeResult[T any](st *api.Future) (*T, error) {
	if st.State == api.FutureFailed {
		ae := &APIError{Code: api.CodeInternal, Message: "operation failed without an error"}
		if st.Error != nil {
			ae = &APIError{
				Code:    printable(st.Error.Code, 64),
				Message: printable(st.Error.Message, 4096),
				Field:   printable(st.Error.Field, 512),
			}
			if ae.Code == "" {
				ae.Code = api.CodeInternal
			}
		}
		ae.Status = api.HTTPStatus(ae.Code)
		return nil, &FutureError{FutureID: st.ID, Kind: st.Kind, Err: ae}
	}
	if st.State != api.FutureSucceeded {
		return nil, fmt.Errorf("tensafe: operation %s: unexpected state %q: %w", st.ID, st.State, ErrMalformedResponse)
	}
	var out T
	if len(st.Result) == 0 {
		return nil, fmt.Errorf("tensafe: operation %s succeeded without a result: %w", st.ID, ErrMalformedResponse)
	}
	if err := json.Unmarshal(st.Result, &out); err != nil {
		return nil, fmt.Errorf("tensafe: operation %s: decode result: %w (%v)", st.ID, ErrMalformedResponse, err)
	}
	return &out, nil
}
