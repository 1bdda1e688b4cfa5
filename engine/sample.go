package engine

import (
	"context"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"sort"
	"strings"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/tensafe/tensafe/model"
)

// Decoder turns token ids into text; the sampler needs it for stop strings
// and for the text of each sample.
type Decoder interface {
	Decode(ids []int, skipSpecial bool) (string, error)
}

// SampleRequest asks for completions of one prompt.
type SampleRequest struct {
	Prompt      []int    `json:"prompt_tokens"`
	MaxTokens   int      `json:"max_tokens"`
	Temperature float64  `json:"temperature"` // 0: greedy
	TopP        float64  `json:"top_p"`       // 0 or 1: off
	TopK        int      `json:"top_k"`       // 0: off
	StopTokens  []int    `json:"stop_token_ids,omitempty"`
	Stop        []string `json:"stop,omitempty"` // stop strings (need a Decoder)
	N           int      `json:"n"`              // samples; 0 means 1
	Seed        uint64   `json:"seed"`
	NoCache     bool     `json:"-"` // recompute the whole prefix each token (for tests and benchmarks)
}

// Sequence is one generated sample.
type Sequence struct {
	Tokens       []int     `json:"tokens"`
	Text         string    `json:"text,omitempty"`
	LogProbs     []float64 `json:"logprobs"` // log-probability of each token under the sampling distribution
	FinishReason string    `json:"finish_reason"`
}

// MaxSampleTokens bounds max_tokens.
const MaxSampleTokens = 4096

// Sample generates N continuations of the prompt with the current adapter.
// Temperature 0 is greedy decoding. Log-probabilities are those of the
// distribution sampled from (temperature-scaled, before top-k/top-p
// truncation); at temperature 0 they are the model's own.
func (e *Engine) Sample(ctx context.Context, req SampleRequest, dec Decoder) ([]Sequence, error) {
	if err := checkCtx(ctx); err != nil {
		return nil, err
	}
	c := e.model.Config
	n := req.N
	if n == 0 {
		n = 1
	}
	switch {
	case len(req.Prompt) == 0:
		return nil, fmt.Errorf("engine: sample: prompt is empty")
	case req.MaxTokens <= 0 || req.MaxTokens > MaxSampleTokens:
		return nil, fmt.Errorf("engine: sample: max_tokens must be in [1, %d], got %d", MaxSampleTokens, req.MaxTokens)
	case !(req.Temperature >= 0) || math.IsInf(req.Temperature, 0):
		return nil, fmt.Errorf("engine: sample: temperature must be ≥ 0 and finite, got %v", req.Temperature)
	case !(req.TopP >= 0 && req.TopP <= 1):
		return nil, fmt.Errorf("engine: sample: top_p must be in [0, 1], got %v", req.TopP)
	case req.TopK < 0:
		return nil, fmt.Errorf("engine: sample: top_k must be ≥ 0, got %d", req.TopK)
	case n < 0 || n > 64:
		return nil, fmt.Errorf("engine: sample: n must be in [1, 64], got %d", req.N)
	case len(req.Prompt)+req.MaxTokens > c.MaxPositions:
		return nil, fmt.Errorf("engine: sample: prompt (%d tokens) + max_tokens (%d) exceeds the model's %d positions", len(req.Prompt), req.MaxTokens, c.MaxPositions)
	case len(req.Stop) > 0 && dec == nil:
		return nil, fmt.Errorf("engine: sample: stop strings need a tokenizer")
	}
	for i, id := range req.Prompt {
		if id < 0 || id >= c.VocabSize {
			return nil, fmt.Errorf("engine: sample: prompt_tokens[%d] = %d is outside the vocabulary [0, %d)", i, id, c.VocabSize)
		}
	}
	for i, id := range req.StopTokens {
		if id < 0 || id >= c.VocabSize {
			return nil, fmt.Errorf("engine: sample: stop_token_ids[%d] = %d is outside the vocabulary", i, id)
		}
	}
	// A model's vocabulary may be padded past its tokenizer's (tensafe-tiny:
	// 264 rows, 259 byte-tokenizer ids): never sample an id the tokenizer
	// cannot decode.
	known := c.VocabSize
	if v, ok := dec.(interface{ VocabSize() int }); ok && v.VocabSize() > 0 && v.VocabSize() < known {
		known = v.VocabSize()
	}
	stopIDs := map[int]bool{}
	for _, id := range append(append([]int{}, c.EOS...), req.StopTokens...) {
		stopIDs[id] = true
	}

	e.mu.Lock()
	lora := e.loraTensors()
	e.mu.Unlock()

	s := &sampler{e: e, lora: lora, n: n, promptLen: len(req.Prompt)}
	total := len(req.Prompt) + req.MaxTokens
	s.maxLen = min((total+63)/64*64, c.MaxPositions)
	var next func(ctx context.Context, tokens [][]int) ([][]float32, error)
	if req.NoCache {
		next = s.nextNoCache
	} else {
		next = s.nextCached
	}
	rng := mrand.New(mrand.NewPCG(req.Seed, req.Seed^0xda942042e4dd58b5))
	seqs := make([]Sequence, n)
	tokens := make([][]int, n)
	for i := range tokens {
		tokens[i] = append([]int{}, req.Prompt...)
	}
	done := make([]bool, n)
	for step := 0; step < req.MaxTokens; step++ {
		if err := checkCtx(ctx); err != nil {
			return nil, err
		}
		logits, err := next(ctx, tokens)
		if err != nil {
			return nil, err
		}
		allDone := true
		for i := range seqs {
			if done[i] {
				// Keep the row in the batch (fixed shapes) but ignore it.
				tokens[i] = append(tokens[i], tokens[i][len(tokens[i])-1])
				continue
			}
			tok, lp := pick(logits[i][:known], req.Temperature, req.TopK, req.TopP, rng)
			tokens[i] = append(tokens[i], tok)
			seqs[i].Tokens = append(seqs[i].Tokens, tok)
			seqs[i].LogProbs = append(seqs[i].LogProbs, lp)
			if stopIDs[tok] {
				seqs[i].FinishReason, done[i] = "stop", true
			} else if len(req.Stop) > 0 {
				text, err := dec.Decode(seqs[i].Tokens, true)
				if err != nil {
					return nil, fmt.Errorf("engine: sample: decode: %w", err)
				}
				for _, st := range req.Stop {
					if st != "" && strings.Contains(text, st) {
						seqs[i].FinishReason, done[i] = "stop", true
						break
					}
				}
			}
			allDone = allDone && done[i]
		}
		if allDone {
			break
		}
	}
	for i := range seqs {
		if seqs[i].FinishReason == "" {
			seqs[i].FinishReason = "length"
		}
		if dec != nil {
			text, err := dec.Decode(seqs[i].Tokens, true)
			if err != nil {
				return nil, fmt.Errorf("engine: sample: decode: %w", err)
			}
			for _, st := range req.Stop {
				if i := strings.Index(text, st); st != "" && i >= 0 {
					text = text[:i]
				}
			}
			seqs[i].Text = text
		}
	}
	return seqs, nil
}

// pick chooses the next token from logits and returns it with its
// log-probability under the (temperature-scaled) distribution.
func pick(logits []float32, temp float64, topK int, topP float64, rng *mrand.Rand) (int, float64) {
	t := temp
	if t == 0 {
		t = 1
	}
	// log-softmax in float64.
	maxv := math.Inf(-1)
	for _, v := range logits {
		maxv = math.Max(maxv, float64(v)/t)
	}
	var sum float64
	for _, v := range logits {
		sum += math.Exp(float64(v)/t - maxv)
	}
	lse := maxv + math.Log(sum)
	logp := func(i int) float64 { return float64(logits[i])/t - lse }
	if temp == 0 {
		best := 0
		for i, v := range logits {
			if v > logits[best] {
				best = i
			}
		}
		return best, logp(best)
	}
	idx := make([]int, len(logits))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return logits[idx[a]] > logits[idx[b]] })
	if topK > 0 && topK < len(idx) {
		idx = idx[:topK]
	}
	probs := make([]float64, len(idx))
	var mass float64
	for k, i := range idx {
		probs[k] = math.Exp(logp(i))
		mass += probs[k]
	}
	if topP > 0 && topP < 1 {
		var cum float64
		cut := len(idx)
		for k := range idx {
			cum += probs[k] / mass
			if cum >= topP {
				cut = k + 1
				break
			}
		}
		idx, probs = idx[:cut], probs[:cut]
		mass = 0
		for _, p := range probs {
			mass += p
		}
	}
	r := rng.Float64() * mass
	for k, p := range probs {
		r -= p
		if r <= 0 {
			return idx[k], logp(idx[k])
		}
	}
	last := idx[len(idx)-1]
	return last, logp(last)
}

// sampler holds one Sample call's state: the KV cache between steps.
type sampler struct {
	e         *Engine
	lora      []*tensors.Tensor
	n         int
	promptLen int
	maxLen    int
	pos       int               // tokens already in the cache
	cache     []*tensors.Tensor // 2·layers tensors [n, KV, maxLen, D]
}

func (s *sampler) baseArgs() []any {
	var args []any
	for _, w := range s.e.model.Weights() {
		args = append(args, w)
	}
	for _, w := range s.lora {
		args = append(args, w)
	}
	return args
}

// lastLogits extracts row position pos of logits [n, T, V].
func lastLogits(t *tensors.Tensor, pos int) [][]float32 {
	dims := t.Shape().Dimensions
	n, T, V := dims[0], dims[1], dims[2]
	flat := tensors.MustCopyFlatData[float32](t)
	out := make([][]float32, n)
	for i := range out {
		out[i] = flat[(i*T+pos)*V : (i*T+pos+1)*V]
	}
	return out
}

// nextCached feeds the tokens not yet in the cache (the whole prompt the
// first time, then one token) and returns the next-token logits.
func (s *sampler) nextCached(ctx context.Context, tokens [][]int) ([][]float32, error) {
	e := s.e
	m := e.model
	c := m.Config
	if s.cache == nil {
		kv := make([]float32, s.n*c.KVHeads*s.maxLen*c.HeadDim)
		for i := 0; i < 2*c.Layers; i++ {
			s.cache = append(s.cache, tensors.FromFlatDataAndDimensions(kv, s.n, c.KVHeads, s.maxLen, c.HeadDim))
		}
	}
	chunk := len(tokens[0]) - s.pos
	// Pad the prompt chunk to a bucket so prompts of similar length share a
	// compiled graph; padded positions are overwritten before any query
	// can see them (causal mask).
	T := chunk
	if chunk > 1 {
		T = min((chunk+seqBucket-1)/seqBucket*seqBucket, s.maxLen-s.pos)
	}
	ids := make([]int32, s.n*T)
	for i := range tokens {
		for j := 0; j < chunk; j++ {
			ids[i*T+j] = int32(tokens[i][s.pos+j])
		}
	}
	exec, err := e.graphs.get("sample/cached", func() (*Exec, error) {
		return NewExec(e.backend, buildDecode(m, e.lora))
	})
	if err != nil {
		return nil, fmt.Errorf("engine: build graph: %w", err)
	}
	cos, sin := m.RotaryTables(s.pos, T)
	args := []any{tensors.FromFlatDataAndDimensions(ids, s.n, T), cos, sin, tensors.FromScalar(int32(s.pos))}
	for _, t := range s.cache {
		args = append(args, t)
	}
	args = append(args, s.baseArgs()...)
	out, err := run(exec, args)
	if err != nil {
		return nil, err
	}
	s.cache = out[1:]
	logits := lastLogits(out[0], chunk-1)
	s.pos += chunk
	return logits, nil
}

// nextNoCache runs the whole sequence, padded to maxLen, and returns the
// logits at its last position.
func (s *sampler) nextNoCache(ctx context.Context, tokens [][]int) ([][]float32, error) {
	e := s.e
	m := e.model
	T := s.maxLen
	L := len(tokens[0])
	ids := make([]int32, s.n*T)
	for i := range tokens {
		for j, t := range tokens[i] {
			ids[i*T+j] = int32(t)
		}
	}
	exec, err := e.graphs.get("sample/nocache", func() (*Exec, error) {
		return NewExec(e.backend, buildFull(m, e.lora))
	})
	if err != nil {
		return nil, fmt.Errorf("engine: build graph: %w", err)
	}
	cos, sin := m.RotaryTables(0, T)
	args := append([]any{tensors.FromFlatDataAndDimensions(ids, s.n, T), cos, sin}, s.baseArgs()...)
	out, err := run(exec, args)
	if err != nil {
		return nil, err
	}
	return lastLogits(out[0], L-1), nil
}

// buildDecode: inputs ids [n, T], cos, sin, pos, 2·layers caches, base, LoRA;
// outputs logits [n, T, V] and the updated caches.
func buildDecode(m *model.Model, lora *model.LoRA) func([]*Node) []*Node {
	L := m.Config.Layers
	nBase := len(m.ParamNames())
	return func(in []*Node) []*Node {
		cache := &model.Cache{Pos: in[3]}
		for i := 0; i < L; i++ {
			cache.Keys = append(cache.Keys, in[4+2*i])
			cache.Values = append(cache.Values, in[4+2*i+1])
		}
		rest := in[4+2*L:]
		base := m.BindBase(rest[:nBase])
		nodes := bindLoRA(lora, rest[nBase:])
		hidden := m.Forward(base, lora.Adapter(nodes, false, nil), model.Inputs{IDs: in[0], Cos: in[1], Sin: in[2], Cache: cache})
		out := []*Node{m.Logits(base, hidden)}
		for i := 0; i < L; i++ {
			out = append(out, cache.Keys[i], cache.Values[i])
		}
		return out
	}
}

// buildFull: inputs ids [n, T], cos, sin, base, LoRA; output logits [n, T, V].
func buildFull(m *model.Model, lora *model.LoRA) func([]*Node) []*Node {
	nBase := len(m.ParamNames())
	return func(in []*Node) []*Node {
		base := m.BindBase(in[3 : 3+nBase])
		nodes := bindLoRA(lora, in[3+nBase:])
		hidden := m.Forward(base, lora.Adapter(nodes, false, nil), model.Inputs{IDs: in[0], Cos: in[1], Sin: in[2]})
		return []*Node{m.Logits(base, hidden)}
	}
}
