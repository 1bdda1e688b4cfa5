// Package rlvr trains LoRA adapters with reinforcement learning from
// verifiable rewards (RLVR) over TenSafe's public training API.
//
// Why a loop over the SDK and not a server feature: every update still goes
// through forward_backward and optim_step, so per-example clipping, DP
// noise, the privacy accountant, the audit log and encrypted checkpoints
// apply to reinforcement learning exactly as to supervised fine-tuning, and
// the server learns nothing it would not learn from any other client. The
// rewards run where the caller runs, so a reward may use data (reference
// answers, unit tests) that never leaves the caller.
//
// The pieces, each usable alone:
//
//   - rewards: a registry of verifiable reward functions (keyword_contains,
//     length_penalty, format_compliance by regular expression or JSON
//     schema, exact_match, numeric_match) resolved by name with validated
//     keyword arguments, plus the caller's own Go functions (Register);
//   - rollouts: n samples per prompt from the real sample endpoint with the
//     sampling log-probabilities kept (Rollout);
//   - advantages: moving-average or group-mean baselines, normalization,
//     GRPO-style group normalization (Advantages);
//   - batches: api.Batch rows whose labels mask the prompt and whose
//     advantages and sampling_logprobs sit on the completion tokens
//     (BuildBatch);
//   - the Trainer: REINFORCE (the importance_sampling loss, entropy bonus),
//     PPO (the clipped ppo loss, several epochs per batch, a KL penalty
//     against a reference client that is never trained) and GRPO, with its
//     algorithm state (baseline, step, random generator, reward history)
//     saved inside the encrypted checkpoint's metadata and restored from it.
//
// Privacy unit: the prompt. A prompt's n completions are n rows but one
// DP example — the losses' group_size is n, so they share one gradient, one
// norm and one clip — and each step draws its prompts by Poisson sampling
// (rate q = PromptsPerStep / len(Prompts), from crypto/rand), which is the
// sampling the accountant's q assumes: the DP config's dataset_size and
// expected_batch_size count prompts. UnitCompletion keeps one completion
// per example, a weaker guarantee per prompt (group privacy over n).
// docs/RLVR.md has the details. Updates touch LoRA parameters only: the
// base model is never trained.
package rlvr
