package engine

import (
	"context"
	"testing"

	"github.com/tensafe/tensafe/tokenizer"
)

// TestSampleKnownIDsOnly: tensafe-tiny's vocabulary (264 rows) is padded
// past its byte tokenizer's 259 ids. Sampling with the tokenizer as decoder
// never draws a padded id (which would fail to decode), and its
// log-probabilities are those of the distribution over the known ids.
func TestSampleKnownIDsOnly(t *testing.T) {
	e := tinyEngine(t, false)
	// A high temperature flattens the distribution: without the limit,
	// 64 × 40 draws from it hit the 5 padded ids almost surely.
	req := SampleRequest{Prompt: []int{256, 'a'}, MaxTokens: 40, Temperature: 50, N: 64, Seed: 9}
	seqs, err := e.Sample(context.Background(), req, tokenizer.NewByte())
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range seqs {
		for j, id := range s.Tokens {
			if id >= tokenizer.ByteVocabSize {
				t.Fatalf("sequence %d token %d: id %d is not in the tokenizer", i, j, id)
			}
			if !(s.LogProbs[j] <= 0) {
				t.Fatalf("logprob %v", s.LogProbs[j])
			}
		}
	}
	// Without a decoder the model's whole vocabulary is sampled.
	seqs, err = e.Sample(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	padded := 0
	for _, s := range seqs {
		for _, id := range s.Tokens {
			if id >= tokenizer.ByteVocabSize {
				padded++
			}
		}
	}
	if padded == 0 {
		t.Error("without a decoder no padded id was drawn: the test does not exercise the limit")
	}
}
