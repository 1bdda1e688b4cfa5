// Package tokenizer turns text into token ids and back for the models TenSafe
// trains.
//
// Two implementations share the [Tokenizer] interface:
//
//   - [BPE] reads a Hugging Face tokenizer.json describing a byte-level BPE
//     (GPT-2, Llama 3, Qwen2/Qwen3, SmolLM) and reproduces what the Hugging Face
//     tokenizers library produces for it, id for id: added and special tokens
//     are split out first, the remaining text is normalized (NFC for Qwen),
//     pre-tokenized (the GPT-2, Llama 3 or Qwen2 split expression, digits,
//     byte-level mapping), merged by rank, and wrapped by the post-processor
//     (Llama 3's BOS) when special tokens are asked for.
//   - [Byte] is the tokenizer of the built-in model tensafe-tiny: one id per
//     byte and three special tokens.
//
// Why our own code: fine-tuning is only meaningful when the ids we train on
// are the ids the model was pre-trained with and that serving stacks (HF
// transformers, vLLM) will feed it. A tokenizer that differs on one
// whitespace run or one emoji silently teaches the model garbage, so the
// package is checked against the reference implementation on several hundred
// strings (testdata/reference). No maintained pure-Go library reproduced the
// reference: the split expressions need a lookahead that Go's regexp lacks.
// The three common ones (GPT-2, Llama 3, Qwen2) are matched by hand,
// following the backtracking semantics of the Oniguruma engine the reference
// uses; any other runs on github.com/dlclark/regexp2, a backtracking engine
// with the same Unicode classes, checked on GPT-4o's and DeepSeek V3's
// expressions and fuzzed against the hand-written matchers.
//
// Everything a tokenizer.json can say that this package does not implement
// (another model type, pre-tokenizer, normalizer, decoder, post-processor, an
// expression regexp2 cannot compile) is refused at load time with an error
// that names the field and wraps [ErrUnsupported], rather than encoding
// differently.
//
// Tokenizers are immutable after loading and safe for concurrent use.
package tokenizer
