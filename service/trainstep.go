package service

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/engine"
	"github.com/tensafe/tensafe/loss"
	"github.com/tensafe/tensafe/model"
	"github.com/tensafe/tensafe/privacy"
	"github.com/tensafe/tensafe/store"
)

// Server-sampled training: a client created with dp_config.sampling
// "server" names a dataset the tenant registered (datasets.go), and every
// step is one train_step — the server draws a Poisson batch from the
// dataset (each row independently with probability q = expected_batch_size
// / rows, from crypto/rand), runs forward_backward on it and optim_step, as
// one operation. The client never chooses a batch, so the accountant's q is
// the true sampling rate: DP metrics and certificates say "server-poisson"
// and the certificate's dataset fingerprint is the dataset's content hash.
// forward_backward, forward_backward_custom and optim_step are refused on
// such a client (they would let the client choose what a step sees).

// kindTrainStep is the operation kind of train_step; opTrainStep its audit
// operation.
const (
	kindTrainStep = "train_step"
	opTrainStep   = "training.train_step"
)

// sampledData is the dataset a server-sampled session draws from, kept
// decrypted in memory between steps (session.data).
type sampledData struct {
	id, hash string
	rows     []api.DatasetExample
}

// resolveDataset completes the plan of a server-sampled client being
// created from request cfg: the dataset must be the tenant's and fit the
// model, and its rows become dp_config.dataset_size (which the request must
// not declare) and so q. It returns the rows read, or nil for a
// client-declared plan.
func (s *Service) resolveDataset(ctx context.Context, tenant string, cfg api.TrainingConfig, p *plan, mc model.Config) (*sampledData, error) {
	if !p.serverSampled() {
		return nil, nil
	}
	if cfg.DP.DatasetSize != 0 {
		return nil, fieldErr("dp_config.dataset_size", "must not be declared with sampling %q: it is the number of rows of the dataset dp_config.dataset_id names", api.SamplingServer)
	}
	a, err := s.dataset(ctx, tenant, p.cfg.DP.DatasetID, "dp_config.dataset_id")
	if err != nil {
		return nil, err
	}
	rows, err := s.readDataset(ctx, a)
	if err != nil {
		return nil, err
	}
	l, err := resolveLoss("loss", p.loss, mc)
	if err != nil {
		return nil, err
	}
	if err := checkDatasetFor(rows, mc, l.Ignore(), "dp_config.dataset_id"); err != nil {
		return nil, err
	}
	n := int64(len(rows))
	if int64(p.cfg.DP.ExpectedBatchSize) > n {
		return nil, fieldErr("dp_config.expected_batch_size", "%d exceeds the %d rows of dataset %s", p.cfg.DP.ExpectedBatchSize, n, a.ID)
	}
	p.cfg.DP.DatasetSize = n
	p.q = float64(p.cfg.DP.ExpectedBatchSize) / float64(n)
	return &sampledData{id: a.ID, hash: a.ContentHash, rows: rows}, nil
}

// errClientSampled refuses a request that would feed a client-chosen batch
// (or step) to a server-sampled client.
func errServerSampled(sess *session, op string) error {
	sess.mu.Lock()
	server := sess.plan.serverSampled()
	sess.mu.Unlock()
	if !server {
		return nil
	}
	return fmt.Errorf("%w: the training client samples its batches on the server (dp_config.sampling %q): %s would break the sampling rate the accountant assumes; use train_step (forward and sample stay allowed)",
		ErrFailedPrecondition, api.SamplingServer, op)
}

// poissonDraw returns the indices of n rows each included independently
// with probability q, in increasing order (possibly none). Each row's coin
// is 53 bits from crypto/rand: row i is drawn when u_i / 2^53 < q. Nobody,
// the caller included, can predict or replay a draw.
func poissonDraw(q float64, n int) ([]int, error) {
	if !(q >= 0 && q <= 1) || n < 0 {
		return nil, fmt.Errorf("service: poisson draw: rate %v, rows %d", q, n)
	}
	var out []int
	buf := make([]byte, 8*min(n, 8192))
	for i := 0; i < n; {
		k := min(n-i, len(buf)/8)
		if _, err := rand.Read(buf[:8*k]); err != nil {
			return nil, fmt.Errorf("service: poisson draw: %w", err)
		}
		for j := range k {
			if float64(binary.BigEndian.Uint64(buf[8*j:])>>11)/(1<<53) < q {
				out = append(out, i+j)
			}
		}
		i += k
	}
	return out, nil
}

// drawnBatches turns the drawn rows into batches of at most
// engine.MaxBatchSize rows, labels defaulting to input_ids and weights to 1.
func drawnBatches(rows []api.DatasetExample, idx []int) []api.Batch {
	var out []api.Batch
	for len(idx) > 0 {
		k := min(len(idx), engine.MaxBatchSize)
		var b api.Batch
		weighted := false
		for _, i := range idx[:k] {
			weighted = weighted || rows[i].Weights != nil
		}
		for _, i := range idx[:k] {
			r := rows[i]
			b.InputIDs = append(b.InputIDs, r.InputIDs)
			labels := r.Labels
			if labels == nil {
				labels = r.InputIDs
			}
			b.Labels = append(b.Labels, labels)
			if weighted {
				w := r.Weights
				if w == nil {
					w = make([]float64, len(r.InputIDs))
					for j := range w {
						w[j] = 1
					}
				}
				b.Weights = append(b.Weights, w)
			}
		}
		out = append(out, b)
		idx = idx[k:]
	}
	return out
}

// sampled returns the rows of the dataset the session draws from: the
// dataset must still exist (a deleted one fails the step clearly), and the
// cached rows are used only while its content hash is the one read.
func (s *Service) sampled(ctx context.Context, sess *session, datasetID string) (*sampledData, error) {
	a, err := s.sampledDataset(ctx, sess, datasetID)
	if err != nil {
		return nil, err
	}
	sess.mu.Lock()
	d := sess.data
	sess.mu.Unlock()
	if d != nil && d.id == a.ID && d.hash == a.ContentHash {
		return d, nil
	}
	rows, err := s.readDataset(ctx, a)
	if err != nil {
		return nil, err
	}
	d = &sampledData{id: a.ID, hash: a.ContentHash, rows: rows}
	sess.mu.Lock()
	sess.data = d
	sess.mu.Unlock()
	return d, nil
}

// sampledDataset returns the record of the dataset the session draws
// from; a deleted one is ErrFailedPrecondition naming it, and drops the
// cached rows.
func (s *Service) sampledDataset(ctx context.Context, sess *session, datasetID string) (store.Artifact, error) {
	a, err := s.dataset(ctx, sess.tenant, datasetID, "dp_config.dataset_id")
	if errors.Is(err, ErrNotFound) {
		sess.mu.Lock()
		sess.data = nil
		sess.mu.Unlock()
		return a, fmt.Errorf("%w: dataset %s, which the client samples from (dp_config.dataset_id), no longer exists (deleted or expired); train_step cannot draw a batch. The client's adapter and spent budget are kept: save_state and sample still work",
			ErrFailedPrecondition, datasetID)
	}
	return a, err
}

// TrainStep queues a train_step on server-sampled client id: a Poisson
// draw from the client's dataset, forward_backward on the drawn rows with
// the client's loss (or req.Loss), and optim_step, as one operation. An
// empty draw is a noise-only step (skipping it would reveal it). Like
// OptimStep it is refused at once with a *BudgetExceededError when the
// step would take ε past the target. On a client-sampled client it is
// ErrFailedPrecondition.
func (s *Service) TrainStep(ctx context.Context, tenant, id string, req api.TrainStepRequest) (api.Future, error) {
	sess, err := s.session(ctx, tenant, id)
	if err != nil {
		return api.Future{}, err
	}
	if err := sess.errLost(); err != nil {
		return api.Future{}, err
	}
	sess.mu.Lock()
	p := sess.plan
	sess.mu.Unlock()
	if !p.serverSampled() {
		return api.Future{}, fmt.Errorf("%w: train_step draws batches from a registered dataset: create the training client with dp_config.sampling %q and dp_config.dataset_id; this client builds its own batches (forward_backward, optim_step)",
			ErrFailedPrecondition, api.SamplingServer)
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
	if l.Group() > 1 {
		return api.Future{}, fieldErr("loss", "%s takes groups of %d rows; a Poisson draw takes single rows (one example each)", spec.Type, l.Group())
	}
	if err := engine.CheckLossInputs(engine.Batch{InputIDs: [][]int{{0, 0}}, Labels: [][]int{{0, 0}}}, l, nil); err != nil {
		return api.Future{}, fieldErr("loss", "%s needs inputs a dataset row does not have (%v); train_step trains on input_ids, labels and weights", spec.Type, err)
	}
	// The rows are read on the worker; here only the dataset's existence.
	if _, err := s.sampledDataset(ctx, sess, p.cfg.DP.DatasetID); err != nil {
		return api.Future{}, err
	}
	admit, release := s.reserveStep(ctx, sess, kindTrainStep)
	return s.submit(ctx, sess, kindTrainStep, admit, release, func(ctx context.Context, det map[string]string) (any, error) {
		return s.trainStep(ctx, sess, spec, l, release, det)
	})
}

// trainStep runs one train_step on the session's worker.
func (s *Service) trainStep(ctx context.Context, sess *session, spec loss.Spec, l loss.Loss, release func(), det map[string]string) (any, error) {
	sess.mu.Lock()
	b, p := sess.budget, sess.plan
	sess.mu.Unlock()
	if !p.serverSampled() { // a load_state queued before this step changed the plan
		return nil, errServerSampled(sess, "train_step")
	}
	if err := checkStep(b, p); err != nil {
		return nil, err
	}
	data, err := s.sampled(ctx, sess, p.cfg.DP.DatasetID)
	if err != nil {
		return nil, err
	}
	if n := int64(len(data.rows)); n != p.cfg.DP.DatasetSize {
		return nil, fmt.Errorf("%w: dataset %s has %d rows, the client's accountant assumes %d", ErrFailedPrecondition, data.id, n, p.cfg.DP.DatasetSize)
	}
	m, _, _ := sess.base.load()
	idx, err := poissonDraw(p.q, len(data.rows))
	if err != nil {
		return nil, err
	}
	// Validate every batch before the first is accumulated: a bad row
	// fails the step with nothing changed.
	batches := drawnBatches(data.rows, idx)
	ebs := make([]engine.Batch, len(batches))
	for i, bt := range batches {
		if ebs[i], err = checkBatch(bt, m.Config, true, l, nil); err != nil {
			return nil, fmt.Errorf("%w: dataset %s: %w", ErrFailedPrecondition, data.id, err)
		}
	}
	res := api.TrainStepResult{DatasetRows: int64(len(data.rows)), SamplingRate: p.q}
	var lossSum, clipped float64
	var fbErr error
	for _, eb := range ebs {
		r, err := sess.eng.ForwardBackward(ctx, eb, spec)
		if err != nil {
			fbErr = engineErr(err)
			break
		}
		k := float64(len(eb.InputIDs))
		lossSum += r.Loss * k
		clipped += r.FractionClipped * k
		res.Tokens += r.Tokens
	}
	if fbErr != nil && sess.eng.PendingExamples() == 0 {
		return nil, fbErr // nothing accumulated: nothing released
	}
	// Gradients of drawn rows are accumulated: they are released only
	// noised, in this step, whatever happens (a context canceled after the
	// draw still completes the step; the accountant records it).
	r, sp, err := s.applyStep(ctx, context.WithoutCancel(ctx), sess, b, p, release, det)
	if err != nil {
		return nil, err
	}
	det["loss_type"] = spec.Type
	det["dataset_id"] = data.id
	det["dataset_hash"] = data.hash
	if fbErr != nil {
		return nil, fmt.Errorf("service: train_step: forward_backward failed after %d of %d drawn examples were accumulated; the step was completed with them (step %d, recorded): %w",
			r.Examples, len(idx), r.Step, fbErr)
	}
	res.Step, res.Examples, res.LearningRate, res.NoiseStd = int64(r.Step), r.Examples, r.LearningRate, r.NoiseStd
	res.EpsilonSpent, res.Delta = sp.Epsilon, sp.Delta
	if r.Examples > 0 {
		res.Loss, res.FractionClipped = lossSum/float64(r.Examples), clipped/float64(r.Examples)
	}
	return res, nil
}

// sampling returns how the run h describes chose its batches, for the DP
// certificate of an accountant of steps steps: server-poisson, with the
// dataset's content hash as fingerprint, when the client is server-sampled
// and every step of the accountant is a train_step of the run (its lineage
// through load_state included) from one dataset; otherwise
// client-declared, with the fingerprint of the client batches' digests. A
// run that mixed the two is client-declared: its q was, for some steps, the
// client's word. So is an accountant holding steps the run's entries do not
// show (a composed load_state brings in the client's earlier steps): the
// rule errs towards client-declared.
func (h *history) sampling(cfg api.TrainingConfig, steps int64) (privacy.Sampling, string) {
	declared := func() (privacy.Sampling, string) { return privacy.SamplingClientDeclared, h.fingerprint() }
	if cfg.DP == nil || cfg.DP.Sampling != api.SamplingServer {
		return declared()
	}
	hash, n := "", int64(0)
	for _, e := range h.entries {
		switch e.Operation {
		case "training." + store.KindForwardBackward, "training." + kindForwardBackwardCustom, "training." + store.KindOptimStep:
			return declared()
		case opTrainStep:
			d := e.Details["dataset_hash"]
			if d == "" || (hash != "" && d != hash) {
				return declared()
			}
			hash = d
			n++
		}
	}
	if hash == "" || n != steps {
		return declared()
	}
	return privacy.SamplingServerPoisson, hash
}
