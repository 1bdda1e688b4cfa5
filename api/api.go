// Package api holds TenSafe's wire types: the JSON requests and responses of
// the training API and its one error envelope.
//
// Why a package of its own: the server, the Go SDK and the service layer must
// agree on every field name byte for byte, and the OpenAPI document is checked
// against these types. Keeping them in a leaf package with no behaviour lets
// every side import them without importing each other. Field names follow the
// routes of docs/API.md (snake_case, as the original Python SDK).
//
// Optional numeric settings are pointers so that "absent" (take the default)
// and "zero" (a valid value, e.g. weight_decay 0) stay distinct.
package api

import (
	"encoding/json"
	"time"
)

// Version names the wire format of this package.
const Version = "tensafe-api/v1"

// TrainingConfig configures a new training client (POST /api/v1/training_clients).
type TrainingConfig struct {
	// BaseModel names a registered base model ("tensafe-tiny" or one the
	// operator registered). It is a name, never a path.
	BaseModel string          `json:"base_model"`
	LoRA      LoRAConfig      `json:"lora_config"`
	DP        *DPConfig       `json:"dp_config"`
	Optimizer OptimizerConfig `json:"optimizer,omitzero"`
	// Loss is the default loss of forward_backward and forward; empty means
	// token_ce.
	Loss *LossSpec `json:"loss,omitempty"`
	// Seed initialises the LoRA weights and seeds sampling; it never reaches
	// the DP noise.
	Seed uint64 `json:"seed,omitempty"`
}

// LoRAConfig configures low-rank adapters as PEFT does.
type LoRAConfig struct {
	Rank    int     `json:"rank"`
	Alpha   float64 `json:"alpha"`
	Dropout float64 `json:"dropout,omitempty"` // in [0, 1)
	// TargetModules lists projections (q_proj … down_proj); empty means
	// the attention projections.
	TargetModules []string `json:"target_modules,omitempty"`
	UseRSLoRA     bool     `json:"use_rslora,omitempty"`
}

// DPConfig configures DP-SGD and the privacy budget. It is required: every
// TenSafe training client is differentially private.
type DPConfig struct {
	NoiseMultiplier float64 `json:"noise_multiplier"` // σ
	MaxGradNorm     float64 `json:"max_grad_norm"`    // C
	TargetEpsilon   float64 `json:"target_epsilon"`
	TargetDelta     float64 `json:"target_delta"`
	// DatasetSize and ExpectedBatchSize give the sampling rate
	// q = expected_batch_size / dataset_size, declared by the client.
	DatasetSize       int64 `json:"dataset_size"`
	ExpectedBatchSize int   `json:"expected_batch_size"`
	// Accountant is "rdp" (default) or "prv".
	Accountant string `json:"accountant,omitempty"`
	// Sampling is "client" (default: the client builds batches and
	// declares dataset_size) or "server" (train_step draws Poisson batches
	// from the dataset DatasetID names, whose rows are the dataset size;
	// declaring dataset_size then is an error). See api/datasets.go.
	Sampling  string `json:"sampling,omitempty"`
	DatasetID string `json:"dataset_id,omitempty"`
}

// OptimizerConfig configures AdamW. Absent fields take PyTorch's defaults
// (learning_rate 1e-4, betas 0.9/0.999, eps 1e-8, weight_decay 0.01).
type OptimizerConfig struct {
	LearningRate *float64 `json:"learning_rate,omitempty"`
	Beta1        *float64 `json:"beta1,omitempty"`
	Beta2        *float64 `json:"beta2,omitempty"`
	Eps          *float64 `json:"eps,omitempty"`
	WeightDecay  *float64 `json:"weight_decay,omitempty"`
	WarmupSteps  int      `json:"warmup_steps,omitempty"`
	Schedule     string   `json:"schedule,omitempty"` // "constant" (default) or "cosine"
	TotalSteps   int      `json:"total_steps,omitempty"`
}

// LossSpec names a loss and its keyword arguments:
// {"type": "token_ce", "kwargs": {"label_smoothing": 0.1}}.
type LossSpec struct {
	Type   string         `json:"type"`
	Kwargs map[string]any `json:"kwargs,omitempty"`
}

// Batch is a batch of token sequences in Hugging Face's convention: labels
// are aligned with input_ids and -100 marks positions without a target.
//
// The optional per-token inputs of RL and preference losses are aligned
// with input_ids exactly like labels: the value at position t belongs to
// token input_ids[t] (the target predicted from position t-1) and the value
// at t = 0 is ignored. Targets holds one regression target per example
// (docs/LOSSES.md: an example is one row, or a pair or group of rows for
// the grouped losses).
type Batch struct {
	InputIDs      [][]int     `json:"input_ids"`
	AttentionMask [][]int     `json:"attention_mask,omitempty"`
	Labels        [][]int     `json:"labels,omitempty"`
	Weights       [][]float64 `json:"weights,omitempty"`
	// Advantages are per-token advantages A_t (RL losses).
	Advantages [][]float64 `json:"advantages,omitempty"`
	// SamplingLogprobs are log q(token) under the policy that sampled it.
	SamplingLogprobs [][]float64 `json:"sampling_logprobs,omitempty"`
	// ReferenceLogprobs are log p_ref(token) under a reference policy.
	ReferenceLogprobs [][]float64 `json:"reference_logprobs,omitempty"`
	// Targets are per-example regression targets (the mse loss).
	Targets []float64 `json:"targets,omitempty"`
}

// ForwardBackwardRequest is the body of POST .../{id}/forward_backward.
type ForwardBackwardRequest struct {
	Batch Batch     `json:"batch"`
	Loss  *LossSpec `json:"loss,omitempty"` // overrides the client's loss
}

// ForwardRequest is the body of POST .../{id}/forward.
type ForwardRequest struct {
	Batch Batch     `json:"batch"`
	Loss  *LossSpec `json:"loss,omitempty"`
}

// OptimStepRequest is the body of POST .../{id}/optim_step.
type OptimStepRequest struct{}

// SampleRequest is the body of POST .../{id}/sample. Exactly one of
// prompt_tokens and prompt (text, encoded with the model's tokenizer) is set.
type SampleRequest struct {
	PromptTokens []int    `json:"prompt_tokens,omitempty"`
	Prompt       string   `json:"prompt,omitempty"`
	MaxTokens    int      `json:"max_tokens"`
	Temperature  float64  `json:"temperature"`
	TopP         float64  `json:"top_p,omitempty"`
	TopK         int      `json:"top_k,omitempty"`
	StopTokenIDs []int    `json:"stop_token_ids,omitempty"`
	Stop         []string `json:"stop,omitempty"`
	N            int      `json:"n,omitempty"`
	Seed         uint64   `json:"seed,omitempty"`
}

// SaveStateRequest is the body of POST .../{id}/save_state.
type SaveStateRequest struct {
	Name string `json:"name,omitempty"`
	// Metadata is a JSON object (at most MaxCheckpointMetadata bytes) kept
	// inside the encrypted checkpoint and given back by load_state, e.g. an
	// RL loop's algorithm state. It never reaches the artifact record.
	Metadata json.RawMessage `json:"metadata,omitempty"`
	// IncludeOptimizer (default true) saves the AdamW moments; false saves
	// the LoRA weights and counters only, and load_state then starts the
	// moments from zero.
	IncludeOptimizer *bool `json:"include_optimizer,omitempty"`
}

// MaxCheckpointMetadata bounds SaveStateRequest.Metadata (64 KiB).
const MaxCheckpointMetadata = 64 << 10

// LoadStateRequest is the body of POST .../{id}/load_state.
type LoadStateRequest struct {
	ArtifactID string `json:"artifact_id"`
}

// TrainingClient describes a training client.
type TrainingClient struct {
	ID        string         `json:"id"`
	BaseModel string         `json:"base_model"`
	Config    TrainingConfig `json:"config"`
	Status    string         `json:"status"`
	Step      int64          `json:"step"`
	CreatedAt time.Time      `json:"created_at"`
	UpdatedAt time.Time      `json:"updated_at"`
}

// Future states.
const (
	FutureQueued    = "queued"
	FutureRunning   = "running"
	FutureSucceeded = "succeeded"
	FutureFailed    = "failed"
)

// Future is an operation submitted on a training client
// (GET /api/v1/futures/{id}). Result holds the kind's result type
// (ForwardBackwardResult, …) once State is succeeded; Error is set once it
// is failed.
type Future struct {
	ID         string          `json:"id"`
	ClientID   string          `json:"client_id,omitempty"`
	Kind       string          `json:"kind"`
	State      string          `json:"state"`
	Result     json.RawMessage `json:"result,omitempty"`
	Error      *ErrorBody      `json:"error,omitempty"`
	CreatedAt  time.Time       `json:"created_at"`
	StartedAt  *time.Time      `json:"started_at,omitempty"`
	FinishedAt *time.Time      `json:"finished_at,omitempty"`
}

// Done reports whether the future has finished.
func (f *Future) Done() bool { return f.State == FutureSucceeded || f.State == FutureFailed }

// ForwardBackwardResult is the result of forward_backward.
type ForwardBackwardResult struct {
	Loss            float64   `json:"loss"`
	PerExampleLoss  []float64 `json:"per_example_loss"`
	Tokens          int       `json:"tokens"`
	PerExampleNorms []float64 `json:"per_example_grad_norms,omitempty"`
	FractionClipped float64   `json:"fraction_clipped"`
	PendingExamples int       `json:"pending_examples"`
	// Metrics are the loss's metrics (clip_fraction, reward_accuracy, …),
	// means over the batch.
	Metrics map[string]float64 `json:"metrics,omitempty"`
}

// ForwardResult is the result of forward.
type ForwardResult struct {
	LogProbs       [][]float64 `json:"logprobs"`
	PerExampleLoss []float64   `json:"per_example_loss"`
}

// OptimStepResult is the result of optim_step.
type OptimStepResult struct {
	Step         int64   `json:"step"`
	LearningRate float64 `json:"learning_rate"`
	Examples     int     `json:"examples"`
	NoiseStd     float64 `json:"noise_std"`
	EpsilonSpent float64 `json:"epsilon_spent"`
	Delta        float64 `json:"delta"`
}

// Sequence is one generated sample.
type Sequence struct {
	Tokens       []int     `json:"tokens"`
	Text         string    `json:"text,omitempty"`
	LogProbs     []float64 `json:"logprobs"`
	FinishReason string    `json:"finish_reason"`
}

// SampleResult is the result of sample.
type SampleResult struct {
	Sequences []Sequence `json:"sequences"`
}

// SaveStateResult is the result of save_state.
type SaveStateResult struct {
	ArtifactID  string `json:"artifact_id"`
	ContentHash string `json:"content_hash"`
	Size        int64  `json:"size"`
	Step        int64  `json:"step"`
}

// LoadStateResult is the result of load_state.
type LoadStateResult struct {
	ArtifactID   string  `json:"artifact_id"`
	Step         int64   `json:"step"`
	EpsilonSpent float64 `json:"epsilon_spent"`
	// Metadata is the checkpoint's SaveStateRequest.Metadata, if any.
	Metadata json.RawMessage `json:"metadata,omitempty"`
	// OptimizerRestored says whether the checkpoint carried AdamW moments
	// (false: they restart from zero).
	OptimizerRestored bool `json:"optimizer_restored"`
}

// DPMetrics is GET .../{id}/dp_metrics: what the client's privacy budget has
// spent and how.
type DPMetrics struct {
	EpsilonSpent     float64 `json:"epsilon_spent"`
	EpsilonRemaining float64 `json:"epsilon_remaining"`
	TargetEpsilon    float64 `json:"target_epsilon"`
	Delta            float64 `json:"delta"`
	Steps            int64   `json:"steps"`
	NoiseMultiplier  float64 `json:"noise_multiplier"`
	SamplingRate     float64 `json:"sampling_rate"`
	// SamplingSource says where q came from: "client-declared", or
	// "server-poisson" for a client whose batches the server draws.
	SamplingSource string `json:"sampling_source"`
	Accountant     string `json:"accountant"`
	Conversion     string `json:"conversion,omitempty"`
}

// Artifact describes a stored artifact (an encrypted checkpoint).
type Artifact struct {
	ID          string    `json:"id"`
	ClientID    string    `json:"client_id,omitempty"`
	Kind        string    `json:"kind"`
	Name        string    `json:"name"`
	Size        int64     `json:"size"`
	ContentHash string    `json:"content_hash"`
	KeyID       string    `json:"key_id"`
	CreatedAt   time.Time `json:"created_at"`
}

// Error codes of the error envelope.
const (
	CodeInvalidArgument       = "invalid_argument"        // 400
	CodeUnauthenticated       = "unauthenticated"         // 401
	CodePermissionDenied      = "permission_denied"       // 403
	CodeNotFound              = "not_found"               // 404
	CodePrivacyBudgetExceeded = "privacy_budget_exceeded" // 409
	CodeFailedPrecondition    = "failed_precondition"     // 409
	CodeConflict              = "conflict"                // 409
	CodeTooLarge              = "request_too_large"       // 413
	CodeRateLimited           = "rate_limited"            // 429
	CodeUnavailable           = "unavailable"             // 503
	CodeInternal              = "internal"                // 500
	CodeServerRestarted       = "server_restarted"        // a future cut off by a restart
	CodeCanceled              = "canceled"                // a future cut off by shutdown
)

// ErrorResponse is the one error envelope: {"error": {"code", "message", "field"}}.
type ErrorResponse struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody describes an error. Field names the offending request field
// (JSON path such as "dp_config.noise_multiplier") when there is one.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}
