package api

// ForwardBackwardCustomRequest is the body of
// POST .../{id}/forward_backward_custom: a loss computed by the client.
// LogprobGrads[i][t] is d loss_i / d logp_t for the token input_ids[i][t],
// aligned like labels and like forward's logprobs (the value at t = 0 and
// at positions without a target is ignored). The server backpropagates
// Σ_t g_t·logp_t per example, clips each example's gradient and accumulates
// it like forward_backward, so the DP guarantee is unchanged. Losses, if
// given (one per row), are only reported back in the result.
type ForwardBackwardCustomRequest struct {
	Batch        Batch       `json:"batch"`
	LogprobGrads [][]float64 `json:"logprob_grads"`
	Losses       []float64   `json:"losses,omitempty"`
}
