package server

import (
	"math"
	"testing"

	"github.com/tensafe/tensafe/api"
)

// TestLossesOverHTTP: a missing batch field, an unknown kwarg and a
// misaligned custom gradient are 400s naming the field; RL, preference and
// custom losses train through the server and report their metrics.
func TestLossesOverHTTP(t *testing.T) {
	f := newFixture(t, nil)
	tok := f.tok["A-trainer"]
	var tc api.TrainingClient
	f.must(t, 201, tok, "POST", "/api/v1/training_clients", tinyConfig(1, 50, 2, 100), &tc)
	p := "/api/v1/training_clients/" + tc.ID
	b := textBatch("ab", "cd")
	for _, c := range []struct {
		name, path string
		body       any
		field      string
	}{
		{"missing advantages", "/forward_backward", api.ForwardBackwardRequest{Batch: b, Loss: &api.LossSpec{Type: "ppo"}}, "batch.advantages"},
		{"missing reference", "/forward_backward", api.ForwardBackwardRequest{Batch: b, Loss: &api.LossSpec{Type: "dpo"}}, "batch.reference_logprobs"},
		{"unknown kwarg", "/forward_backward", api.ForwardBackwardRequest{Batch: b, Loss: &api.LossSpec{Type: "ppo", Kwargs: map[string]any{"clip_eps": 0.2}}}, "loss"},
		{"odd pairs", "/forward_backward", api.ForwardBackwardRequest{Batch: textBatch("a", "b", "c"), Loss: &api.LossSpec{Type: "margin_ranking"}}, "batch.input_ids"},
		{"head token", "/forward_backward", api.ForwardBackwardRequest{Batch: b, Loss: &api.LossSpec{Type: "mse", Kwargs: map[string]any{"head_token": 5000}}}, "loss"},
		{"no grads", "/forward_backward_custom", api.ForwardBackwardCustomRequest{Batch: b}, "logprob_grads"},
		{"short grads", "/forward_backward_custom", api.ForwardBackwardCustomRequest{Batch: b, LogprobGrads: [][]float64{{0, 1, 1}, {0, 1}}}, "logprob_grads[1]"},
		{"losses", "/forward_backward_custom", api.ForwardBackwardCustomRequest{Batch: b, LogprobGrads: [][]float64{{0, 1, 1}, {0, 1, 1}}, Losses: []float64{1}}, "losses"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := f.do(t, tok, "POST", p+c.path, c.body)
			if e := r.envelope(t); r.code != 400 || e.Field != c.field {
				t.Fatalf("status %d field %q, want 400 %q: %s", r.code, e.Field, c.field, r.body)
			}
		})
	}

	// Forward's logprobs are aligned with input_ids; feed them back as
	// sampling logprobs for PPO (ratio 1 everywhere).
	var fut api.Future
	var fr api.ForwardResult
	f.must(t, 202, tok, "POST", p+"/forward", api.ForwardRequest{Batch: b}, &fut)
	f.await(t, tok, fut, &fr)
	if len(fr.LogProbs) != 2 || len(fr.LogProbs[0]) != len(b.InputIDs[0]) || fr.LogProbs[0][0] != 0 || !(fr.LogProbs[0][1] < 0) {
		t.Fatalf("logprobs %v not aligned with input_ids %v", fr.LogProbs, b.InputIDs)
	}
	rl := b
	rl.SamplingLogprobs = fr.LogProbs
	rl.Advantages = [][]float64{{0, 1, 1}, {0, -1, -1}}
	var res api.ForwardBackwardResult
	f.must(t, 202, tok, "POST", p+"/forward_backward", api.ForwardBackwardRequest{Batch: rl, Loss: &api.LossSpec{Type: "ppo"}}, &fut)
	f.await(t, tok, fut, &res)
	if math.Abs(res.Metrics["ratio_mean"]-1) > 1e-4 || res.Metrics["clip_fraction"] != 0 || len(res.PerExampleNorms) != 2 {
		t.Fatalf("ppo result %+v", res)
	}
	// A pair is one example for DPO.
	pref := b
	pref.ReferenceLogprobs = fr.LogProbs
	f.must(t, 202, tok, "POST", p+"/forward_backward", api.ForwardBackwardRequest{Batch: pref, Loss: &api.LossSpec{Type: "dpo"}}, &fut)
	f.await(t, tok, fut, &res)
	if len(res.PerExampleLoss) != 1 || math.Abs(res.PerExampleLoss[0]-math.Log(2)) > 1e-4 || res.PendingExamples != 3 {
		t.Fatalf("dpo result %+v", res)
	}
	// Custom: the losses come back as sent.
	f.must(t, 202, tok, "POST", p+"/forward_backward_custom", api.ForwardBackwardCustomRequest{Batch: b,
		LogprobGrads: [][]float64{{0, -0.5, -0.5}, {0, -0.5, -0.5}}, Losses: []float64{1.5, 2.5}}, &fut)
	f.await(t, tok, fut, &res)
	if res.Loss != 2 || len(res.PerExampleNorms) != 2 || res.PendingExamples != 5 {
		t.Fatalf("custom result %+v", res)
	}
}
