package engine

import (
	"bytes"
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/tensafe/tensafe/loss"
	"github.com/tensafe/tensafe/model"
)

// tinyBatch is a small byte-level dataset for tensafe-tiny: a few phrases
// the model can learn to continue.
func tinyBatch() Batch {
	texts := []string{
		"the cat sat on the mat.",
		"the dog sat on the log.",
		"a cat and a dog sat.",
		"the mat is on the log.",
	}
	var b Batch
	for _, s := range texts {
		ids := []int{256}
		for _, c := range []byte(s) {
			ids = append(ids, int(c))
		}
		ids = append(ids, 257)
		b.InputIDs = append(b.InputIDs, ids)
		b.Labels = append(b.Labels, ids)
	}
	return b
}

func tinyEngine(t testing.TB, dp bool) *Engine {
	t.Helper()
	opt := DefaultOptimizer()
	opt.LR = 5e-3
	opt.WeightDecay = 0
	cfg := Config{
		LoRA:      model.LoRAConfig{Rank: 8, Alpha: 16, TargetModules: model.AllModules},
		Optimizer: opt,
		Seed:      7,
	}
	if dp {
		cfg.DP = DPConfig{Enabled: true, NoiseMultiplier: 0.5, MaxGradNorm: 1.0, ExpectedBatch: 4}
	}
	e, err := New(model.Tiny(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func meanLoss(t testing.TB, e *Engine, b Batch) float64 {
	t.Helper()
	r, err := e.Forward(context.Background(), b, loss.Spec{}, true)
	if err != nil {
		t.Fatal(err)
	}
	per := r.PerExampleLoss
	var s float64
	for _, v := range per {
		s += v
	}
	return s / float64(len(per))
}

// TestTrainingLowersLoss trains tensafe-tiny with and without DP and checks
// that the training loss falls.
func TestTrainingLowersLoss(t *testing.T) {
	for _, dp := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "dp"}[dp]
		t.Run(name, func(t *testing.T) {
			e := tinyEngine(t, dp)
			b := tinyBatch()
			before := meanLoss(t, e, b)
			for i := 0; i < 30; i++ {
				if _, err := e.ForwardBackward(context.Background(), b, loss.Spec{}); err != nil {
					t.Fatal(err)
				}
				if _, err := e.OptimStep(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			after := meanLoss(t, e, b)
			t.Logf("%s: loss %.4f → %.4f", name, before, after)
			if !(after < before-0.5) {
				t.Errorf("loss did not fall clearly: %.4f → %.4f", before, after)
			}
		})
	}
}

// TestNoiseStatistics checks that the DP noise has mean 0 and standard
// deviation σ·C. With n = 10⁶ draws the sample mean has standard error
// std/1000 and the sample standard deviation std/√(2n) ≈ std/1414; the
// tolerances (5 standard errors) fail by chance with probability < 10⁻⁶.
func TestNoiseStatistics(t *testing.T) {
	const n = 1_000_000
	const std = 1.3 * 0.7
	vals := [][]float32{make([]float32, n)}
	if err := addGaussianNoise(vals, std); err != nil {
		t.Fatal(err)
	}
	var sum, sq float64
	for _, v := range vals[0] {
		sum += float64(v)
	}
	mean := sum / n
	for _, v := range vals[0] {
		d := float64(v) - mean
		sq += d * d
	}
	sd := math.Sqrt(sq / (n - 1))
	if math.Abs(mean) > 5*std/math.Sqrt(n) {
		t.Errorf("mean %.5g, want 0 ± %.3g", mean, 5*std/math.Sqrt(n))
	}
	if math.Abs(sd-std) > 5*std/math.Sqrt(2*n) {
		t.Errorf("std %.5g, want %.5g ± %.3g", sd, std, 5*std/math.Sqrt(2*n))
	}
	// Two draws never repeat: the generator is keyed afresh every time.
	other := [][]float32{make([]float32, 8)}
	again := [][]float32{make([]float32, 8)}
	_ = addGaussianNoise(other, std)
	_ = addGaussianNoise(again, std)
	if other[0][0] == again[0][0] && other[0][1] == again[0][1] {
		t.Error("two noise draws are identical")
	}
}

// TestOptimStepAddsNoise checks noise reaches the update: two engines with
// identical state and gradients diverge under DP, and agree without it.
func TestOptimStepAddsNoise(t *testing.T) {
	for _, dp := range []bool{false, true} {
		a, b := tinyEngine(t, dp), tinyEngine(t, dp)
		for _, e := range []*Engine{a, b} {
			if _, err := e.ForwardBackward(context.Background(), tinyBatch(), loss.Spec{}); err != nil {
				t.Fatal(err)
			}
			if _, err := e.OptimStep(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		// AdamW's first update is ±lr per coordinate (the sign of the
		// gradient), so compare every coordinate: noise flips some signs.
		same := true
		for _, n := range a.lora.Names {
			for j := range a.lora.Values[n] {
				same = same && a.lora.Values[n][j] == b.lora.Values[n][j]
			}
		}
		if dp == same {
			t.Errorf("dp=%v: engines agree=%v after one step", dp, same)
		}
	}
}

func TestKVCacheMatchesNoCache(t *testing.T) {
	e := tinyEngine(t, false)
	// Train a little so generation is not trivial.
	for i := 0; i < 10; i++ {
		if _, err := e.ForwardBackward(context.Background(), tinyBatch(), loss.Spec{}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.OptimStep(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	prompt := tinyBatch().InputIDs[0][:6]
	req := SampleRequest{Prompt: prompt, MaxTokens: 40, N: 2}
	cached, err := e.Sample(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.NoCache = true
	full, err := e.Sample(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range cached {
		if len(cached[i].Tokens) != len(full[i].Tokens) {
			t.Fatalf("sample %d: %d tokens with cache, %d without", i, len(cached[i].Tokens), len(full[i].Tokens))
		}
		for j := range cached[i].Tokens {
			if cached[i].Tokens[j] != full[i].Tokens[j] {
				t.Fatalf("sample %d token %d: %d with cache, %d without", i, j, cached[i].Tokens[j], full[i].Tokens[j])
			}
			if math.Abs(cached[i].LogProbs[j]-full[i].LogProbs[j]) > 1e-4 {
				t.Errorf("sample %d token %d: logprob %v vs %v", i, j, cached[i].LogProbs[j], full[i].LogProbs[j])
			}
		}
	}
}

func TestSampleSeedAndStop(t *testing.T) {
	e := tinyEngine(t, false)
	req := SampleRequest{Prompt: []int{256, 't', 'h'}, MaxTokens: 12, Temperature: 1, TopK: 50, TopP: 0.9, N: 3, Seed: 42}
	a, err := e.Sample(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.Sample(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range a {
		if len(a[i].Tokens) != len(b[i].Tokens) || a[i].FinishReason != "length" && a[i].FinishReason != "stop" {
			t.Fatalf("sample %d differs or has a bad finish reason: %+v vs %+v", i, a[i], b[i])
		}
		for j := range a[i].Tokens {
			if a[i].Tokens[j] != b[i].Tokens[j] {
				t.Fatalf("same seed, different samples")
			}
		}
	}
	// A stop token ends the sequence with finish_reason "stop".
	first := a[0].Tokens[0]
	req.StopTokens = []int{first}
	req.N = 1
	c, err := e.Sample(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c[0].FinishReason != "stop" || len(c[0].Tokens) != 1 {
		t.Errorf("stop token: %+v", c[0])
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	e := tinyEngine(t, true)
	good := tinyBatch()
	cases := map[string]Batch{
		"empty":          {},
		"empty row":      {InputIDs: [][]int{{}}, Labels: [][]int{{}}},
		"out of vocab":   {InputIDs: [][]int{{1, 2, 9999}}, Labels: [][]int{{1, 2, 3}}},
		"negative id":    {InputIDs: [][]int{{1, -2}}, Labels: [][]int{{1, 2}}},
		"label mismatch": {InputIDs: [][]int{{1, 2, 3}}, Labels: [][]int{{1, 2}}},
		"rows mismatch":  {InputIDs: [][]int{{1, 2}}, Labels: [][]int{{1, 2}, {1, 2}}},
		"holey mask":     {InputIDs: [][]int{{1, 2, 3}}, Labels: [][]int{{1, 2, 3}}, AttentionMask: [][]int{{1, 0, 1}}},
		"bad label":      {InputIDs: [][]int{{1, 2, 3}}, Labels: [][]int{{1, 2, 600}}},
		"no labels":      {InputIDs: [][]int{{1, 2, 3}}},
		"too long":       {InputIDs: [][]int{make([]int, 600)}, Labels: [][]int{make([]int, 600)}},
	}
	for name, b := range cases {
		_, err := e.ForwardBackward(context.Background(), b, loss.Spec{})
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if !strings.Contains(err.Error(), "batch") {
			t.Errorf("%s: error %q does not name the batch field", name, err)
		}
	}
	if e.PendingExamples() != 0 {
		t.Fatal("a rejected batch was accumulated")
	}
	if _, err := e.ForwardBackward(context.Background(), good, loss.Spec{Type: "nope"}); err == nil {
		t.Error("unknown loss accepted")
	}
	if _, err := e.ForwardBackward(context.Background(), good, loss.Spec{Kwargs: map[string]any{"smoothing": 0.1}}); err == nil || !strings.Contains(err.Error(), "smoothing") {
		t.Errorf("unknown kwarg: %v", err)
	}
	if _, err := tinyEngine(t, false).OptimStep(context.Background()); err != ErrNoGradients {
		t.Errorf("OptimStep without DP with nothing accumulated: %v", err)
	}
	// Under DP an empty step is a noise-only release (empty Poisson batch).
	res, err := e.OptimStep(context.Background())
	if err != nil || res.Examples != 0 || res.NoiseStd == 0 {
		t.Errorf("DP OptimStep with nothing accumulated: %+v, %v", res, err)
	}
}

// TestStateRoundTrip: save, load into a new engine, save again: the bytes
// are identical, and both engines continue identically (without DP noise).
func TestStateRoundTrip(t *testing.T) {
	a := tinyEngine(t, false)
	for i := 0; i < 3; i++ {
		if _, err := a.ForwardBackward(context.Background(), tinyBatch(), loss.Spec{}); err != nil {
			t.Fatal(err)
		}
		if i < 2 {
			if _, err := a.OptimStep(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	var buf bytes.Buffer
	if err := a.Save(&buf); err != ErrPendingGradients {
		t.Fatalf("save with pending gradients: %v", err)
	}
	if _, err := a.OptimStep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := a.Save(&buf); err != nil {
		t.Fatal(err)
	}
	b, err := New(model.Tiny(), Config{LoRA: model.LoRAConfig{Rank: 2, Alpha: 2}, Optimizer: DefaultOptimizer(), Seed: 99})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Load(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	if err := b.Save(&again); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Fatal("state round trip is not byte-exact")
	}
	if b.Step() != 3 {
		t.Fatalf("step = %d", b.Step())
	}
	for _, e := range []*Engine{a, b} {
		if _, err := e.ForwardBackward(context.Background(), tinyBatch(), loss.Spec{}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.OptimStep(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	n := a.lora.Names[3]
	for j := range a.lora.Values[n] {
		if a.lora.Values[n][j] != b.lora.Values[n][j] {
			t.Fatal("engines diverged after loading the same state")
		}
	}
	// Corrupt state is rejected and leaves the engine as it was.
	bad := bytes.Clone(buf.Bytes())
	bad[len(bad)/2] ^= 0xff
	before := b.Step()
	_ = b.Load(bytes.NewReader(bad[:len(bad)-3]))
	if b.Step() != before {
		t.Fatal("failed load changed the engine")
	}
}

// TestNoDeadlock guards against GoMLX v0.26.0's pure-Go backend deadlock on
// small machines (all workers in WaitToStart): a DP step on tensafe-tiny
// must finish; if the trap returns this test hangs and fails on its timer.
func TestNoDeadlock(t *testing.T) {
	done := make(chan error, 1)
	go func() {
		e := tinyEngine(t, true)
		_, err := e.ForwardBackward(context.Background(), tinyBatch(), loss.Spec{})
		if err == nil {
			_, err = e.OptimStep(context.Background())
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("a DP step did not finish in 2 minutes: backend deadlock?")
	}
}

// TestLoRADropout: with dropout the training loss varies between calls
// (fresh masks) while evaluation stays deterministic and dropout-free.
func TestLoRADropout(t *testing.T) {
	cfg := Config{LoRA: model.LoRAConfig{Rank: 4, Alpha: 8, Dropout: 0.5}, Optimizer: DefaultOptimizer(), Seed: 3}
	e, err := New(model.Tiny(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Make B non-zero so that the adapter (and its dropout) matters.
	for _, n := range e.lora.Names {
		for j := range e.lora.Values[n] {
			e.lora.Values[n][j] = 0.05
		}
	}
	b := tinyBatch()
	r1, err := e.ForwardBackward(context.Background(), b, loss.Spec{})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := e.ForwardBackward(context.Background(), b, loss.Spec{})
	if err != nil {
		t.Fatal(err)
	}
	if r1.Loss == r2.Loss {
		t.Error("two training passes with dropout gave the same loss")
	}
	if meanLoss(t, e, b) != meanLoss(t, e, b) {
		t.Error("evaluation is not deterministic")
	}
	if _, err := New(model.Tiny(), Config{LoRA: model.LoRAConfig{Rank: 4, Alpha: 8, Dropout: 1}, Optimizer: DefaultOptimizer()}); err == nil {
		t.Error("dropout 1 accepted")
	}
}
