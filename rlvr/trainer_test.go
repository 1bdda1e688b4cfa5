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
	if c.Algorithm != REINFORCE || c.Epochs != 1 || c.PromptsPerStep != 2 || c.Sampling.N != 4 || c.Model != "tensafe-tiny" {
		t.Errorf("defaults %+v", c)
	}
	if got, want := tr.lossSpec(), (&api.LossSpec{Type: "importance_sampling", Kwargs: map[string]any{"entropy_coef": 0.01}}); !reflect.DeepEqual(got, want) {
		t.Errorf("reinforce loss %+v", got)
	}
	ref := &client.TrainingClient{ID: "tc_ref"}
	tr, err = offlineTrainer(t, Config{Algorithm: PPO, Prompts: prompts, KLCoef: 0.1, Reference: ref})
	if err != nil {
		t.Fatal(err)
	}
	if tr.Config().Epochs != 4 {
		t.Errorf("ppo epochs %d", tr.Config().Epochs)
	}
	want := &api.LossSpec{Type: "ppo", Kwargs: map[string]any{"clip_low_threshold": 0.8, "clip_high_threshold": 1.2, "kl_coef": 0.1}}
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
