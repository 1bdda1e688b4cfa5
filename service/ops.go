package service

import (
	"context"
	"errors"
	"fmt"
	"github.com/tensafe/tensafe/audit"
	"sync"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/engine"
	"github.com/tensafe/tensafe/loss"
	"github.com/tensafe/tensafe/model"
	"github.com/tensafe/tensafe/privacy"
	"github.com/tensafe/tensafe/store"
	"github.com/tensafe/tensafe/tssp"
)

// lossFor returns the request's loss, or the client's.
func lossFor(sess *session, s *api.LossSpec) (loss.Spec, error) {
	if s == nil {
		sess.mu.Lock()
		defer sess.mu.Unlock()
		return sess.plan.loss, nil
	}
	return checkLoss("loss", s)
}

// liveSession returns client id's session, refused (ErrFailedPrecondition)
// when a restart lost its adapter.
func (s *Service) liveSession(ctx context.Context, tenant, id string) (*session, error) {
	sess, err := s.session(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	if err := sess.errLost(); err != nil {
		return nil, err
	}
	return sess, nil
}

// ForwardBackward queues a forward_backward on client id: per-example
// gradients, clipped, added to the client's accumulator.
func (s *Service) ForwardBackward(ctx context.Context, tenant, id string, req api.ForwardBackwardRequest) (api.Future, error) {
	sess, err := s.liveSession(ctx, tenant, id)
	if err != nil {
		return api.Future{}, err
	}
	if err := errServerSampled(sess, "forward_backward"); err != nil { // trainstep.go
		return api.Future{}, err
	}
	m, _, _ := sess.base.load()
	spec, err := lossFor(sess, req.Loss)
	if err != nil {
		return api.Future{}, err
	}
	l, err := resolveLoss("loss", spec, m.Config)
	if err != nil {
		return api.Future{}, err
	}
	b, err := checkBatch(req.Batch, m.Config, true, l, nil)
	if err != nil {
		return api.Future{}, err
	}
	return s.submit(ctx, sess, store.KindForwardBackward, nil, nil, func(ctx context.Context, det map[string]string) (any, error) {
		r, err := sess.eng.ForwardBackward(ctx, b, spec)
		if err != nil {
			return nil, engineErr(err)
		}
		det["batch_size"] = fmt.Sprint(len(b.InputIDs))
		det["loss_type"] = spec.Type
		det[tssp.BatchDigestDetail] = BatchDigest(req.Batch) // packages.go: the dataset fingerprint
		return api.ForwardBackwardResult{Loss: r.Loss, PerExampleLoss: r.PerExampleLoss, Tokens: r.Tokens,
			PerExampleNorms: r.PerExampleNorms, FractionClipped: r.FractionClipped, PendingExamples: r.PendingExamples,
			Metrics: r.Metrics}, nil
	})
}

// Forward queues a forward pass on client id: log-probabilities and
// per-example losses, without gradients.
func (s *Service) Forward(ctx context.Context, tenant, id string, req api.ForwardRequest) (api.Future, error) {
	sess, err := s.liveSession(ctx, tenant, id)
	if err != nil {
		return api.Future{}, err
	}
	m, _, _ := sess.base.load()
	spec, err := lossFor(sess, req.Loss)
	if err != nil {
		return api.Future{}, err
	}
	l, err := resolveLoss("loss", spec, m.Config)
	if err != nil {
		return api.Future{}, err
	}
	// A loss the request names must be computable; the client's default
	// loss is computed only when the batch carries what it needs, so that
	// forward can serve log-probabilities alone (reference policies, RL).
	withLoss := true
	b, err := checkBatch(req.Batch, m.Config, false, l, nil)
	if err != nil && req.Loss == nil {
		withLoss = false
		b, err = checkBatch(req.Batch, m.Config, false, loss.Loss{IgnoreLabel: l.IgnoreLabel}, nil)
	}
	if err != nil {
		return api.Future{}, err
	}
	return s.submit(ctx, sess, store.KindForward, nil, nil, func(ctx context.Context, det map[string]string) (any, error) {
		r, err := sess.eng.Forward(ctx, b, spec, withLoss)
		if err != nil {
			return nil, engineErr(err)
		}
		det["batch_size"] = fmt.Sprint(len(b.InputIDs))
		return api.ForwardResult{LogProbs: r.LogProbs, PerExampleLoss: r.PerExampleLoss}, nil
	})
}

// decision answers whether the next step after the admitted ones keeps ε
// within the target (sess.mu held).
func (sess *session) decision() (privacy.Decision, error) {
	b, p := sess.budget, sess.plan
	if sess.pendingSteps > 0 {
		state, err := b.MarshalBinary()
		if err != nil {
			return privacy.Decision{}, err
		}
		if b, err = privacy.ParseBudget(state); err != nil {
			return privacy.Decision{}, err
		}
		for range sess.pendingSteps {
			if err := b.RecordStep(p.q, p.sigma); err != nil {
				return privacy.Decision{}, err
			}
		}
	}
	return b.CanStep(p.q, p.sigma)
}

func budgetExceeded(b *privacy.Budget, d privacy.Decision) error {
	e := &BudgetExceededError{EpsilonWouldBe: d.Epsilon, TargetEpsilon: d.TargetEpsilon, Delta: d.Delta, Steps: b.Steps()}
	if sp, err := b.Spent(); err == nil {
		e.EpsilonSpent = sp.Epsilon
	}
	return e
}

// OptimStep queues an optim_step on client id. It is refused at once with a
// *BudgetExceededError when the step (after the ones already queued) would
// take ε past the target; then nothing is stored or queued.
func (s *Service) OptimStep(ctx context.Context, tenant, id string) (api.Future, error) {
	sess, err := s.liveSession(ctx, tenant, id)
	if err != nil {
		return api.Future{}, err
	}
	if err := errServerSampled(sess, "optim_step"); err != nil { // trainstep.go
		return api.Future{}, err
	}
	admit, release := s.reserveStep(ctx, sess, store.KindOptimStep)
	return s.submit(ctx, sess, store.KindOptimStep, admit, release, func(ctx context.Context, det map[string]string) (any, error) {
		sess.mu.Lock()
		b, p := sess.budget, sess.plan
		sess.mu.Unlock()
		if err := checkStep(b, p); err != nil {
			return nil, err
		}
		r, sp, err := s.applyStep(ctx, ctx, sess, b, p, release, det)
		if err != nil {
			return nil, err
		}
		return api.OptimStepResult{Step: int64(r.Step), LearningRate: r.LearningRate, Examples: r.Examples,
			NoiseStd: r.NoiseStd, EpsilonSpent: sp.Epsilon, Delta: sp.Delta}, nil
	})
}

// reserveStep returns the admission and release functions of a step (an
// optim_step or a train_step, named by kind) queued on sess. admit refuses
// the step, with a *BudgetExceededError and an audited denial, when it would
// take ε past the target after the steps already queued; otherwise its
// commit reserves the step. The reservation is given back exactly once by
// release: when the step is recorded (atomically with the record, so that a
// concurrent admission never counts the step twice), or when the operation
// ends otherwise.
func (s *Service) reserveStep(ctx context.Context, sess *session, kind string) (admit func() (func(), error), release func()) {
	admit = func() (func(), error) {
		d, err := sess.decision()
		if err != nil {
			return nil, fmt.Errorf("service: privacy budget: %w", err)
		}
		if !d.Allowed {
			e := budgetExceeded(sess.budget, d)
			s.record(ctx, auditDenied(sess, actorOf(ctx), kind, d))
			return nil, e
		}
		return func() { sess.pendingSteps++ }, nil
	}
	var once sync.Once
	release = func() { once.Do(func() { sess.pendingSteps-- }) }
	return admit, release
}

// checkStep is the budget check of admission again, exactly, on the worker
// now that every earlier step is done.
func checkStep(b *privacy.Budget, p *plan) error {
	d, err := b.CanStep(p.q, p.sigma)
	if err != nil {
		return fmt.Errorf("service: privacy budget: %w", err)
	}
	if !d.Allowed {
		return budgetExceeded(b, d)
	}
	return nil
}

// applyStep applies the engine's noisy update to sess under stepCtx, then
// records the step in b (giving back the reservation with release,
// atomically with the record) and persists the client under ctx. Once the
// update is applied the step is recorded and persisted whatever happens
// next. It sets det's step, epsilon_spent and example_count and returns the
// engine's result and the budget spent after the step.
func (s *Service) applyStep(ctx, stepCtx context.Context, sess *session, b *privacy.Budget, p *plan, release func(), det map[string]string) (*engine.StepResult, privacy.Spent, error) {
	r, err := sess.eng.OptimStep(stepCtx)
	if err != nil {
		return nil, privacy.Spent{}, engineErr(err)
	}
	sess.mu.Lock()
	err = b.RecordStep(p.q, p.sigma)
	release()
	sess.mu.Unlock()
	if err != nil {
		return nil, privacy.Spent{}, fmt.Errorf("service: record step: %w", err)
	}
	if err := s.persist(ctx, sess); err != nil {
		return nil, privacy.Spent{}, err
	}
	sp, err := b.Spent()
	if err != nil {
		return nil, privacy.Spent{}, fmt.Errorf("service: privacy budget: %w", err)
	}
	det["step"] = fmt.Sprint(r.Step)
	det["epsilon_spent"] = fmt.Sprintf("%.6g", sp.Epsilon)
	det["example_count"] = fmt.Sprint(r.Examples)
	return r, sp, nil
}

// persist writes the client's step and accountant state to the store.
func (s *Service) persist(ctx context.Context, sess *session) error {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	state, err := sess.budget.MarshalBinary()
	if err != nil {
		return fmt.Errorf("service: budget state: %w", err)
	}
	rec := sess.rec
	rec.Step, rec.BudgetState = int64(sess.eng.Step()), state
	return s.updateClient(ctx, sess, rec)
}

// Sample queues a sample on client id with its current adapter.
func (s *Service) Sample(ctx context.Context, tenant, id string, req api.SampleRequest) (api.Future, error) {
	sess, err := s.liveSession(ctx, tenant, id)
	if err != nil {
		return api.Future{}, err
	}
	m, tok, _ := sess.base.load()
	er, err := checkSample(req, m.Config, tok)
	if err != nil {
		return api.Future{}, err
	}
	return s.submit(ctx, sess, store.KindSample, nil, nil, func(ctx context.Context, det map[string]string) (any, error) {
		seqs, err := sess.eng.Sample(ctx, er, decoder(tok))
		if err != nil {
			return nil, engineErr(err)
		}
		out := api.SampleResult{Sequences: make([]api.Sequence, len(seqs))}
		for i, q := range seqs {
			out.Sequences[i] = api.Sequence{Tokens: q.Tokens, Text: q.Text, LogProbs: q.LogProbs, FinishReason: q.FinishReason}
		}
		det["sample_count"] = fmt.Sprint(len(seqs))
		return out, nil
	})
}

// Bounds on sampling requests.
const (
	MaxSamples     = 64
	MaxStopStrings = 16
	MaxStopLen     = 256
)

type ordinaryEncoder interface {
	EncodeOrdinary(text string) ([]int, error)
}

func checkSample(r api.SampleRequest, cfg model.Config, tok interface {
	Encode(string, bool) ([]int, error)
	BOS() (int, bool)
}) (engine.SampleRequest, error) {
	var none engine.SampleRequest
	prompt := r.PromptTokens
	switch {
	case len(r.PromptTokens) > 0 && r.Prompt != "":
		return none, fieldErr("prompt", "give prompt or prompt_tokens, not both")
	case len(r.PromptTokens) == 0 && r.Prompt == "":
		return none, fieldErr("prompt_tokens", "is required (or prompt)")
	case r.Prompt != "":
		if tok == nil {
			return none, fieldErr("prompt", "this model has no tokenizer; send prompt_tokens")
		}
		if len(r.Prompt) > 4*cfg.MaxPositions*8 {
			return none, fieldErr("prompt", "is too long")
		}
		var err error
		if oe, ok := tok.(ordinaryEncoder); ok {
			// Special tokens written in untrusted text stay text.
			prompt, err = oe.EncodeOrdinary(r.Prompt)
			if bos, ok := tok.BOS(); ok && err == nil {
				prompt = append([]int{bos}, prompt...)
			}
		} else {
			prompt, err = tok.Encode(r.Prompt, true)
		}
		if err != nil {
			return none, fieldErr("prompt", "%v", err)
		}
	}
	for i, id := range prompt {
		if id < 0 || id >= cfg.VocabSize {
			return none, fieldErr(fmt.Sprintf("prompt_tokens[%d]", i), "%d is outside the vocabulary [0, %d)", id, cfg.VocabSize)
		}
	}
	n := r.N
	if n == 0 {
		n = 1
	}
	switch {
	case r.MaxTokens < 1 || r.MaxTokens > engine.MaxSampleTokens:
		return none, fieldErr("max_tokens", "must be in [1, %d], got %d", engine.MaxSampleTokens, r.MaxTokens)
	case len(prompt)+r.MaxTokens > cfg.MaxPositions:
		return none, fieldErr("max_tokens", "prompt (%d tokens) + max_tokens (%d) exceeds the model's %d positions", len(prompt), r.MaxTokens, cfg.MaxPositions)
	case !(r.Temperature >= 0) || r.Temperature > 100:
		return none, fieldErr("temperature", "must be in [0, 100], got %v", r.Temperature)
	case !(r.TopP >= 0 && r.TopP <= 1):
		return none, fieldErr("top_p", "must be in [0, 1], got %v", r.TopP)
	case r.TopK < 0 || r.TopK > cfg.VocabSize:
		return none, fieldErr("top_k", "must be in [0, %d], got %d", cfg.VocabSize, r.TopK)
	case n < 1 || n > MaxSamples:
		return none, fieldErr("n", "must be in [1, %d], got %d", MaxSamples, r.N)
	case len(r.Stop) > MaxStopStrings:
		return none, fieldErr("stop", "at most %d stop strings", MaxStopStrings)
	case len(r.Stop) > 0 && tok == nil:
		return none, fieldErr("stop", "this model has no tokenizer; use stop_token_ids")
	case len(r.StopTokenIDs) > 256:
		return none, fieldErr("stop_token_ids", "at most 256 ids")
	}
	for i, st := range r.Stop {
		if st == "" || len(st) > MaxStopLen {
			return none, fieldErr(fmt.Sprintf("stop[%d]", i), "must be 1 to %d bytes", MaxStopLen)
		}
	}
	for i, id := range r.StopTokenIDs {
		if id < 0 || id >= cfg.VocabSize {
			return none, fieldErr(fmt.Sprintf("stop_token_ids[%d]", i), "%d is outside the vocabulary [0, %d)", id, cfg.VocabSize)
		}
	}
	return engine.SampleRequest{Prompt: prompt, MaxTokens: r.MaxTokens, Temperature: r.Temperature, TopP: r.TopP,
		TopK: r.TopK, StopTokens: r.StopTokenIDs, Stop: r.Stop, N: n, Seed: r.Seed}, nil
}

// engineErr classifies an engine error: the state-dependent refusals are
// preconditions, the rest pass through.
func engineErr(err error) error {
	switch {
	case errors.Is(err, engine.ErrPendingGradients), errors.Is(err, engine.ErrNoGradients):
		return fmt.Errorf("%w: %w", ErrFailedPrecondition, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return err
}

// auditDenied is the audit record of an optim_step refused for budget.
func auditDenied(sess *session, actor, kind string, d privacy.Decision) audit.Record {
	return audit.Record{TenantID: sess.tenant, Actor: actor, Operation: "training." + kind, Resource: sess.id,
		Outcome: audit.OutcomeDenied, Details: map[string]string{
			"error_code":       api.CodePrivacyBudgetExceeded,
			"epsilon_would_be": fmt.Sprintf("%.6g", d.Epsilon),
			"target_epsilon":   fmt.Sprintf("%.6g", d.TargetEpsilon),
			"steps":            fmt.Sprint(d.Steps - 1),
		}}
}
