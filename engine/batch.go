package engine

import (
	"fmt"
	"math"

	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/tensafe/tensafe/loss"
)

// Batch is a batch of token sequences in Hugging Face's convention: Labels
// are aligned with InputIDs (the model shifts them: position t predicts
// label t+1) and loss.IgnoreIndex marks positions without a target. Rows may
// have different lengths; AttentionMask, if given, marks real tokens with 1
// and right padding with 0. Weights, if given, weight each label (default 1).
type Batch struct {
	InputIDs      [][]int     `json:"input_ids"`
	AttentionMask [][]int     `json:"attention_mask,omitempty"`
	Labels        [][]int     `json:"labels,omitempty"`
	Weights       [][]float64 `json:"weights,omitempty"`
}

// MaxBatchSize and MaxSeqLen bound one ForwardBackward call.
const (
	MaxBatchSize = 1024
	seqBucket    = 16
)

// prepared is a validated batch padded to [B, T] with T a multiple of
// seqBucket, with targets already shifted.
type prepared struct {
	B, T    int
	ids     []int32
	mask    []float32
	targets []int32
	weights []float32
	tokens  []int // target tokens per example
	lengths []int
}

// prepare validates b against the model's vocabulary and context and
// builds padded tensors. needLabels is false for forward passes without a
// loss target (then positions predict the next input token).
func prepare(b Batch, vocab, maxLen int, needLabels bool) (*prepared, error) {
	B := len(b.InputIDs)
	if B == 0 {
		return nil, fmt.Errorf("engine: batch: input_ids is empty")
	}
	if B > MaxBatchSize {
		return nil, fmt.Errorf("engine: batch: input_ids has %d rows, more than %d", B, MaxBatchSize)
	}
	if b.AttentionMask != nil && len(b.AttentionMask) != B {
		return nil, fmt.Errorf("engine: batch: attention_mask has %d rows, input_ids %d", len(b.AttentionMask), B)
	}
	if b.Labels != nil && len(b.Labels) != B {
		return nil, fmt.Errorf("engine: batch: labels has %d rows, input_ids %d", len(b.Labels), B)
	}
	if needLabels && b.Labels == nil {
		return nil, fmt.Errorf("engine: batch: labels is required")
	}
	if b.Weights != nil && len(b.Weights) != B {
		return nil, fmt.Errorf("engine: batch: weights has %d rows, input_ids %d", len(b.Weights), B)
	}
	p := &prepared{B: B, tokens: make([]int, B), lengths: make([]int, B)}
	longest := 0
	for i, row := range b.InputIDs {
		n := len(row)
		if n == 0 {
			return nil, fmt.Errorf("engine: batch: input_ids[%d] is empty", i)
		}
		if b.AttentionMask != nil {
			if len(b.AttentionMask[i]) != n {
				return nil, fmt.Errorf("engine: batch: attention_mask[%d] has length %d, input_ids[%d] %d", i, len(b.AttentionMask[i]), i, n)
			}
			real := 0
			for j, m := range b.AttentionMask[i] {
				switch {
				case m != 0 && m != 1:
					return nil, fmt.Errorf("engine: batch: attention_mask[%d][%d] = %d, must be 0 or 1", i, j, m)
				case m == 1 && real != j:
					return nil, fmt.Errorf("engine: batch: attention_mask[%d] is not right-padded (1 after 0 at position %d)", i, j)
				case m == 1:
					real++
				}
			}
			if real == 0 {
				return nil, fmt.Errorf("engine: batch: attention_mask[%d] has no real token", i)
			}
			n = real
		}
		if b.Labels != nil && len(b.Labels[i]) != len(row) {
			return nil, fmt.Errorf("engine: batch: labels[%d] has length %d, input_ids[%d] %d", i, len(b.Labels[i]), i, len(row))
		}
		if b.Weights != nil && len(b.Weights[i]) != len(row) {
			return nil, fmt.Errorf("engine: batch: weights[%d] has length %d, input_ids[%d] %d", i, len(b.Weights[i]), i, len(row))
		}
		for j := 0; j < n; j++ {
			if id := row[j]; id < 0 || id >= vocab {
				return nil, fmt.Errorf("engine: batch: input_ids[%d][%d] = %d is outside the vocabulary [0, %d)", i, j, id, vocab)
			}
			if b.Labels != nil {
				if l := b.Labels[i][j]; l != loss.IgnoreIndex && (l < 0 || l >= vocab) {
					return nil, fmt.Errorf("engine: batch: labels[%d][%d] = %d is outside the vocabulary [0, %d) and not %d", i, j, l, vocab, loss.IgnoreIndex)
				}
			}
			if b.Weights != nil {
				if w := b.Weights[i][j]; !(w >= 0) || math.IsInf(w, 0) {
					return nil, fmt.Errorf("engine: batch: weights[%d][%d] = %v must be finite and ≥ 0", i, j, w)
				}
			}
		}
		p.lengths[i] = n
		longest = max(longest, n)
	}
	if longest > maxLen {
		return nil, fmt.Errorf("engine: batch: a sequence of %d tokens exceeds the model's %d positions", longest, maxLen)
	}
	T := (longest + seqBucket - 1) / seqBucket * seqBucket
	p.T = T
	p.ids = make([]int32, B*T)
	p.mask = make([]float32, B*T)
	p.targets = make([]int32, B*T)
	p.weights = make([]float32, B*T)
	for i := 0; i < B; i++ {
		n := p.lengths[i]
		for j := 0; j < n; j++ {
			p.ids[i*T+j] = int32(b.InputIDs[i][j])
			p.mask[i*T+j] = 1
		}
		// Position j predicts label j+1.
		for j := 0; j+1 < n; j++ {
			var target int
			var w float64 = 1
			if b.Labels != nil {
				target = b.Labels[i][j+1]
			} else {
				target = b.InputIDs[i][j+1]
			}
			if b.Weights != nil {
				w = b.Weights[i][j+1]
			}
			if target == loss.IgnoreIndex || w == 0 {
				continue
			}
			p.targets[i*T+j] = int32(target)
			p.weights[i*T+j] = float32(w)
			p.tokens[i]++
		}
	}
	return p, nil
}

func (p *prepared) tensors() (ids, mask, targets, weights *tensors.Tensor) {
	return tensors.FromFlatDataAndDimensions(p.ids, p.B, p.T),
		tensors.FromFlatDataAndDimensions(p.mask, p.B, p.T),
		tensors.FromFlatDataAndDimensions(p.targets, p.B, p.T),
		tensors.FromFlatDataAndDimensions(p.weights, p.B, p.T)
}
