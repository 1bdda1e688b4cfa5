package rlvr

import (
	"context"
	"errors"
	"fmt"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/client"
)

// Prompt is one task: the text the policy continues, and its reference
// answer for rewards that need one (exact_match, numeric_match).
type Prompt struct {
	Text   string `json:"prompt"`
	Answer string `json:"answer,omitempty"`
}

// Trajectory is one sampled completion of a prompt with what training
// needs: the prompt's token ids (as sample encoded them), the completion's
// ids and their sampling log-probabilities, and its reward.
type Trajectory struct {
	Prompt       int // index into the prompts given to Rollout
	Group        int // index of the prompt's group within the rollout
	PromptTokens []int
	Tokens       []int     // completion ids (the stop token included when it ended the sequence)
	LogProbs     []float64 // log q(token) under the sampling distribution, one per Tokens
	Text         string    // the completion's text
	FinishReason string
	Reward       float64
	Advantage    float64
}

// SamplingParams configure the rollouts. Temperature 1 (the default when
// zero is not asked for explicitly through Greedy) makes the sampling
// log-probabilities the policy's own, which the importance ratio of the
// losses assumes.
type SamplingParams struct {
	// N is the number of completions per prompt (the group size; ≥ 1).
	N         int
	MaxTokens int
	// Temperature scales the logits; 0 means 1.
	Temperature float64
	TopP        float64
	TopK        int
	Stop        []string
}

// Rollout samples p.N completions of each prompt from tc's current policy
// through the sample endpoint, scores them with reward and returns them
// grouped by prompt (groups[i] are the completions of prompts[i]). seeds
// gives one sampling seed per prompt. The prompt ids come from the
// tokenize endpoint with special tokens added, which is exactly how sample
// encodes a text prompt, so training sees the tokens that were sampled.
func Rollout(ctx context.Context, tc *client.TrainingClient, svc *client.ServiceClient, model string,
	prompts []Prompt, seeds []uint64, p SamplingParams, reward RewardFunc) ([][]Trajectory, error) {
	if len(prompts) == 0 {
		return nil, errors.New("rlvr: rollout: no prompts")
	}
	if len(seeds) != len(prompts) {
		return nil, fmt.Errorf("rlvr: rollout: %d seeds for %d prompts", len(seeds), len(prompts))
	}
	if p.N < 1 {
		return nil, fmt.Errorf("rlvr: rollout: n must be ≥ 1, got %d", p.N)
	}
	if reward == nil {
		return nil, errors.New("rlvr: rollout: no reward")
	}
	promptIDs := make([][]int, 0, len(prompts))
	for i := 0; i < len(prompts); i += api.MaxTokenizeTexts {
		chunk := prompts[i:min(len(prompts), i+api.MaxTokenizeTexts)]
		texts := make([]string, len(chunk))
		for j, pr := range chunk {
			texts[j] = pr.Text
		}
		tok, err := svc.TokenizeRequest(ctx, api.TokenizeRequest{Model: model, Texts: texts, AddSpecialTokens: true})
		if err != nil {
			return nil, fmt.Errorf("rlvr: rollout: tokenize prompts: %w", err)
		}
		promptIDs = append(promptIDs, tok.InputIDs...)
	}
	temp := p.Temperature
	if temp == 0 {
		temp = 1
	}
	// Submit every prompt's sample first: the server queues them in order
	// while the first ones run.
	futs := make([]*client.Future[api.SampleResult], len(prompts))
	for i := range prompts {
		f, err := tc.Sample(ctx, api.SampleRequest{PromptTokens: promptIDs[i], MaxTokens: p.MaxTokens, Temperature: temp,
			TopP: p.TopP, TopK: p.TopK, Stop: p.Stop, N: p.N, Seed: seeds[i]})
		if err != nil {
			return nil, fmt.Errorf("rlvr: rollout: sample prompt %d: %w", i, err)
		}
		futs[i] = f
	}
	groups := make([][]Trajectory, len(prompts))
	for i, f := range futs {
		res, err := f.Result(ctx)
		if err != nil {
			return nil, fmt.Errorf("rlvr: rollout: sample prompt %d: %w", i, err)
		}
		if len(res.Sequences) != p.N {
			return nil, fmt.Errorf("rlvr: rollout: prompt %d: %d sequences, asked for %d", i, len(res.Sequences), p.N)
		}
		g := make([]Trajectory, p.N)
		for j, seq := range res.Sequences {
			if len(seq.LogProbs) != len(seq.Tokens) {
				return nil, fmt.Errorf("rlvr: rollout: prompt %d: %d logprobs for %d tokens", i, len(seq.LogProbs), len(seq.Tokens))
			}
			r, err := reward(Sample{Prompt: prompts[i].Text, Completion: seq.Text, Answer: prompts[i].Answer})
			if err != nil {
				return nil, fmt.Errorf("rlvr: reward of prompt %d, sample %d: %w", i, j, err)
			}
			g[j] = Trajectory{Prompt: i, Group: i, PromptTokens: promptIDs[i], Tokens: seq.Tokens, LogProbs: seq.LogProbs,
				Text: seq.Text, FinishReason: seq.FinishReason, Reward: r}
		}
		groups[i] = g
	}
	return groups, nil
}
