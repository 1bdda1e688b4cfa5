package rlvr_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/client"
	"github.com/tensafe/tensafe/rlvr"
	"github.com/tensafe/tensafe/safetensors"
)

func ptr[T any](v T) *T { return &v }

// Every RL test runs DP-SGD with σ = 1 and C = 1 with the prompt as the
// privacy unit: each step Poisson-samples the 48 prompts with q = 1/2
// (24 prompts, 48 rows of 2 samples each, on average), and a prompt's 2
// completions are one clipped example. The noise has standard deviation
// 1/24 per coordinate of the averaged clipped gradient. A small adapter
// (rank 4 on o_proj and down_proj, ~7k parameters) keeps the noise's norm
// within reach of the signal, so the reward rises with any noise draw (the
// noise comes from crypto/rand: it is never seeded; the prompt draw is
// seeded, in tests only, with Config.SamplerSeed).
const (
	testSigma   = 1.0
	testPrompts = 48 // dataset_size: prompts
	testPerStep = 24 // expected_batch_size: prompts per step
	testSamples = 2  // completions per prompt: rows per example
)

// policyConfig is a DP LoRA client on tensafe-tiny sized for RL tests.
func policyConfig(lr float64, seed uint64) api.TrainingConfig {
	return api.TrainingConfig{
		BaseModel: "tensafe-tiny",
		LoRA:      api.LoRAConfig{Rank: 4, Alpha: 8, TargetModules: []string{"o_proj", "down_proj"}},
		DP: &api.DPConfig{NoiseMultiplier: testSigma, MaxGradNorm: 1, TargetEpsilon: 1000, TargetDelta: 1e-5,
			DatasetSize: testPrompts, ExpectedBatchSize: testPerStep},
		Optimizer: api.OptimizerConfig{LearningRate: ptr(lr), WeightDecay: ptr(0.0)},
		Seed:      seed,
	}
}

// lowercase is the verifiable reward of the tests: the fraction of the
// completion's bytes that are lower-case ASCII letters (the untrained
// model writes ~5%).
func lowercase(s rlvr.Sample) (float64, error) {
	n := 0
	for _, c := range []byte(s.Completion) {
		if c >= 'a' && c <= 'z' {
			n++
		}
	}
	return float64(n) / float64(max(1, len(s.Completion))), nil
}

// rlPrompts are 48 one-byte prompts without a lower-case letter.
var rlPrompts = func() []rlvr.Prompt {
	var ps []rlvr.Prompt
	for _, c := range "1#Q%7Z!80@X&3K?5A(B)C*D+E-F=G/H:IJLMNOPRSTUVWY24" {
		ps = append(ps, rlvr.Prompt{Text: string(c)})
	}
	return ps
}()

func rlConfig(algo string) rlvr.Config {
	return rlvr.Config{Algorithm: algo, Prompts: rlPrompts, PromptsPerStep: testPerStep,
		Sampling: rlvr.SamplingParams{N: testSamples, MaxTokens: 8, TopK: 8}, Seed: 3,
		Advantage:   rlvr.AdvantageConfig{Normalize: true},
		SamplerSeed: []byte("rlvr tests only")}
}

func run(t *testing.T, tr *rlvr.Trainer, steps int) ([]float64, []*rlvr.StepResult) {
	t.Helper()
	var hist []float64
	var res []*rlvr.StepResult
	for range steps {
		r, err := tr.Step(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		hist = append(hist, r.MeanReward)
		res = append(res, r)
	}
	return hist, res
}

func mean(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// assertRises: the mean reward of the last three steps is clearly above
// that of the first three.
func assertRises(t *testing.T, name string, hist []float64) {
	t.Helper()
	first, last := mean(hist[:3]), mean(hist[len(hist)-3:])
	t.Logf("%s mean reward per step: %.2f", name, hist)
	if !(last >= first+0.15 && last >= 3*first) {
		t.Errorf("%s: mean reward %.3f over the first 3 steps, %.3f over the last 3: no clear rise", name, first, last)
	}
}

// probe is a fixed batch whose log-probabilities fingerprint a policy.
func probe() api.Batch {
	var b api.Batch
	for _, s := range []string{"the quick brown fox", "0123456789", "RL over DP-SGD"} {
		ids := []int{256}
		for _, c := range []byte(s) {
			ids = append(ids, int(c))
		}
		b.InputIDs = append(b.InputIDs, ids)
		b.Labels = append(b.Labels, ids)
	}
	return b
}

// fingerprint hashes the exact float64 bits of tc's log-probabilities of
// the probe batch.
func fingerprint(t *testing.T, tc *client.TrainingClient) [32]byte {
	t.Helper()
	f, err := tc.Forward(context.Background(), probe(), nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := f.Result(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	for _, row := range r.LogProbs {
		for _, v := range row {
			binary.Write(h, binary.LittleEndian, math.Float64bits(v))
		}
	}
	return [32]byte(h.Sum(nil))
}

// TestREINFORCE: with DP on (σ = 1), REINFORCE with a moving-average
// baseline raises the mean reward clearly within 15 steps; the base model
// is unchanged (a fresh client's log-probabilities are bit-identical before
// and after, and the trained state holds LoRA tensors only); the algorithm
// state survives a checkpoint and a resumed trainer continues exactly.
func TestREINFORCE(t *testing.T) {
	c := newServer(t)
	ctx := context.Background()
	fresh := func() *client.TrainingClient {
		tc, err := c.CreateTrainingClient(ctx, policyConfig(5e-2, 77))
		if err != nil {
			t.Fatal(err)
		}
		return tc
	}
	baseBefore := fingerprint(t, fresh())
	tc, err := c.CreateTrainingClient(ctx, policyConfig(5e-2, 1))
	if err != nil {
		t.Fatal(err)
	}
	policyBefore := fingerprint(t, tc)
	tr, err := rlvr.NewTrainer(c, tc, lowercase, rlConfig(rlvr.REINFORCE))
	if err != nil {
		t.Fatal(err)
	}
	hist, res := run(t, tr, 15)
	assertRises(t, "reinforce", hist)
	for _, r := range res {
		if len(r.Updates) != 1 || r.Updates[0].OptimStep == nil || !(r.Updates[0].OptimStep.NoiseStd > 0) {
			t.Fatalf("step %d: updates %+v (want one noisy optim_step)", r.Step, r.Updates)
		}
	}
	m, err := tc.DPMetrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.Steps != 15 || m.NoiseMultiplier != testSigma || !(m.EpsilonSpent > 0) {
		t.Errorf("dp_metrics %+v", m)
	}

	// Only LoRA parameters changed.
	if fingerprint(t, tc) == policyBefore {
		t.Error("the policy did not change")
	}
	if fingerprint(t, fresh()) != baseBefore {
		t.Error("the base model changed: a fresh client's log-probabilities differ after training")
	}
	saved, err := tr.Save(ctx, "rl-15")
	if err != nil {
		t.Fatal(err)
	}
	assertLoRAOnly(t, c, saved.ArtifactID)

	// Resume: a new client and trainer loaded from the checkpoint continue
	// exactly as the original (same prompts, seeds, samples).
	want, err := tr.State()
	if err != nil {
		t.Fatal(err)
	}
	tc2 := fresh()
	tr2, err := rlvr.NewTrainer(c, tc2, lowercase, rlConfig(rlvr.REINFORCE))
	if err != nil {
		t.Fatal(err)
	}
	if err := tr2.Load(ctx, saved.ArtifactID); err != nil {
		t.Fatal(err)
	}
	got, err := tr2.State()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("restored state %+v, want %+v", got, want)
	}
	a, err := tr.Step(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := tr2.Step(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range a.Trajectories {
		x, y := a.Trajectories[i], b.Trajectories[i]
		if x.Prompt != y.Prompt || !slices.Equal(x.Tokens, y.Tokens) {
			t.Fatalf("resumed trainer diverged at trajectory %d: %v %q vs %v %q", i, x.Prompt, x.Text, y.Prompt, y.Text)
		}
	}
	// A trainer of another algorithm refuses the state.
	tr3, err := rlvr.NewTrainer(c, fresh(), lowercase, rlConfig(rlvr.PPO))
	if err != nil {
		t.Fatal(err)
	}
	if err := tr3.Load(ctx, saved.ArtifactID); err == nil || !strings.Contains(err.Error(), "reinforce") {
		t.Errorf("ppo trainer loading a reinforce state: %v", err)
	}
}

// assertLoRAOnly opens the downloaded checkpoint (docs/API.md, "Checkpoint
// artifacts") and checks that its engine state holds LoRA weights and their
// AdamW moments only: nothing of the base model is trainable.
func assertLoRAOnly(t *testing.T, c *client.ServiceClient, id string) {
	t.Helper()
	rc, err := c.DownloadArtifact(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte("TSSVCKP1")) {
		t.Fatal("not a checkpoint")
	}
	n := binary.BigEndian.Uint32(data[8:12])
	var h struct {
		BudgetSize int64           `json:"budget_size"`
		EngineSize int64           `json:"engine_size"`
		Metadata   json.RawMessage `json:"metadata"`
	}
	if err := json.Unmarshal(data[12:12+n], &h); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(h.Metadata, []byte(rlvr.StateFormat)) {
		t.Errorf("checkpoint metadata %s lacks the rlvr state", h.Metadata)
	}
	eng := data[12+int64(n)+h.BudgetSize:]
	f, err := safetensors.Parse(eng)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Names()) == 0 {
		t.Fatal("empty engine state")
	}
	for _, name := range f.Names() {
		if !(strings.HasPrefix(name, "lora/") || strings.HasPrefix(name, "adam_m/") || strings.HasPrefix(name, "adam_v/")) ||
			!strings.Contains(name, ".lora_") {
			t.Errorf("checkpoint holds a non-LoRA tensor %q", name)
		}
	}
}

// TestPPO: PPO (clipped ratio, 2 epochs per batch, KL penalty against a
// reference client that is never trained) under DP raises the mean reward
// clearly; the loss reports its clip fraction and KL.
func TestPPO(t *testing.T) {
	c := newServer(t)
	ctx := context.Background()
	tc, err := c.CreateTrainingClient(ctx, policyConfig(3e-2, 1))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := c.CreateTrainingClient(ctx, policyConfig(3e-2, 1))
	if err != nil {
		t.Fatal(err)
	}
	refBefore := fingerprint(t, ref)
	cfg := rlConfig(rlvr.PPO)
	cfg.Epochs, cfg.KLCoef, cfg.Reference = 2, 0.01, ref
	tr, err := rlvr.NewTrainer(c, tc, lowercase, cfg)
	if err != nil {
		t.Fatal(err)
	}
	hist, res := run(t, tr, 15)
	assertRises(t, "ppo", hist)
	sawMetrics := false
	for _, r := range res {
		if len(r.Updates) != 2 {
			t.Fatalf("step %d: %d updates, want 2 epochs", r.Step, len(r.Updates))
		}
		if fb := r.Updates[1].ForwardBackward; fb != nil {
			_, clip := fb.Metrics["clip_fraction"]
			_, kl := fb.Metrics["approx_kl"]
			sawMetrics = sawMetrics || clip && kl
		}
	}
	if !sawMetrics {
		t.Error("ppo reported no clip_fraction/approx_kl metrics")
	}
	if fingerprint(t, ref) != refBefore {
		t.Error("the reference client changed")
	}
	if m, err := tc.DPMetrics(ctx); err != nil || m.Steps != 30 {
		t.Errorf("dp_metrics %+v, %v: want 30 optimizer steps (15 × 2 epochs)", m, err)
	}
}

// TestGRPO: group-normalized advantages with the ppo loss run end to end:
// within each prompt's group the advantages sum to zero, the policy
// changes, and the mean reward does not fall (GRPO starts slower here: a
// group whose completions all score 0 gives no gradient).
func TestGRPO(t *testing.T) {
	c := newServer(t)
	ctx := context.Background()
	tc, err := c.CreateTrainingClient(ctx, policyConfig(5e-2, 1))
	if err != nil {
		t.Fatal(err)
	}
	before := fingerprint(t, tc)
	tr, err := rlvr.NewTrainer(c, tc, lowercase, rlConfig(rlvr.GRPO))
	if err != nil {
		t.Fatal(err)
	}
	hist, res := run(t, tr, 10)
	for _, r := range res {
		sums := map[int]float64{}
		for _, x := range r.Trajectories {
			sums[x.Prompt] += x.Advantage
		}
		for p, s := range sums {
			if math.Abs(s) > 1e-9 {
				t.Fatalf("step %d prompt %d: group advantages sum to %v", r.Step, p, s)
			}
		}
	}
	t.Logf("grpo mean reward per step: %.2f", hist)
	if fingerprint(t, tc) == before {
		t.Error("grpo did not change the policy")
	}
	if mean(hist[len(hist)-3:]) < mean(hist[:3]) {
		t.Errorf("grpo's mean reward fell: %.2f", hist)
	}

	// SaveWith: the caller's metadata beside the state, weights only.
	saved, err := tr.SaveWith(ctx, api.SaveStateRequest{Name: "grpo", Metadata: json.RawMessage(`{"run": "grpo-test"}`),
		IncludeOptimizer: ptr(false)})
	if err != nil {
		t.Fatal(err)
	}
	lf, err := tc.LoadState(ctx, saved.ArtifactID)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := lf.Result(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var meta map[string]json.RawMessage
	if err := json.Unmarshal(loaded.Metadata, &meta); err != nil || string(meta["run"]) != `"grpo-test"` || meta[rlvr.MetadataKey] == nil ||
		loaded.OptimizerRestored {
		t.Errorf("load_state %+v (metadata %s, %v)", loaded, loaded.Metadata, err)
	}
	if err := tr.Restore(loaded.Metadata); err != nil {
		t.Errorf("restore: %v", err)
	}
	if _, err := tr.SaveWith(ctx, api.SaveStateRequest{Metadata: json.RawMessage(`{"rlvr": 1}`)}); err == nil {
		t.Error("metadata overwriting the trainer's key accepted")
	}
}
