package client

import (
	"context"
	"fmt"
	"net/http"

	"github.com/tensafe/tensafe/api"
)

// Tokenize encodes texts with the tokenizer of base model model (POST
// /api/v1/tokenize) as ordinary text: special-token strings in the texts
// stay text. No BOS is added; use TokenizeRequest for that.
func (c *ServiceClient) Tokenize(ctx context.Context, model string, texts []string) (*api.TokenizeResult, error) {
	return c.TokenizeRequest(ctx, api.TokenizeRequest{Model: model, Texts: texts})
}

// TokenizeRequest sends a full tokenize request. With AddSpecialTokens the
// ids are exactly those sample uses for a text prompt.
func (c *ServiceClient) TokenizeRequest(ctx context.Context, req api.TokenizeRequest) (*api.TokenizeResult, error) {
	var out api.TokenizeResult
	if err := c.do(ctx, http.MethodPost, "/api/v1/tokenize", nil, req, &out); err != nil {
		return nil, err
	}
	if len(out.InputIDs) != len(req.Texts) {
		return nil, fmt.Errorf("tensafe: tokenize: %d rows for %d texts: %w", len(out.InputIDs), len(req.Texts), ErrMalformedResponse)
	}
	return &out, nil
}

// Detokenize decodes rows of ids with the tokenizer of base model model
// (POST /api/v1/detokenize), special tokens written by name.
func (c *ServiceClient) Detokenize(ctx context.Context, model string, ids [][]int) ([]string, error) {
	var out api.DetokenizeResult
	if err := c.do(ctx, http.MethodPost, "/api/v1/detokenize", nil, api.DetokenizeRequest{Model: model, InputIDs: ids}, &out); err != nil {
		return nil, err
	}
	if len(out.Texts) != len(ids) {
		return nil, fmt.Errorf("tensafe: detokenize: %d texts for %d rows: %w", len(out.Texts), len(ids), ErrMalformedResponse)
	}
	return out.Texts, nil
}
