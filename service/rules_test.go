package service

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/store"
)

func allOperations(t *testing.T, st store.Store) int {
	t.Helper()
	ops, err := st.ListOperationsByState(context.Background(), store.OpQueued, store.OpRunning, store.OpSucceeded, store.OpFailed)
	if err != nil {
		t.Fatal(err)
	}
	return len(ops)
}

// TestBudgetExhaustion submits optim_steps without waiting until one is
// refused: admission counts the queued steps, so every admitted step
// succeeds, and the refusal changes nothing.
func TestBudgetExhaustion(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s, ten := f.svc, f.tenA
	// q = 0.25, σ = 1.5: a handful of steps fit in ε = 4.
	tc, err := s.CreateTrainingClient(ctx, ten, tinyConfig(1.5, 4, 2, 8))
	if err != nil {
		t.Fatal(err)
	}
	var futures []api.Future
	var refusal error
	for range 200 {
		fu, err := s.OptimStep(ctx, ten, tc.ID)
		if err != nil {
			refusal = err
			break
		}
		futures = append(futures, fu)
	}
	if refusal == nil || len(futures) == 0 {
		t.Fatalf("after %d steps, refusal %v", len(futures), refusal)
	}
	var be *BudgetExceededError
	if !errors.As(refusal, &be) || !errors.Is(refusal, ErrBudgetExceeded) {
		t.Fatalf("refusal %v is not a *BudgetExceededError", refusal)
	}
	if code, _ := CodeOf(refusal); code != api.CodePrivacyBudgetExceeded {
		t.Fatalf("code %q", code)
	}
	for _, fu := range futures {
		await(t, s, ten, fu, nil, nil)
	}
	m, err := s.DPMetrics(ctx, ten, tc.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !(be.EpsilonWouldBe > be.TargetEpsilon) || be.TargetEpsilon != 4 || m.EpsilonSpent > 4 || m.Steps != int64(len(futures)) {
		t.Fatalf("refusal %+v, metrics %+v, %d steps admitted", be, m, len(futures))
	}
	// Refused again, now with nothing queued: nothing changes.
	ops := allOperations(t, f.st)
	before, _ := s.GetTrainingClient(ctx, ten, tc.ID)
	if _, err := s.OptimStep(ctx, ten, tc.ID); !errors.Is(err, ErrBudgetExceeded) {
		t.Fatalf("second refusal: %v", err)
	}
	after, _ := s.GetTrainingClient(ctx, ten, tc.ID)
	m2, _ := s.DPMetrics(ctx, ten, tc.ID)
	if m2 != m || after.Step != before.Step || after.UpdatedAt != before.UpdatedAt || allOperations(t, f.st) != ops {
		t.Fatalf("state changed by a refused step: %+v → %+v, client %+v → %+v", m, m2, before, after)
	}
	stored, err := f.st.GetClient(ctx, ten, tc.ID)
	if err != nil || stored.Step != int64(len(futures)) {
		t.Fatalf("stored step %d (%v), want %d", stored.Step, err, len(futures))
	}
	denied := 0
	auditScan(f, func(e audit.Entry) {
		if e.Operation == "training.optim_step" && e.Outcome == audit.OutcomeDenied {
			denied++
		}
	})
	if denied != 2 {
		t.Fatalf("%d denied entries, want 2", denied)
	}
}

// TestTenantIsolation: another tenant's ids answer not found everywhere.
func TestTenantIsolation(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s := f.svc
	tc, err := s.CreateTrainingClient(ctx, f.tenA, tinyConfig(1, 8, 2, 100))
	if err != nil {
		t.Fatal(err)
	}
	fu, err := s.ForwardBackward(ctx, f.tenA, tc.ID, api.ForwardBackwardRequest{Batch: textBatch("abc")})
	await(t, s, f.tenA, fu, err, nil)
	of, err := s.OptimStep(ctx, f.tenA, tc.ID)
	await(t, s, f.tenA, of, err, nil)
	var sv api.SaveStateResult
	vf, err := s.SaveState(ctx, f.tenA, tc.ID, api.SaveStateRequest{})
	await(t, s, f.tenA, vf, err, &sv)
	mine, err := s.CreateTrainingClient(ctx, f.tenB, tinyConfig(1, 8, 2, 100))
	if err != nil {
		t.Fatal(err)
	}

	b := f.tenB
	calls := map[string]func() error{
		"get client": func() error { _, err := s.GetTrainingClient(ctx, b, tc.ID); return err },
		"forward_backward": func() error {
			_, err := s.ForwardBackward(ctx, b, tc.ID, api.ForwardBackwardRequest{Batch: textBatch("x")})
			return err
		},
		"forward": func() error {
			_, err := s.Forward(ctx, b, tc.ID, api.ForwardRequest{Batch: textBatch("x")})
			return err
		},
		"optim_step": func() error { _, err := s.OptimStep(ctx, b, tc.ID); return err },
		"sample": func() error {
			_, err := s.Sample(ctx, b, tc.ID, api.SampleRequest{Prompt: "x", MaxTokens: 1})
			return err
		},
		"save_state": func() error { _, err := s.SaveState(ctx, b, tc.ID, api.SaveStateRequest{}); return err },
		"load_state": func() error {
			_, err := s.LoadState(ctx, b, tc.ID, api.LoadStateRequest{ArtifactID: sv.ArtifactID})
			return err
		},
		"load_state other": func() error {
			_, err := s.LoadState(ctx, b, mine.ID, api.LoadStateRequest{ArtifactID: sv.ArtifactID})
			return err
		},
		"dp_metrics":     func() error { _, err := s.DPMetrics(ctx, b, tc.ID); return err },
		"delete":         func() error { return s.DeleteTrainingClient(ctx, b, tc.ID) },
		"future":         func() error { _, err := s.GetOperation(ctx, b, fu.ID); return err },
		"await":          func() error { _, err := s.AwaitOperation(ctx, b, fu.ID); return err },
		"artifact":       func() error { _, err := s.GetArtifact(ctx, b, sv.ArtifactID); return err },
		"download":       func() error { _, _, err := s.OpenArtifact(ctx, b, sv.ArtifactID); return err },
		"missing client": func() error { _, err := s.DPMetrics(ctx, b, "tc_doesnotexist"); return err },
		"garbage id":     func() error { _, err := s.GetTrainingClient(ctx, b, "../../etc/passwd"); return err },
	}
	for name, call := range calls {
		err := call()
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", name, err)
		}
		if code, _ := CodeOf(err); code != api.CodeNotFound {
			t.Errorf("%s: code %q", name, code)
		}
	}
	// Tenant A still sees everything.
	if _, err := s.GetTrainingClient(ctx, f.tenA, tc.ID); err != nil {
		t.Fatal(err)
	}
	if l, err := s.ListArtifacts(ctx, f.tenB); err != nil || len(l) != 0 {
		t.Fatalf("tenant B lists %v, %v", l, err)
	}
}

func TestConfigValidation(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	cases := []struct {
		field string
		edit  func(c *api.TrainingConfig)
	}{
		{"base_model", func(c *api.TrainingConfig) { c.BaseModel = "" }},
		{"base_model", func(c *api.TrainingConfig) { c.BaseModel = "/etc/passwd" }},
		{"lora_config.rank", func(c *api.TrainingConfig) { c.LoRA.Rank = 0 }},
		{"lora_config.rank", func(c *api.TrainingConfig) { c.LoRA.Rank = -3 }},
		{"lora_config.alpha", func(c *api.TrainingConfig) { c.LoRA.Alpha = math.NaN() }},
		{"lora_config.dropout", func(c *api.TrainingConfig) { c.LoRA.Dropout = 1 }},
		{"lora_config.target_modules", func(c *api.TrainingConfig) { c.LoRA.TargetModules = []string{"q_proj", "evil"} }},
		{"lora_config.target_modules", func(c *api.TrainingConfig) { c.LoRA.TargetModules = []string{"q_proj", "q_proj"} }},
		{"dp_config", func(c *api.TrainingConfig) { c.DP = nil }},
		{"dp_config.noise_multiplier", func(c *api.TrainingConfig) { c.DP.NoiseMultiplier = 0 }},
		{"dp_config.noise_multiplier", func(c *api.TrainingConfig) { c.DP.NoiseMultiplier = math.Inf(1) }},
		{"dp_config.max_grad_norm", func(c *api.TrainingConfig) { c.DP.MaxGradNorm = -1 }},
		{"dp_config.target_epsilon", func(c *api.TrainingConfig) { c.DP.TargetEpsilon = 0 }},
		{"dp_config.target_epsilon", func(c *api.TrainingConfig) { c.DP.TargetEpsilon = 1e-4 }}, // allows no step
		{"dp_config.target_delta", func(c *api.TrainingConfig) { c.DP.TargetDelta = 1 }},
		{"dp_config.dataset_size", func(c *api.TrainingConfig) { c.DP.DatasetSize = -5 }},
		{"dp_config.expected_batch_size", func(c *api.TrainingConfig) { c.DP.ExpectedBatchSize = 0 }},
		{"dp_config.expected_batch_size", func(c *api.TrainingConfig) { c.DP.ExpectedBatchSize = 200 }},
		{"dp_config.accountant", func(c *api.TrainingConfig) { c.DP.Accountant = "moments" }},
		{"optimizer.learning_rate", func(c *api.TrainingConfig) { c.Optimizer.LearningRate = ptr(-1.0) }},
		{"optimizer.beta2", func(c *api.TrainingConfig) { c.Optimizer.Beta2 = ptr(1.0) }},
		{"optimizer.schedule", func(c *api.TrainingConfig) { c.Optimizer.Schedule = "linear" }},
		{"optimizer.total_steps", func(c *api.TrainingConfig) { c.Optimizer.Schedule = "cosine" }},
		{"optimizer.warmup_steps", func(c *api.TrainingConfig) { c.Optimizer.WarmupSteps = -1 }},
		{"loss.type", func(c *api.TrainingConfig) { c.Loss = &api.LossSpec{} }},
		{"loss", func(c *api.TrainingConfig) { c.Loss = &api.LossSpec{Type: "no_such_loss"} }},
	}
	for _, tc := range cases {
		cfg := tinyConfig(1, 8, 2, 100)
		tc.edit(&cfg)
		_, err := f.svc.CreateTrainingClient(ctx, f.tenA, cfg)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || fe.Reason == "" {
			t.Errorf("%s: got %v", tc.field, err)
			continue
		}
		if code, field := CodeOf(err); code != api.CodeInvalidArgument || field != tc.field {
			t.Errorf("%s: CodeOf = %q, %q", tc.field, code, field)
		}
	}
	if l, _ := f.st.ListClients(ctx, f.tenA); len(l) != 0 {
		t.Fatalf("%d clients stored by refused creations", len(l))
	}
	if _, err := f.svc.CreateTrainingClient(ctx, "tn_nosuchtenant", tinyConfig(1, 8, 2, 100)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown tenant: %v", err)
	}
}

func TestRequestValidation(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s, ten := f.svc, f.tenA
	tc, err := s.CreateTrainingClient(ctx, ten, tinyConfig(1, 8, 2, 100))
	if err != nil {
		t.Fatal(err)
	}
	ops := allOperations(t, f.st)
	fb := func(b api.Batch) error {
		_, err := s.ForwardBackward(ctx, ten, tc.ID, api.ForwardBackwardRequest{Batch: b})
		return err
	}
	cases := []struct {
		field string
		call  func() error
	}{
		{"batch.input_ids", func() error { return fb(api.Batch{}) }},
		{"batch.input_ids[0][1]", func() error { return fb(api.Batch{InputIDs: [][]int{{1, 264}}, Labels: [][]int{{1, 2}}}) }},
		{"batch.input_ids[0][0]", func() error { return fb(api.Batch{InputIDs: [][]int{{-1}}, Labels: [][]int{{1}}}) }},
		{"batch.labels", func() error { return fb(api.Batch{InputIDs: [][]int{{1, 2}}}) }},
		{"batch.labels[0][1]", func() error { return fb(api.Batch{InputIDs: [][]int{{1, 2}}, Labels: [][]int{{1, -7}}}) }},
		{"batch.labels[0]", func() error { return fb(api.Batch{InputIDs: [][]int{{1, 2}}, Labels: [][]int{{1}}}) }},
		{"batch.attention_mask[0][0]", func() error {
			return fb(api.Batch{InputIDs: [][]int{{1, 2}}, Labels: [][]int{{1, 2}}, AttentionMask: [][]int{{2, 1}}})
		}},
		{"batch.input_ids[0]", func() error {
			return fb(api.Batch{InputIDs: [][]int{make([]int, 513)}, Labels: [][]int{make([]int, 513)}})
		}},
		{"batch.weights[0][0]", func() error {
			return fb(api.Batch{InputIDs: [][]int{{1}}, Labels: [][]int{{1}}, Weights: [][]float64{{math.NaN()}}})
		}},
		{"loss", func() error {
			_, err := s.ForwardBackward(ctx, ten, tc.ID, api.ForwardBackwardRequest{Batch: textBatch("a"), Loss: &api.LossSpec{Type: "token_ce", Kwargs: map[string]any{"bogus": 1}}})
			return err
		}},
		{"max_tokens", func() error {
			_, err := s.Sample(ctx, ten, tc.ID, api.SampleRequest{Prompt: "a", MaxTokens: 0})
			return err
		}},
		{"prompt_tokens", func() error { _, err := s.Sample(ctx, ten, tc.ID, api.SampleRequest{MaxTokens: 2}); return err }},
		{"prompt_tokens[1]", func() error {
			_, err := s.Sample(ctx, ten, tc.ID, api.SampleRequest{PromptTokens: []int{1, 999}, MaxTokens: 2})
			return err
		}},
		{"temperature", func() error {
			_, err := s.Sample(ctx, ten, tc.ID, api.SampleRequest{Prompt: "a", MaxTokens: 2, Temperature: -1})
			return err
		}},
		{"n", func() error {
			_, err := s.Sample(ctx, ten, tc.ID, api.SampleRequest{Prompt: "a", MaxTokens: 2, N: 65})
			return err
		}},
		{"name", func() error { _, err := s.SaveState(ctx, ten, tc.ID, api.SaveStateRequest{Name: "a\x00b"}); return err }},
		{"artifact_id", func() error { _, err := s.LoadState(ctx, ten, tc.ID, api.LoadStateRequest{}); return err }},
	}
	for _, c := range cases {
		err := c.call()
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%s: got %v", c.field, err)
		}
	}
	if n := allOperations(t, f.st); n != ops {
		t.Fatalf("refused requests stored %d operations", n-ops)
	}
}

// TestSaveWithPendingGradients: un-noised gradients are never written.
func TestSaveWithPendingGradients(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s, ten := f.svc, f.tenA
	tc, err := s.CreateTrainingClient(ctx, ten, tinyConfig(1, 8, 2, 100))
	if err != nil {
		t.Fatal(err)
	}
	fu, err := s.ForwardBackward(ctx, ten, tc.ID, api.ForwardBackwardRequest{Batch: textBatch("abc")})
	await(t, s, ten, fu, err, nil)
	sf, err := s.SaveState(ctx, ten, tc.ID, api.SaveStateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.AwaitOperation(ctx, ten, sf.ID)
	if err != nil || got.State != api.FutureFailed || got.Error == nil || got.Error.Code != api.CodeFailedPrecondition {
		t.Fatalf("save with pending gradients: %+v, %v", got, err)
	}
	if !strings.Contains(got.Error.Message, "optim_step") {
		t.Fatalf("message %q", got.Error.Message)
	}
	if l, _ := s.ListArtifacts(ctx, ten); len(l) != 0 {
		t.Fatalf("artifacts written: %v", l)
	}
}

func TestCodeOf(t *testing.T) {
	var cfg api.TrainingConfig
	decodeErr := api.DecodeBytes([]byte(`{"lora_config":{"rank":"x"}}`), &cfg)
	tooBig := api.Decode(strings.NewReader(`{"base_model":"xxxxxxxx"}`), 4, &cfg)
	for _, c := range []struct {
		err         error
		code, field string
	}{
		{fieldErr("dp_config.noise_multiplier", "bad"), api.CodeInvalidArgument, "dp_config.noise_multiplier"},
		{decodeErr, api.CodeInvalidArgument, "lora_config.rank"},
		{tooBig, api.CodeTooLarge, ""},
		{&BudgetExceededError{}, api.CodePrivacyBudgetExceeded, ""},
		{errors.Join(errors.New("x"), ErrNotFound), api.CodeNotFound, ""},
		{store.ErrNotFound, api.CodeNotFound, ""},
		{ErrFailedPrecondition, api.CodeFailedPrecondition, ""},
		{ErrClosed, api.CodeUnavailable, ""},
		{errors.New("disk on fire"), api.CodeInternal, ""},
	} {
		if code, field := CodeOf(c.err); code != c.code || field != c.field {
			t.Errorf("CodeOf(%v) = %q, %q; want %q, %q", c.err, code, field, c.code, c.field)
		}
	}
}

// TestPRVAccountant: the PRV accountant is selectable and reported.
func TestPRVAccountant(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	cfg := tinyConfig(1, 8, 2, 100)
	cfg.DP.Accountant = "prv"
	tc, err := f.svc.CreateTrainingClient(ctx, f.tenA, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ou, err := f.svc.OptimStep(ctx, f.tenA, tc.ID)
	await(t, f.svc, f.tenA, ou, err, nil)
	m, err := f.svc.DPMetrics(ctx, f.tenA, tc.ID)
	if err != nil || m.Accountant != "prv" || m.Steps != 1 || !(m.EpsilonSpent > 0) {
		t.Fatalf("prv metrics %+v, %v", m, err)
	}
	if tc.Config.DP.Accountant != "prv" {
		t.Fatalf("stored config %+v", tc.Config.DP)
	}
}
