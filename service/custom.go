package service

import (
	"context"
	"fmt"
	"math"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/loss"
	"github.com/tensafe/tensafe/tssp"
)

// kindForwardBackwardCustom is the operation kind of forward_backward_custom.
const kindForwardBackwardCustom = "forward_backward_custom"

// ForwardBackwardCustom queues a forward_backward with a client-side loss:
// the client sends d loss / d logp_t per token and the engine backpropagates
// Σ_t g_t·logp_t per example, clips and accumulates it like
// forward_backward, so the DP guarantee is the same. The result reports the
// client's losses when it sent them (the engine's surrogate values mean
// nothing to the client).
func (s *Service) ForwardBackwardCustom(ctx context.Context, tenant, id string, req api.ForwardBackwardCustomRequest) (api.Future, error) {
	sess, err := s.liveSession(ctx, tenant, id)
	if err != nil {
		return api.Future{}, err
	}
	if err := errServerSampled(sess, "forward_backward_custom"); err != nil { // trainstep.go
		return api.Future{}, err
	}
	m, _, _ := sess.base.load()
	if req.LogprobGrads == nil {
		return api.Future{}, fieldErr("logprob_grads", "is required (d loss / d logp per token, aligned with batch.input_ids)")
	}
	b, err := checkBatch(req.Batch, m.Config, true, loss.LogProbSurrogate(), req.LogprobGrads)
	if err != nil {
		return api.Future{}, err
	}
	if req.Losses != nil && len(req.Losses) != len(b.InputIDs) {
		return api.Future{}, fieldErr("losses", "has %d entries, the batch has %d rows", len(req.Losses), len(b.InputIDs))
	}
	for i, v := range req.Losses {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return api.Future{}, fieldErr(fmt.Sprintf("losses[%d]", i), "must be finite, got %v", v)
		}
	}
	grads := req.LogprobGrads
	return s.submit(ctx, sess, kindForwardBackwardCustom, nil, nil, func(ctx context.Context, det map[string]string) (any, error) {
		r, err := sess.eng.ForwardBackwardCustom(ctx, b, grads)
		if err != nil {
			return nil, engineErr(err)
		}
		det["batch_size"] = fmt.Sprint(len(b.InputIDs))
		det["loss_type"] = "custom"
		det[tssp.BatchDigestDetail] = BatchDigest(req.Batch) // packages.go: the dataset fingerprint
		res := api.ForwardBackwardResult{Tokens: r.Tokens, PerExampleNorms: r.PerExampleNorms,
			FractionClipped: r.FractionClipped, PendingExamples: r.PendingExamples}
		if req.Losses != nil {
			res.PerExampleLoss = append([]float64(nil), req.Losses...)
			for _, v := range req.Losses {
				res.Loss += v
			}
			res.Loss /= float64(len(req.Losses))
		}
		return res, nil
	})
}
