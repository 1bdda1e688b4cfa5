package service

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/tensafe/tensafe/api"
)

// TestRegisteredModel: an operator-registered folder is reachable by its
// name only, is loaded once and shared, and has no tokenizer here (text
// prompts are refused by field, token prompts work).
func TestRegisteredModel(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	dir := filepath.Join("..", "testdata", "fixtures", "tiny-llama")
	s, err := New(Config{Store: f.st, Audit: f.log, Keys: f.svc.keys, ArtifactDir: t.TempDir(),
		Models: map[string]string{"tiny-llama": dir}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if got := s.Models(); len(got) != 2 || got[0] != "tensafe-tiny" || got[1] != "tiny-llama" {
		t.Fatalf("models %v", got)
	}
	cfg := tinyConfig(1, 8, 1, 100)
	cfg.BaseModel = "tiny-llama"
	a, err := s.CreateTrainingClient(ctx, f.tenA, cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.CreateTrainingClient(ctx, f.tenB, cfg)
	if err != nil {
		t.Fatal(err)
	}
	sa, _ := s.session(ctx, f.tenA, a.ID)
	sb, _ := s.session(ctx, f.tenB, b.ID)
	if sa.eng.Model() != sb.eng.Model() {
		t.Fatal("two clients on one base model hold two copies")
	}
	fu, err := s.ForwardBackward(ctx, f.tenA, a.ID, api.ForwardBackwardRequest{Batch: api.Batch{
		InputIDs: [][]int{{1, 300, 511}}, Labels: [][]int{{1, 300, 511}}}})
	await(t, s, f.tenA, fu, err, nil)
	if _, err := s.ForwardBackward(ctx, f.tenA, a.ID, api.ForwardBackwardRequest{Batch: api.Batch{
		InputIDs: [][]int{{1, 512}}, Labels: [][]int{{1, 2}}}}); !isField(err, "batch.input_ids[0][1]") {
		t.Fatalf("id outside the registered model's vocabulary: %v", err)
	}
	if _, err := s.Sample(ctx, f.tenA, a.ID, api.SampleRequest{Prompt: "hi", MaxTokens: 2}); !isField(err, "prompt") {
		t.Fatalf("text prompt without a tokenizer: %v", err)
	}
	sf, err := s.Sample(ctx, f.tenA, a.ID, api.SampleRequest{PromptTokens: []int{1, 5}, MaxTokens: 3})
	var sr api.SampleResult
	await(t, s, f.tenA, sf, err, &sr)
	if len(sr.Sequences[0].Tokens) == 0 {
		t.Fatalf("sample %+v", sr)
	}
	// A path is not a name.
	cfg.BaseModel = dir
	if _, err := s.CreateTrainingClient(ctx, f.tenA, cfg); !isField(err, "base_model") {
		t.Fatalf("path as base_model: %v", err)
	}
	for name, folders := range map[string]map[string]string{
		"builtin name": {"tensafe-tiny": dir},
		"bad name":     {"a b": dir},
		"empty folder": {"x": ""},
	} {
		if _, err := New(Config{Store: f.st, Audit: f.log, Keys: f.svc.keys, ArtifactDir: t.TempDir(), Models: folders}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func isField(err error, field string) bool {
	var fe *FieldError
	return errors.As(err, &fe) && fe.Field == field
}
