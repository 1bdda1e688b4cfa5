package rlvr

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
)

func groupsOf(rewards ...[]float64) [][]Trajectory {
	out := make([][]Trajectory, len(rewards))
	for i, rs := range rewards {
		for _, r := range rs {
			out[i] = append(out[i], Trajectory{Prompt: i, Reward: r})
		}
	}
	return out
}

func advs(g [][]Trajectory) []float64 {
	var out []float64
	for _, x := range g {
		for _, t := range x {
			out = append(out, t.Advantage)
		}
	}
	return out
}

func near(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(a[i]-b[i]) > 1e-9 {
			return false
		}
	}
	return true
}

// TestAdvantages checks each baseline against hand-computed values.
func TestAdvantages(t *testing.T) {
	// Moving average: the first batch initialises the baseline to its mean
	// (2.5), then the baseline moves by decay 0.5 towards each new mean.
	mb := &MovingBaseline{}
	g := groupsOf([]float64{1, 2}, []float64{3, 4})
	if err := Advantages(g, AdvantageConfig{Decay: 0.5}, mb); err != nil {
		t.Fatal(err)
	}
	if got := advs(g); !near(got, []float64{-1.5, -0.5, 0.5, 1.5}) || mb.Value != 2.5 || !mb.Set {
		t.Fatalf("first batch: %v, baseline %+v", got, mb)
	}
	g = groupsOf([]float64{4.5, 6.5})
	if err := Advantages(g, AdvantageConfig{Decay: 0.5}, mb); err != nil {
		t.Fatal(err)
	}
	if got := advs(g); !near(got, []float64{2, 4}) || mb.Value != 4 {
		t.Fatalf("second batch: %v, baseline %+v (want 2.5·0.5 + 5.5·0.5 = 4)", got, mb)
	}
	// Group mean.
	g = groupsOf([]float64{1, 3}, []float64{10, 10, 16})
	if err := Advantages(g, AdvantageConfig{Baseline: BaselineGroupMean}, nil); err != nil {
		t.Fatal(err)
	}
	if got := advs(g); !near(got, []float64{-1, 1, -2, -2, 4}) {
		t.Fatalf("group mean: %v", got)
	}
	// None + normalization: (r − mean)/std with mean 2, std √(2/3).
	g = groupsOf([]float64{1, 2, 3})
	if err := Advantages(g, AdvantageConfig{Baseline: BaselineNone, Normalize: true, Eps: 1e-12}, nil); err != nil {
		t.Fatal(err)
	}
	s := math.Sqrt(2.0 / 3)
	if got := advs(g); !near(got, []float64{-1 / s, 0, 1 / s}) {
		t.Fatalf("normalized: %v", got)
	}
	// GRPO: per group (r − mean)/(std + eps); an all-equal group gives 0.
	g = groupsOf([]float64{0, 1}, []float64{5, 5})
	if err := Advantages(g, AdvantageConfig{GroupNormalize: true, Eps: 1e-12}, nil); err != nil {
		t.Fatal(err)
	}
	if got := advs(g); !near(got, []float64{-1, 1, 0, 0}) {
		t.Fatalf("grpo: %v", got)
	}
	// Errors.
	if err := Advantages(groupsOf([]float64{math.NaN()}), AdvantageConfig{Baseline: BaselineNone}, nil); err == nil {
		t.Error("NaN reward accepted")
	}
	if err := Advantages(groupsOf([]float64{1}), AdvantageConfig{Baseline: "median"}, nil); err == nil {
		t.Error("unknown baseline accepted")
	}
	if err := Advantages(groupsOf([]float64{1}), AdvantageConfig{}, nil); err == nil {
		t.Error("moving average without state accepted")
	}
}

// TestBuildBatch: prompt masked, advantages and sampling log-probabilities
// on the completion tokens, aligned with input_ids.
func TestBuildBatch(t *testing.T) {
	b, err := BuildBatch([]Trajectory{
		{PromptTokens: []int{256, 'h'}, Tokens: []int{'i', 257}, LogProbs: []float64{-0.5, -1.5}, Advantage: 2},
		{PromptTokens: []int{256}, Tokens: []int{'x'}, LogProbs: []float64{-3}, Advantage: -1},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(b.InputIDs[0], []int{256, 'h', 'i', 257}) || !slices.Equal(b.Labels[0], []int{-100, -100, 'i', 257}) ||
		!slices.Equal(b.Advantages[0], []float64{0, 0, 2, 2}) || !slices.Equal(b.SamplingLogprobs[0], []float64{0, 0, -0.5, -1.5}) {
		t.Errorf("row 0: %+v", b)
	}
	if !slices.Equal(b.InputIDs[1], []int{256, 'x'}) || !slices.Equal(b.Labels[1], []int{-100, 'x'}) ||
		!slices.Equal(b.Advantages[1], []float64{0, -1}) || !slices.Equal(b.SamplingLogprobs[1], []float64{0, -3}) {
		t.Errorf("row 1: %+v", b)
	}
	for _, bad := range []Trajectory{
		{PromptTokens: nil, Tokens: []int{1}, LogProbs: []float64{0}},
		{PromptTokens: []int{1}, Tokens: nil},
		{PromptTokens: []int{1}, Tokens: []int{1, 2}, LogProbs: []float64{0}},
	} {
		if _, err := BuildBatch([]Trajectory{bad}); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// TestParseState: the state written into checkpoint metadata reads back;
// malformed states are refused.
func TestParseState(t *testing.T) {
	s := State{Format: StateFormat, Algorithm: PPO, Step: 3, Baseline: MovingBaseline{Value: 0.25, Set: true},
		RNG: []byte{1, 2, 3}, RewardHistory: []float64{0.1, 0.2, 0.3}}
	meta, err := s.metadata()
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseState(meta)
	if err != nil {
		t.Fatal(err)
	}
	if gj, _ := json.Marshal(got); string(gj) != string(mustMarshal(s)) {
		t.Errorf("round trip: %s", gj)
	}
	for _, c := range []struct{ meta, want string }{
		{``, "no rlvr"},
		{`{"other": 1}`, "no rlvr"},
		{`[1]`, "metadata"},
		{`{"rlvr": {"format": "tensafe-rlvr-state/v9"}}`, "format"},
		{`{"rlvr": {"format": "tensafe-rlvr-state/v1", "step": -1}}`, "negative"},
		{`{"rlvr": {"format": "tensafe-rlvr-state/v1", "step": "x"}}`, "state"},
	} {
		if _, err := parseState(json.RawMessage(c.meta)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.meta, err, c.want)
		}
	}
}

func mustMarshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
