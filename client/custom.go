package client

import (
	"context"
	"fmt"

	"github.com/tensafe/tensafe/api"
)

// CustomLossFunc computes a loss on the client from the per-token
// log-probabilities of a batch (logprobs[i][t] is log p(input_ids[i][t] |
// tokens before it), aligned with input_ids; 0 at t = 0 and where there is
// no target). It returns one loss per row (reported back only; may be nil)
// and grads[i][t] = d loss / d logprobs[i][t], aligned the same way.
type CustomLossFunc func(logprobs [][]float64) (losses []float64, grads [][]float64, err error)

// ForwardBackwardCustom trains on a loss computed here, like Tinker's
// forward_backward_custom: it runs forward to get the batch's
// log-probabilities under the current adapter, calls fn, and sends fn's
// gradients with respect to the log-probabilities. The server
// backpropagates Σ_t g_t·logp_t per example, clips each example's gradient
// and accumulates it like ForwardBackward, so the DP guarantee is the same.
// It waits for the forward pass; the returned future is the backward pass.
func (tc *TrainingClient) ForwardBackwardCustom(ctx context.Context, batch api.Batch, fn CustomLossFunc) (*Future[api.ForwardBackwardResult], error) {
	if fn == nil {
		return nil, fmt.Errorf("client: forward_backward_custom: nil loss function")
	}
	fwd, err := tc.Forward(ctx, batch, nil)
	if err != nil {
		return nil, fmt.Errorf("client: forward_backward_custom: forward: %w", err)
	}
	res, err := fwd.Result(ctx)
	if err != nil {
		return nil, fmt.Errorf("client: forward_backward_custom: forward: %w", err)
	}
	losses, grads, err := fn(res.LogProbs)
	if err != nil {
		return nil, fmt.Errorf("client: forward_backward_custom: loss function: %w", err)
	}
	if grads == nil {
		return nil, fmt.Errorf("client: forward_backward_custom: the loss function returned no gradients")
	}
	return tc.ForwardBackwardCustomGrads(ctx, api.ForwardBackwardCustomRequest{Batch: batch, LogprobGrads: grads, Losses: losses})
}

// ForwardBackwardCustomGrads sends gradients with respect to the
// log-probabilities computed elsewhere (POST .../forward_backward_custom).
func (tc *TrainingClient) ForwardBackwardCustomGrads(ctx context.Context, req api.ForwardBackwardCustomRequest) (*Future[api.ForwardBackwardResult], error) {
	return submit[api.ForwardBackwardResult](ctx, tc, "forward_backward_custom", req)
}
