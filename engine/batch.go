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
//
// The optional per-token inputs of RL and preference losses (Advantages,
// SamplingLogprobs, ReferenceLogprobs) are aligned with InputIDs exactly
// like Labels: the value at position t belongs to the token InputIDs[t],
// the target predicted from position t-1, and the value at t = 0 is
// ignored. Targets holds one regression target per example (an example is
// loss.Loss.Group() consecutive rows).
type Batch struct {
	InputIDs          [][]int     `json:"input_ids"`
	AttentionMask     [][]int     `json:"attention_mask,omitempty"`
	Labels            [][]int     `json:"labels,omitempty"`
	Weights           [][]float64 `json:"weights,omitempty"`
	Advantages        [][]float64 `json:"advantages,omitempty"`
	SamplingLogprobs  [][]float64 `json:"sampling_logprobs,omitempty"`
	ReferenceLogprobs [][]float64 `json:"reference_logprobs,omitempty"`
	Targets           []float64   `json:"targets,omitempty"`
}

// BatchError is a batch that does not fit the model or the loss. Field is
// the offending input's JSON path relative to the batch ("advantages",
// "labels[2][5]", or "logprob_grads" for a custom loss's gradients).
type BatchError struct {
	Field  string
	Reason string
}

func (e *BatchError) Error() string { return "engine: batch: " + e.Field + " " + e.Reason }

func batchErr(field, format string, args ...any) error {
	return &BatchError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// CheckLossInputs checks the batch inputs that depend on the loss: the row
// count fits the loss's group size, every input the loss needs is present,
// and every optional input that is present has the batch's shape and finite
// values. logprobGrads are a custom loss's gradients (nil otherwise).
func CheckLossInputs(b Batch, l loss.Loss, logprobGrads [][]float64) error {
	B := len(b.InputIDs)
	G := l.Group()
	if B%G != 0 {
		return batchErr("input_ids", "has %d rows; this loss takes groups of %d consecutive rows (one example each)", B, G)
	}
	perToken := []struct {
		field loss.Field
		rows  [][]float64
	}{
		{loss.FieldAdvantages, b.Advantages},
		{loss.FieldSamplingLogProbs, b.SamplingLogprobs},
		{loss.FieldReferenceLogProbs, b.ReferenceLogprobs},
		{loss.FieldLogProbGrads, logprobGrads},
	}
	for _, f := range perToken {
		name := string(f.field)
		if f.rows == nil {
			if l.NeedsField(f.field) {
				return batchErr(name, "is required by this loss")
			}
			continue
		}
		if len(f.rows) != B {
			return batchErr(name, "has %d rows, input_ids has %d", len(f.rows), B)
		}
		for i, row := range f.rows {
			if len(row) != len(b.InputIDs[i]) {
				return batchErr(fmt.Sprintf("%s[%d]", name, i), "has length %d, input_ids[%d] has %d", len(row), i, len(b.InputIDs[i]))
			}
			for j, v := range row {
				if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > maxInputMagnitude {
					return batchErr(fmt.Sprintf("%s[%d][%d]", name, i, j), "must be finite and at most %g in magnitude, got %v", float64(maxInputMagnitude), v)
				}
			}
		}
	}
	if b.Targets == nil {
		if l.NeedsField(loss.FieldTargets) {
			return batchErr("targets", "is required by this loss")
		}
	} else {
		if len(b.Targets) != B/G {
			return batchErr("targets", "has %d entries; the batch has %d examples (one target each)", len(b.Targets), B/G)
		}
		for i, v := range b.Targets {
			if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > maxInputMagnitude {
				return batchErr(fmt.Sprintf("targets[%d]", i), "must be finite and at most %g in magnitude, got %v", float64(maxInputMagnitude), v)
			}
		}
	}
	return nil
}

// CheckLossVocab checks the token ids a loss's kwargs name against the
// model's vocabulary.
func CheckLossVocab(l loss.Loss, vocab int) error {
	for k, id := range l.TokenIDs {
		if id < 0 || id >= vocab {
			return fmt.Errorf("engine: loss: kwargs.%s = %d is outside the vocabulary [0, %d)", k, id, vocab)
		}
	}
	return nil
}

// maxInputMagnitude bounds advantages, log-probabilities, targets and
// custom gradients: far beyond any meaningful value, small enough that
// float32 arithmetic on them stays finite.
const maxInputMagnitude = 1e6

// MaxBatchSize and MaxSeqLen bound one ForwardBackward call.
const (
	MaxBatchSize = 1024
	seqBucket    = 16
)

// prepared is a validated batch padded to [B, T] with T a multiple of
// seqBucket, with targets already shifted.
type prepared struct {
	B, T, G int
	ids     []int32
	mask    []float32
	targets []int32
	weights []float32
	// Per-token loss inputs, shifted like targets; zeros when absent.
	adv, samp, ref, lpg []float32
	exTargets           []float32 // [B/G]
	tokens              []int     // target tokens per row
	lengths             []int
}

// prepare validates b against the model's vocabulary and context and the
// loss, and builds padded tensors. needLabels is false for forward passes
// without a loss target (then positions predict the next input token).
// logprobGrads are a custom loss's gradients (nil otherwise).
func prepare(b Batch, vocab, maxLen int, needLabels bool, l loss.Loss, logprobGrads [][]float64) (*prepared, error) {
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
	if err := CheckLossInputs(b, l, logprobGrads); err != nil {
		return nil, err
	}
	ignore := l.Ignore()
	p := &prepared{B: B, G: l.Group(), tokens: make([]int, B), lengths: make([]int, B)}
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
				if lb := b.Labels[i][j]; lb != ignore && (lb < 0 || lb >= vocab) {
					return nil, fmt.Errorf("engine: batch: labels[%d][%d] = %d is outside the vocabulary [0, %d) and not %d", i, j, lb, vocab, ignore)
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
	p.adv = make([]float32, B*T)
	p.samp = make([]float32, B*T)
	p.ref = make([]float32, B*T)
	p.lpg = make([]float32, B*T)
	p.exTargets = make([]float32, B/p.G)
	for i, v := range b.Targets {
		p.exTargets[i] = float32(v)
	}
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
			if target == ignore || w == 0 {
				continue
			}
			p.targets[i*T+j] = int32(target)
			p.weights[i*T+j] = float32(w)
			p.tokens[i]++
			for _, x := range []struct {
				dst []float32
				src [][]float64
			}{{p.adv, b.Advantages}, {p.samp, b.SamplingLogprobs}, {p.ref, b.ReferenceLogprobs}, {p.lpg, logprobGrads}} {
				if x.src != nil {
					x.dst[i*T+j] = float32(x.src[i][j+1])
				}
			}
		}
	}
	return p, nil
}

// tensors returns the graph inputs in the order of the in* constants,
// from inIDs to inExTargets.
func (p *prepared) tensors() []*tensors.Tensor {
	bt := func(v []float32) *tensors.Tensor { return tensors.FromFlatDataAndDimensions(v, p.B, p.T) }
	return []*tensors.Tensor{
		tensors.FromFlatDataAndDimensions(p.ids, p.B, p.T),
		bt(p.mask),
		tensors.FromFlatDataAndDimensions(p.targets, p.B, p.T),
		bt(p.weights), bt(p.adv), bt(p.samp), bt(p.ref), bt(p.lpg),
		tensors.FromFlatDataAndDimensions(p.exTargets, p.B/p.G),
	}
}
