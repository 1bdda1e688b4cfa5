package api

// TokenizeRequest is the body of POST /api/v1/tokenize. Texts are encoded
// as ordinary text: special-token strings written in them ("<eos>",
// "<|im_start|>") stay text and never become special ids.
type TokenizeRequest struct {
	Model string   `json:"model"`
	Texts []string `json:"texts"`
	// AddSpecialTokens puts the model's BOS id first, as sample does with a
	// text prompt.
	AddSpecialTokens bool `json:"add_special_tokens,omitempty"`
}

// TokenizeResult is the answer of POST /api/v1/tokenize: one row of ids per
// text. BOSTokenID and EOSTokenID are -1 when the model has none.
type TokenizeResult struct {
	Model      string  `json:"model"`
	InputIDs   [][]int `json:"input_ids"`
	BOSTokenID int     `json:"bos_token_id"`
	EOSTokenID int     `json:"eos_token_id"`
}

// DetokenizeRequest is the body of POST /api/v1/detokenize.
type DetokenizeRequest struct {
	Model    string  `json:"model"`
	InputIDs [][]int `json:"input_ids"`
	// SkipSpecialTokens leaves special tokens (BOS, EOS, padding) out of the
	// texts; otherwise they are written by name ("<eos>").
	SkipSpecialTokens bool `json:"skip_special_tokens,omitempty"`
}

// DetokenizeResult is the answer of POST /api/v1/detokenize.
type DetokenizeResult struct {
	Texts []string `json:"texts"`
}

// Bounds on tokenize and detokenize requests.
const (
	MaxTokenizeTexts = 1024    // texts or rows per request
	MaxTokenizeBytes = 4 << 20 // total text bytes or ids per request
)
