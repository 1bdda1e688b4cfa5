package api

import "time"

// Sampling modes of DPConfig.Sampling.
const (
	// SamplingClient (the default, also written ""): the client builds its
	// batches and declares dataset_size; the certificate says that q was
	// client-declared.
	SamplingClient = "client"
	// SamplingServer: the server draws every batch by Poisson sampling from
	// the dataset DPConfig.DatasetID names (train_step), so that the
	// accountant's q is enforced.
	SamplingServer = "server"
)

// DatasetFormat is the format of a dataset's sealed content (docs/API.md,
// "Server-sampled training"); its content hash is the SHA-256 of that JSON.
const DatasetFormat = "tensafe-dataset/v1"

// DatasetExample is one row of a dataset: one example, the privacy unit of
// server-sampled training. Labels default to input_ids (token_ce's
// alignment: the label at t is the token at t, predicted from t−1; the
// first position is never a target); weights default to 1.
//
// A row may instead be text, tokenized by the server with the tokenizer of
// CreateDatasetRequest.BaseModel as untrusted text (a special token written
// in it stays text): Text is trained on whole (BOS, text, EOS); Prompt and
// Completion train on the completion only (BOS, prompt, completion, EOS,
// the prompt's labels -100). The stored row is its tokens.
type DatasetExample struct {
	InputIDs   []int     `json:"input_ids,omitempty"`
	Labels     []int     `json:"labels,omitempty"`
	Weights    []float64 `json:"weights,omitempty"`
	Text       string    `json:"text,omitempty"`
	Prompt     string    `json:"prompt,omitempty"`
	Completion string    `json:"completion,omitempty"`
}

// CreateDatasetRequest is the body of POST /api/v1/datasets.
type CreateDatasetRequest struct {
	Name     string           `json:"name,omitempty"`
	Examples []DatasetExample `json:"examples"`
	// BaseModel names the model whose tokenizer encodes text rows;
	// required when a row has text, prompt or completion.
	BaseModel string `json:"base_model,omitempty"`
}

// Dataset describes a registered dataset. Its examples never leave the
// server except to the tenant (GET /api/v1/artifacts/{id}/download).
type Dataset struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Rows is the number of examples: the dataset_size of every client
	// that samples from it.
	Rows   int64 `json:"rows"`
	Tokens int64 `json:"tokens"`
	// BaseModel is the model whose tokenizer encoded the text rows (empty
	// when every row came as tokens).
	BaseModel string `json:"base_model,omitempty"`
	// ContentHash is "sha256:<hex>" of the sealed content (DatasetFormat):
	// the dataset fingerprint of a server-poisson DP certificate.
	ContentHash string     `json:"content_hash"`
	Size        int64      `json:"size"`
	KeyID       string     `json:"key_id"`
	CreatedAt   time.Time  `json:"created_at"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
}

// TrainStepRequest is the body of POST
// /api/v1/training_clients/{id}/train_step. Loss overrides the client's
// loss for this step.
type TrainStepRequest struct {
	Loss *LossSpec `json:"loss,omitempty"`
}

// TrainStepResult is the result of train_step: one Poisson draw, its
// forward_backward and the optim_step, as one operation.
type TrainStepResult struct {
	Step int64 `json:"step"`
	// Examples is how many rows the draw took (possibly 0: a noise-only
	// step); DatasetRows and SamplingRate are the draw's n and q.
	Examples     int     `json:"examples"`
	DatasetRows  int64   `json:"dataset_rows"`
	SamplingRate float64 `json:"sampling_rate"`
	// Loss is the mean loss over the drawn examples (0 when none).
	Loss            float64 `json:"loss"`
	Tokens          int     `json:"tokens"`
	FractionClipped float64 `json:"fraction_clipped"`
	LearningRate    float64 `json:"learning_rate"`
	NoiseStd        float64 `json:"noise_std"`
	EpsilonSpent    float64 `json:"epsilon_spent"`
	Delta           float64 `json:"delta"`
}
