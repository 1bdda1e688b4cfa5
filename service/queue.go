package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/store"
)

// runFunc performs an operation. det collects audit details (identifiers
// and small facts only).
type runFunc func(ctx context.Context, det map[string]string) (any, error)

// job is a queued operation.
type job struct {
	op    store.Operation
	actor string
	run   runFunc
	// release, when not nil, gives back what admit reserved; it is
	// idempotent and called with the session's mu held, by the run as
	// soon as the reservation is settled and by finish in any case.
	release func()
}

// submit creates the operation record and queues it on the session.
// admit, when not nil, runs with sess.mu held before anything is written;
// its error refuses the submission, and its commit runs once the operation
// is stored (and not for a duplicate idempotency key); release is then
// the job's (see job.release).
func (s *Service) submit(ctx context.Context, sess *session, kind string, admit func() (commit func(), err error), release func(), run runFunc) (api.Future, error) {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.deleted {
		return api.Future{}, fmt.Errorf("%w: training client", ErrNotFound)
	}
	if len(sess.queue) >= s.maxQ {
		return api.Future{}, fmt.Errorf("%w (%d)", ErrBusy, s.maxQ)
	}
	var commit func()
	if admit != nil {
		var err error
		if commit, err = admit(); err != nil {
			return api.Future{}, err
		}
	}
	id, err := store.NewID("op")
	if err != nil {
		return api.Future{}, err
	}
	// A submission holds the wait group while it writes, so that Close
	// waits for it; Add with a positive counter is allowed during Wait.
	s.mu.Lock()
	if err := s.admitting(); err != nil {
		s.mu.Unlock()
		return api.Future{}, err
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	op, err := s.st.CreateOperation(ctx, store.Operation{ID: id, TenantID: sess.tenant, ClientID: sess.id,
		Kind: kind, State: store.OpQueued, IdempotencyKey: idempotencyOf(ctx)})
	if errors.Is(err, store.ErrDuplicate) {
		if op.ClientID != sess.id || op.Kind != kind {
			return api.Future{}, &FieldError{Field: "idempotency_key", Reason: "was used for another request"}
		}
		return toFuture(op), nil
	}
	if err != nil {
		return api.Future{}, fmt.Errorf("service: create operation: %w", err)
	}
	s.mu.Lock()
	s.waiters[op.ID] = make(chan struct{})
	s.mu.Unlock()
	start := !sess.running
	if start {
		s.wg.Add(1)
	}
	j := &job{op: op, actor: actorOf(ctx), run: run}
	if commit != nil {
		commit()
		j.release = release
	}
	sess.queue = append(sess.queue, j)
	if start {
		sess.running = true
		go s.drain(sess)
	}
	return toFuture(op), nil
}

// drain runs the session's queue in order, one operation at a time, each
// under the service-wide concurrency bound.
func (s *Service) drain(sess *session) {
	defer s.wg.Done()
	for {
		sess.mu.Lock()
		if len(sess.queue) == 0 {
			sess.running = false
			sess.mu.Unlock()
			return
		}
		j := sess.queue[0]
		sess.queue = sess.queue[1:]
		deleted := sess.deleted
		sess.mu.Unlock()

		if deleted {
			s.finish(sess, j, nil, fmt.Errorf("%w: the training client was deleted", ErrNotFound), nil)
			continue
		}
		select {
		case s.sem <- struct{}{}:
		case <-s.jobCtx.Done():
			s.finish(sess, j, nil, errCanceled, nil)
			continue
		}
		s.execute(sess, j)
		<-s.sem
	}
}

var errCanceled = errors.New("service: the server shut down before the operation finished")

func (s *Service) execute(sess *session, j *job) {
	bg := context.WithoutCancel(s.jobCtx)
	op := j.op
	op.State = store.OpRunning
	op, err := s.st.UpdateOperation(bg, op)
	if err != nil {
		s.log.Error("service: mark operation running", "operation_id", j.op.ID, "err", err)
		op = j.op
	}
	j.op = op
	det := map[string]string{}
	var res any
	if err := s.jobCtx.Err(); err != nil {
		s.finish(sess, j, nil, errCanceled, det)
		return
	}
	res, err = s.runSafely(j, det)
	if err != nil && s.jobCtx.Err() != nil && errors.Is(err, context.Canceled) {
		err = errCanceled
	}
	s.finish(sess, j, res, err, det)
}

// runSafely runs j, turning a panic into an internal error so that one bad
// operation fails its future instead of taking the server down.
func (s *Service) runSafely(j *job, det map[string]string) (res any, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("service: operation panicked", "operation_id", j.op.ID, "kind", j.op.Kind, "panic", fmt.Sprint(r))
			res, err = nil, fmt.Errorf("service: %s panicked", j.op.Kind)
		}
	}()
	return j.run(s.jobCtx, det)
}

// finish records the outcome of j in the store and the audit log and wakes
// its waiters.
func (s *Service) finish(sess *session, j *job, res any, runErr error, det map[string]string) {
	bg := context.WithoutCancel(s.jobCtx)
	if j.release != nil {
		sess.mu.Lock()
		j.release()
		sess.mu.Unlock()
	}
	op := j.op
	outcome := audit.OutcomeSuccess
	if det == nil {
		det = map[string]string{}
	}
	det["operation_id"] = op.ID
	if runErr == nil {
		b, err := json.Marshal(res)
		if err != nil {
			runErr = fmt.Errorf("service: encode result: %w", err)
		} else {
			op.State, op.Result = store.OpSucceeded, b
		}
	}
	if runErr != nil {
		code, _ := CodeOf(runErr)
		msg := runErr.Error()
		switch {
		case errors.Is(runErr, errCanceled):
			code = api.CodeCanceled
		case code == api.CodeInternal:
			s.log.Error("service: operation failed", "operation_id", op.ID, "kind", op.Kind, "err", runErr)
			msg = "internal error"
		}
		if len(msg) > store.MaxErrorMessageLen {
			msg = msg[:store.MaxErrorMessageLen]
		}
		op.State, op.Result, op.ErrorCode, op.ErrorMessage = store.OpFailed, nil, code, msg
		outcome = audit.OutcomeFailure
		if code == api.CodePrivacyBudgetExceeded {
			outcome = audit.OutcomeDenied
		}
		det["error_code"] = code
	}
	if _, err := s.st.UpdateOperation(bg, op); err != nil {
		s.log.Error("service: record operation result", "operation_id", op.ID, "err", err)
	}
	s.record(bg, audit.Record{TenantID: op.TenantID, Actor: j.actor, Operation: "training." + op.Kind,
		Resource: op.ClientID, Outcome: outcome, Details: det})
	s.mu.Lock()
	if ch := s.waiters[op.ID]; ch != nil {
		close(ch)
		delete(s.waiters, op.ID)
	}
	s.mu.Unlock()
}

// GetOperation returns the future id of tenant.
func (s *Service) GetOperation(ctx context.Context, tenant, id string) (api.Future, error) {
	op, err := s.st.GetOperation(ctx, tenant, id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
			return api.Future{}, fmt.Errorf("%w: future", ErrNotFound)
		}
		return api.Future{}, fmt.Errorf("service: get operation: %w", err)
	}
	return toFuture(op), nil
}

// pollInterval is how often AwaitOperation re-reads an operation this
// process is not running (one submitted before a restart, or by another
// server sharing the database).
const pollInterval = 100 * time.Millisecond

// AwaitOperation waits until the future id of tenant has finished, or ctx is
// done (then it returns the future as it stands, with ctx's error).
func (s *Service) AwaitOperation(ctx context.Context, tenant, id string) (api.Future, error) {
	for {
		f, err := s.GetOperation(ctx, tenant, id)
		if err != nil || f.Done() {
			return f, err
		}
		s.mu.Lock()
		ch := s.waiters[id]
		s.mu.Unlock()
		var wake <-chan struct{} = ch
		var t *time.Timer
		if ch == nil {
			t = time.NewTimer(pollInterval)
			wake = nil
		}
		select {
		case <-wake:
		case <-timerC(t):
		case <-ctx.Done():
			if t != nil {
				t.Stop()
			}
			return f, ctx.Err()
		}
	}
}

func timerC(t *time.Timer) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.C
}

func toFuture(op store.Operation) api.Future {
	f := api.Future{ID: op.ID, ClientID: op.ClientID, Kind: op.Kind, State: string(op.State),
		CreatedAt: op.CreatedAt, StartedAt: op.StartedAt, FinishedAt: op.FinishedAt}
	if op.State == store.OpSucceeded {
		f.Result = op.Result
	}
	if op.State == store.OpFailed {
		f.Error = &api.ErrorBody{Code: op.ErrorCode, Message: op.ErrorMessage}
	}
	return f
}
