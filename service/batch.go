package service

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/engine"
	"github.com/tensafe/tensafe/loss"
	"github.com/tensafe/tensafe/model"
)

// resolveLoss resolves a loss spec for a model: a bad spec, or a kwarg
// naming a token outside the vocabulary, is a 400 naming the field.
func resolveLoss(field string, spec loss.Spec, cfg model.Config) (loss.Loss, error) {
	l, err := loss.Resolve(spec)
	if err != nil {
		return loss.Loss{}, fieldErr(field, "%v", err)
	}
	if err := engine.CheckLossVocab(l, cfg.VocabSize); err != nil {
		return loss.Loss{}, fieldErr(field, "%v", err)
	}
	return l, nil
}

// lossInputsErr turns an engine.BatchError into a 400 naming the request
// field (batch.advantages, logprob_grads[2], …).
func lossInputsErr(err error) error {
	var be *engine.BatchError
	if errors.As(err, &be) {
		f := be.Field
		if !strings.HasPrefix(f, string(loss.FieldLogProbGrads)) {
			f = "batch." + f
		}
		return fieldErr(f, "%s", be.Reason)
	}
	return err
}

// checkBatch validates a batch against the model and the loss before it is
// queued, so that a bad request is a 400 naming the field rather than a
// failed future. needLabels: forward_backward trains on labels and requires
// them. logprobGrads are a custom loss's gradients (nil otherwise).
func checkBatch(b api.Batch, cfg model.Config, needLabels bool, l loss.Loss, logprobGrads [][]float64) (engine.Batch, error) {
	B := len(b.InputIDs)
	switch {
	case B == 0:
		return engine.Batch{}, fieldErr("batch.input_ids", "is empty")
	case B > engine.MaxBatchSize:
		return engine.Batch{}, fieldErr("batch.input_ids", "has %d rows, at most %d allowed", B, engine.MaxBatchSize)
	case b.AttentionMask != nil && len(b.AttentionMask) != B:
		return engine.Batch{}, fieldErr("batch.attention_mask", "has %d rows, input_ids has %d", len(b.AttentionMask), B)
	case b.Labels != nil && len(b.Labels) != B:
		return engine.Batch{}, fieldErr("batch.labels", "has %d rows, input_ids has %d", len(b.Labels), B)
	case needLabels && b.Labels == nil:
		return engine.Batch{}, fieldErr("batch.labels", "is required")
	case b.Weights != nil && len(b.Weights) != B:
		return engine.Batch{}, fieldErr("batch.weights", "has %d rows, input_ids has %d", len(b.Weights), B)
	}
	for i, row := range b.InputIDs {
		n := len(row)
		if n == 0 {
			return engine.Batch{}, fieldErr(fmt.Sprintf("batch.input_ids[%d]", i), "is empty")
		}
		if n > cfg.MaxPositions {
			return engine.Batch{}, fieldErr(fmt.Sprintf("batch.input_ids[%d]", i), "has %d tokens, the model takes at most %d", n, cfg.MaxPositions)
		}
		for j, id := range row {
			if id < 0 || id >= cfg.VocabSize {
				return engine.Batch{}, fieldErr(fmt.Sprintf("batch.input_ids[%d][%d]", i, j), "%d is outside the vocabulary [0, %d)", id, cfg.VocabSize)
			}
		}
		if b.AttentionMask != nil {
			if len(b.AttentionMask[i]) != n {
				return engine.Batch{}, fieldErr(fmt.Sprintf("batch.attention_mask[%d]", i), "has length %d, input_ids[%d] has %d", len(b.AttentionMask[i]), i, n)
			}
			real := 0
			for j, m := range b.AttentionMask[i] {
				if m != 0 && m != 1 {
					return engine.Batch{}, fieldErr(fmt.Sprintf("batch.attention_mask[%d][%d]", i, j), "must be 0 or 1, got %d", m)
				}
				if m == 1 {
					if real != j {
						return engine.Batch{}, fieldErr(fmt.Sprintf("batch.attention_mask[%d]", i), "must be right-padded (1s then 0s)")
					}
					real++
				}
			}
			if real == 0 {
				return engine.Batch{}, fieldErr(fmt.Sprintf("batch.attention_mask[%d]", i), "masks every token")
			}
		}
		if b.Labels != nil {
			if len(b.Labels[i]) != n {
				return engine.Batch{}, fieldErr(fmt.Sprintf("batch.labels[%d]", i), "has length %d, input_ids[%d] has %d", len(b.Labels[i]), i, n)
			}
			for j, id := range b.Labels[i] {
				if id != l.Ignore() && (id < 0 || id >= cfg.VocabSize) {
					return engine.Batch{}, fieldErr(fmt.Sprintf("batch.labels[%d][%d]", i, j), "%d is outside the vocabulary [0, %d) and is not the ignore index %d", id, cfg.VocabSize, l.Ignore())
				}
			}
		}
		if b.Weights != nil {
			if len(b.Weights[i]) != n {
				return engine.Batch{}, fieldErr(fmt.Sprintf("batch.weights[%d]", i), "has length %d, input_ids[%d] has %d", len(b.Weights[i]), i, n)
			}
			for j, w := range b.Weights[i] {
				if !(w >= 0) || math.IsInf(w, 0) {
					return engine.Batch{}, fieldErr(fmt.Sprintf("batch.weights[%d][%d]", i, j), "must be ≥ 0 and finite, got %v", w)
				}
			}
		}
	}
	eb := engine.Batch{InputIDs: b.InputIDs, AttentionMask: b.AttentionMask, Labels: b.Labels, Weights: b.Weights,
		Advantages: b.Advantages, SamplingLogprobs: b.SamplingLogprobs, ReferenceLogprobs: b.ReferenceLogprobs, Targets: b.Targets}
	if err := engine.CheckLossInputs(eb, l, logprobGrads); err != nil {
		return engine.Batch{}, lossInputsErr(err)
	}
	return eb, nil
}
