package service

import (
	"context"
	"errors"
	"fmt"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/tokenizer"
)

// tokenizerFor returns the tokenizer of registered base model name.
func (s *Service) tokenizerFor(name string) (tokenizer.Tokenizer, error) {
	b, ok := s.models.get(name)
	if !ok {
		return nil, fieldErr("model", "unknown base model %q (registered: %v)", name, s.models.names())
	}
	_, tok, err := b.load()
	if err != nil {
		return nil, err
	}
	if tok == nil {
		return nil, fieldErr("model", "base model %q has no tokenizer", name)
	}
	return tok, nil
}

// Tokenize encodes texts with the tokenizer of a registered base model
// (POST /api/v1/tokenize). Texts are untrusted: they are encoded as
// ordinary text, so a special token written in a text ("<eos>",
// "<|im_start|>") stays text and is never forged into its id. With
// AddSpecialTokens the model's BOS id comes first, exactly as sample
// encodes a text prompt. Tokenizing touches no client and is not audited.
func (s *Service) Tokenize(ctx context.Context, req api.TokenizeRequest) (api.TokenizeResult, error) {
	if err := ctx.Err(); err != nil {
		return api.TokenizeResult{}, err
	}
	if len(req.Texts) == 0 {
		return api.TokenizeResult{}, fieldErr("texts", "is required (at least one text)")
	}
	if len(req.Texts) > api.MaxTokenizeTexts {
		return api.TokenizeResult{}, fieldErr("texts", "%d texts, at most %d allowed", len(req.Texts), api.MaxTokenizeTexts)
	}
	total := 0
	for _, t := range req.Texts {
		total += len(t)
	}
	if total > api.MaxTokenizeBytes {
		return api.TokenizeResult{}, fieldErr("texts", "%d bytes in all, at most %d allowed", total, api.MaxTokenizeBytes)
	}
	tok, err := s.tokenizerFor(req.Model)
	if err != nil {
		return api.TokenizeResult{}, err
	}
	out := api.TokenizeResult{Model: req.Model, InputIDs: make([][]int, len(req.Texts)), BOSTokenID: -1, EOSTokenID: -1}
	bos, hasBOS := tok.BOS()
	if hasBOS {
		out.BOSTokenID = bos
	}
	if eos := tok.EOS(); len(eos) > 0 {
		out.EOSTokenID = eos[0]
	}
	for i, text := range req.Texts {
		ids, err := encodeUntrusted(tok, text)
		if err != nil {
			return api.TokenizeResult{}, fieldErr(fmt.Sprintf("texts[%d]", i), "%v", err)
		}
		if req.AddSpecialTokens && hasBOS {
			ids = append([]int{bos}, ids...)
		}
		if ids == nil {
			ids = []int{}
		}
		out.InputIDs[i] = ids
	}
	return out, nil
}

// errNoOrdinary: a tokenizer that may read special tokens from text and has
// no ordinary mode cannot encode untrusted text.
var errNoOrdinary = errors.New("this model's tokenizer has no ordinary-text mode; send token ids")

// encodeUntrusted encodes text so that no special id comes out of it.
func encodeUntrusted(tok tokenizer.Tokenizer, text string) ([]int, error) {
	switch t := tok.(type) {
	case ordinaryEncoder:
		return t.EncodeOrdinary(text)
	case tokenizer.Byte:
		// Every byte is its own id; special ids are never read from text.
		return t.Encode(text, false)
	}
	return nil, errNoOrdinary
}

// Detokenize decodes rows of ids with the tokenizer of a registered base
// model (POST /api/v1/detokenize). An id the tokenizer does not know is an
// error naming its position.
func (s *Service) Detokenize(ctx context.Context, req api.DetokenizeRequest) (api.DetokenizeResult, error) {
	if err := ctx.Err(); err != nil {
		return api.DetokenizeResult{}, err
	}
	if len(req.InputIDs) == 0 {
		return api.DetokenizeResult{}, fieldErr("input_ids", "is required (at least one row)")
	}
	if len(req.InputIDs) > api.MaxTokenizeTexts {
		return api.DetokenizeResult{}, fieldErr("input_ids", "%d rows, at most %d allowed", len(req.InputIDs), api.MaxTokenizeTexts)
	}
	total := 0
	for _, row := range req.InputIDs {
		total += len(row)
	}
	if total > api.MaxTokenizeBytes {
		return api.DetokenizeResult{}, fieldErr("input_ids", "%d ids in all, at most %d allowed", total, api.MaxTokenizeBytes)
	}
	tok, err := s.tokenizerFor(req.Model)
	if err != nil {
		return api.DetokenizeResult{}, err
	}
	vocab := tok.VocabSize()
	out := api.DetokenizeResult{Texts: make([]string, len(req.InputIDs))}
	for i, row := range req.InputIDs {
		for j, id := range row {
			if id < 0 || id >= vocab {
				return api.DetokenizeResult{}, fieldErr(fmt.Sprintf("input_ids[%d][%d]", i, j), "%d is outside the tokenizer's vocabulary [0, %d)", id, vocab)
			}
		}
		text, err := tok.Decode(row, req.SkipSpecialTokens)
		if err != nil {
			return api.DetokenizeResult{}, fieldErr(fmt.Sprintf("input_ids[%d]", i), "%v", err)
		}
		out.Texts[i] = text
	}
	return out, nil
}
