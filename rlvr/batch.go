package rlvr

import (
	"fmt"

	"github.com/tensafe/tensafe/api"
)

// ignoreIndex is the label of a position without a target (Hugging Face's
// -100).
const ignoreIndex = -100

// BuildBatch turns trajectories into one api.Batch, a row per trajectory:
// input_ids are the prompt's ids followed by the completion's; labels
// repeat the completion ids and mask the prompt with -100, so only the
// completion is trained; advantages carry the trajectory's advantage and
// sampling_logprobs the sampling log-probability on every completion
// token (0 on the prompt, where no loss reads them). The value at position
// t belongs to token input_ids[t], the target predicted from position t−1,
// as the API aligns per-token arrays.
func BuildBatch(trajs []Trajectory) (api.Batch, error) {
	var b api.Batch
	for i, t := range trajs {
		if len(t.PromptTokens) == 0 {
			return api.Batch{}, fmt.Errorf("rlvr: trajectory %d: empty prompt", i)
		}
		if len(t.Tokens) == 0 {
			return api.Batch{}, fmt.Errorf("rlvr: trajectory %d: empty completion", i)
		}
		if len(t.LogProbs) != len(t.Tokens) {
			return api.Batch{}, fmt.Errorf("rlvr: trajectory %d: %d logprobs for %d tokens", i, len(t.LogProbs), len(t.Tokens))
		}
		p, n := len(t.PromptTokens), len(t.PromptTokens)+len(t.Tokens)
		ids := make([]int, 0, n)
		ids = append(append(ids, t.PromptTokens...), t.Tokens...)
		labels := make([]int, n)
		adv := make([]float64, n)
		lps := make([]float64, n)
		for j := range labels {
			if j < p {
				labels[j] = ignoreIndex
				continue
			}
			labels[j] = ids[j]
			adv[j] = t.Advantage
			lps[j] = t.LogProbs[j-p]
		}
		b.InputIDs = append(b.InputIDs, ids)
		b.Labels = append(b.Labels, labels)
		b.Advantages = append(b.Advantages, adv)
		b.SamplingLogprobs = append(b.SamplingLogprobs, lps)
	}
	return b, nil
}

// alignLogProbs checks that a forward pass's log-probabilities are one per
// input id (the API's alignment: value t is log p(input_ids[t] | before);
// 0 at t = 0 and at masked positions).
func alignLogProbs(lps [][]float64, ids [][]int) ([][]float64, error) {
	if len(lps) != len(ids) {
		return nil, fmt.Errorf("%d rows of logprobs for %d rows", len(lps), len(ids))
	}
	for i := range ids {
		if len(lps[i]) != len(ids[i]) {
			return nil, fmt.Errorf("row %d: %d logprobs for %d ids", i, len(lps[i]), len(ids[i]))
		}
	}
	return lps, nil
}
