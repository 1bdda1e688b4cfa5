package rlvr

import (
	"reflect"
	"strings"
	"testing"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/client"
)

func offlineTrainer(t *testing.T, cfg Config) (*Trainer, error) {
	t.Helper()
	svc, err := client.New("http://127.0.0.1:1", "")
	if err != nil {
		t.Fatal(err)
	}
	tc := &client.TrainingClient{ID: "tc_x", Info: api.TrainingClient{BaseModel: "tensafe-tiny"}}
	return NewTrainer(svc, tc, func(Sample) (float64, error) { return 0, nil }, cfg)
}

// TestTrainerConfig: defaults, the loss each algorithm sends, and refused
// configurations.
func TestTrainerConfig(t *testing.T) {
	prompts := []Prompt{{Text: "a"}, {Text: "b"}}
	tr, err := offlineTrainer(t, Config{Prompts: prompts, EntropyCoef: 0.01})
	if err != nil {
		t.Fatal(err)
	}
	c := tr.Config()
	if c.Algorithm != REINFORCE || c.Epochs != 1 || c.PromptsPerStep != 2 || c.Sampling.N != 4 || c.Model != "tensafe-tiny" ||
		c.PrivacyUnit != UnitPrompt || tr.GroupSize() != 4 || tr.SamplingRate() != 1 {
		t.Errorf("defaults %+v", c)
	}
	// The prompt is the privacy unit: its 4 completions are one example.
	if got, want := tr.lossSpec(), (&api.LossSpec{Type: "importance_sampling", Kwargs: map[string]any{"entropy_coef": 0.01, "group_size": 4}}); !reflect.DeepEqual(got, want) {
		t.Errorf("reinforce loss %+v", got)
	}
	tr, err = offlineTrainer(t, Config{Prompts: prompts, PrivacyUnit: UnitCompletion, PromptsPerStep: 1})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tr.lossSpec(), (&api.LossSpec{Type: "importance_sampling", Kwargs: map[string]any{}}); !reflect.DeepEqual(got, want) ||
		tr.GroupSize() != 1 || tr.SamplingRate() != 0.5 {
		t.Errorf("per-completion loss %+v, group %d, q %v", got, tr.GroupSize(), tr.SamplingRate())
	}
	ref := &client.TrainingClient{ID: "tc_ref"}
	tr, err = offlineTrainer(t, Config{Algorithm: PPO, Prompts: prompts, KLCoef: 0.1, Reference: ref})
	if err != nil {
		t.Fatal(err)
	}
	if tr.Config().Epochs != 4 {
		t.Errorf("ppo epochs %d", tr.Config().Epochs)
	}
	want := &api.LossSpec{Type: "ppo", Kwargs: map[string]any{"clip_low_threshold": 0.8, "clip_high_threshold": 1.2, "kl_coef": 0.1, "group_size": 4}}
	if got := tr.lossSpec(); !reflect.DeepEqual(got, want) {
		t.Errorf("ppo loss %+v", got)
	}
	tr, err = offlineTrainer(t, Config{Algorithm: GRPO, Prompts: prompts})
	if err != nil || !tr.Config().Advantage.GroupNormalize || tr.Config().Epochs != 1 {
		t.Errorf("grpo: %+v, %v", tr, err)
	}
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "no prompts"},
		{Config{Algorithm: "a2c", Prompts: prompts}, "algorithm"},
		{Config{Prompts: prompts, PromptsPerStep: 3}, "prompts_per_step"},
		{Config{Prompts: prompts, Epochs: 2}, "one update per batch"},
		{Config{Prompts: prompts, KLCoef: 0.1}, "kl_coef applies"},
		{Config{Algorithm: PPO, Prompts: prompts, KLCoef: 0.1}, "reference"},
		{Config{Algorithm: PPO, Prompts: prompts, ClipLow: 1.5}, "clip"},
		{Config{Algorithm: PPO, Prompts: prompts, Epochs: 100}, "epochs"},
		{Config{Algorithm: GRPO, Prompts: prompts, Sampling: SamplingParams{N: 1}}, "at least 2"},
		{Config{Prompts: prompts, Advantage: AdvantageConfig{Decay: 1}}, "decay"},
		{Config{Prompts: prompts, EntropyCoef: -1}, "entropy_coef"},
		{Config{Prompts: prompts, PrivacyUnit: "row"}, "privacy_unit"},
		{Config{Prompts: prompts, SamplerSeed: []byte{}}, "sampler_seed"},
	} {
		if _, err := offlineTrainer(t, c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
	// Restore refuses a state of another algorithm or a bad generator.
	tr, _ = offlineTrainer(t, Config{Prompts: prompts})
	st, _ := tr.State()
	st.Algorithm = PPO
	meta, _ := st.metadata()
	if err := tr.Restore(meta); err == nil || !strings.Contains(err.Error(), "ppo") {
		t.Errorf("restore of a ppo state into reinforce: %v", err)
	}
	st.Algorithm, st.RNG = REINFORCE, []byte("junk")
	meta, _ = st.metadata()
	if err := tr.Restore(meta); err == nil || !strings.Contains(err.Error(), "rng") {
		t.Errorf("restore with a bad rng: %v", err)
	}
}

// TestSamplingRateCheck: a policy whose DP config declares a sampling rate
// below the trainer's Poisson rate is refused (the accountant would spend
// too little ε), naming the fields and the values to set; the DP config
// counts prompts, or completions with UnitCompletion.
func TestSamplingRateCheck(t *testing.T) {
	svc, err := client.New("http://127.0.0.1:1", "")
	if err != nil {
		t.Fatal(err)
	}
	prompts := make([]Prompt, 10)
	for i := range prompts {
		prompts[i] = Prompt{Text: string(rune('a' + i))}
	}
	reward := func(Sample) (float64, error) { return 0, nil }
	for _, c := range []struct {
		unit            string
		dataset, perStp int64
		ok              bool
	}{
		{UnitPrompt, 10, 2, true},
		{UnitPrompt, 5, 1, true},        // the same rate
		{UnitPrompt, 10, 4, true},       // a larger declared rate overstates ε: allowed
		{UnitPrompt, 100, 2, false},     // 0.02 < 0.2
		{UnitPrompt, 10000, 32, false},  // the old tests' declaration
		{UnitCompletion, 40, 8, true},   // 10 prompts × 4 samples, 2 × 4 per step
		{UnitCompletion, 400, 8, false}, // 0.02 < 0.2
	} {
		tc := &client.TrainingClient{ID: "tc_x", Info: api.TrainingClient{BaseModel: "tensafe-tiny", Config: api.TrainingConfig{
			DP: &api.DPConfig{NoiseMultiplier: 1, MaxGradNorm: 1, DatasetSize: c.dataset, ExpectedBatchSize: int(c.perStp)}}}}
		_, err := NewTrainer(svc, tc, reward, Config{Prompts: prompts, PromptsPerStep: 2, PrivacyUnit: c.unit})
		if c.ok != (err == nil) {
			t.Errorf("%s, dataset %d, batch %d: %v", c.unit, c.dataset, c.perStp, err)
		}
		if err != nil && !(strings.Contains(err.Error(), "dataset_size") && strings.Contains(err.Error(), "expected_batch_size")) {
			t.Errorf("error %q does not name the fields", err)
		}
	}
}

// TestUpdateGroups: with the prompt as the privacy unit, Update refuses a
// group that is not one prompt's N samples (the loss's group_size).
func TestUpdateGroups(t *testing.T) {
	tr, err := offlineTrainer(t, Config{Prompts: []Prompt{{Text: "a"}}, Sampling: SamplingParams{N: 2}})
	if err != nil {
		t.Fatal(err)
	}
	g := [][]Trajectory{{{PromptTokens: []int{1}, Tokens: []int{2}, LogProbs: []float64{-1}, Reward: 1}}}
	if _, err := tr.Update(t.Context(), g); err == nil || !strings.Contains(err.Error(), "group 0 has 1 trajectories") {
		t.Errorf("a group of 1 with N = 2: %v", err)
	}
}
