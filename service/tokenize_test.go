package service

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/tensafe/tensafe/api"
)

func TestTokenize(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s := f.svc
	res, err := s.Tokenize(ctx, api.TokenizeRequest{Model: "tensafe-tiny", Texts: []string{"hi", "<eos>", ""}, AddSpecialTokens: true})
	if err != nil {
		t.Fatal(err)
	}
	want := [][]int{{256, 'h', 'i'}, {256, '<', 'e', 'o', 's', '>'}, {256}}
	for i := range want {
		if !slices.Equal(res.InputIDs[i], want[i]) {
			t.Errorf("input_ids[%d] = %v, want %v", i, res.InputIDs[i], want[i])
		}
	}
	if res.BOSTokenID != 256 || res.EOSTokenID != 257 || res.Model != "tensafe-tiny" {
		t.Errorf("result %+v", res)
	}
	res, err = s.Tokenize(ctx, api.TokenizeRequest{Model: "tensafe-tiny", Texts: []string{"", "ab"}})
	if err != nil || res.InputIDs[0] == nil || len(res.InputIDs[0]) != 0 || !slices.Equal(res.InputIDs[1], []int{'a', 'b'}) {
		t.Errorf("without special tokens: %+v, %v", res, err)
	}
	// The same ids as sample's own encoding of a text prompt.
	tc, err := s.CreateTrainingClient(ctx, f.tenA, tinyConfig(1, 8, 2, 100))
	if err != nil {
		t.Fatal(err)
	}
	var a, b api.SampleResult
	sa, err := s.Sample(ctx, f.tenA, tc.ID, api.SampleRequest{Prompt: "hello", MaxTokens: 5})
	await(t, s, f.tenA, sa, err, &a)
	ids, err := s.Tokenize(ctx, api.TokenizeRequest{Model: "tensafe-tiny", Texts: []string{"hello"}, AddSpecialTokens: true})
	if err != nil {
		t.Fatal(err)
	}
	sb, err := s.Sample(ctx, f.tenA, tc.ID, api.SampleRequest{PromptTokens: ids.InputIDs[0], MaxTokens: 5})
	await(t, s, f.tenA, sb, err, &b)
	if !slices.Equal(a.Sequences[0].Tokens, b.Sequences[0].Tokens) {
		t.Errorf("tokenize does not match sample's prompt encoding")
	}

	dt, err := s.Detokenize(ctx, api.DetokenizeRequest{Model: "tensafe-tiny", InputIDs: [][]int{{256, 'h', 'i', 257}, {}}})
	if err != nil || !slices.Equal(dt.Texts, []string{"<bos>hi<eos>", ""}) {
		t.Errorf("detokenize: %+v, %v", dt, err)
	}
	dt, err = s.Detokenize(ctx, api.DetokenizeRequest{Model: "tensafe-tiny", InputIDs: [][]int{{256, 'h', 'i', 257}}, SkipSpecialTokens: true})
	if err != nil || !slices.Equal(dt.Texts, []string{"hi"}) {
		t.Errorf("detokenize skipping specials: %+v, %v", dt, err)
	}

	for _, c := range []struct {
		name  string
		err   error
		field string
	}{
		{"unknown model", second(s.Tokenize(ctx, api.TokenizeRequest{Model: "nope", Texts: []string{"x"}})), "model"},
		{"no texts", second(s.Tokenize(ctx, api.TokenizeRequest{Model: "tensafe-tiny"})), "texts"},
		{"too many texts", second(s.Tokenize(ctx, api.TokenizeRequest{Model: "tensafe-tiny", Texts: make([]string, api.MaxTokenizeTexts+1)})), "texts"},
		{"too long", second(s.Tokenize(ctx, api.TokenizeRequest{Model: "tensafe-tiny", Texts: []string{strings.Repeat("a", api.MaxTokenizeBytes+1)}})), "texts"},
		{"id out of range", second(s.Detokenize(ctx, api.DetokenizeRequest{Model: "tensafe-tiny", InputIDs: [][]int{{1, 2}, {3, 999}}})), "input_ids[1][1]"},
		{"padded vocabulary id", second(s.Detokenize(ctx, api.DetokenizeRequest{Model: "tensafe-tiny", InputIDs: [][]int{{260}}})), "input_ids[0][0]"},
		{"negative id", second(s.Detokenize(ctx, api.DetokenizeRequest{Model: "tensafe-tiny", InputIDs: [][]int{{-1}}})), "input_ids[0][0]"},
		{"no rows", second(s.Detokenize(ctx, api.DetokenizeRequest{Model: "tensafe-tiny"})), "input_ids"},
	} {
		var fe *FieldError
		if !errors.As(c.err, &fe) || fe.Field != c.field {
			t.Errorf("%s: %v, want a field error on %s", c.name, c.err, c.field)
		}
	}
}

func second[T any](_ T, err error) error { return err }
