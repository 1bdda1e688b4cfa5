package engine

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tensafe/tensafe/loss"
	"github.com/tensafe/tensafe/model"
	"github.com/tensafe/tensafe/safetensors"
)

func fixture(parts ...string) string {
	return filepath.Join(append([]string{"..", "testdata", "fixtures"}, parts...)...)
}

type goldenGrads struct {
	InputIDs [][]int   `json:"input_ids"`
	Labels   [][]int   `json:"labels"`
	Norms    []float64 `json:"per_example_grad_norms"`
	ClipNorm float64   `json:"clip_norm"`
}

func loadGolden(t *testing.T) (*Engine, goldenGrads, *safetensors.File) {
	t.Helper()
	m, err := model.Load(fixture("tiny-llama"))
	if err != nil {
		t.Fatal(err)
	}
	lora, err := model.LoadPEFT(fixture("tiny-llama-lora"), m.Config)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(fixture("tiny-llama-lora", "golden_grads.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g goldenGrads
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	st, err := safetensors.ReadFile(fixture("tiny-llama-lora", "golden_grads.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		DP:        DPConfig{Enabled: true, NoiseMultiplier: 1, MaxGradNorm: g.ClipNorm, ExpectedBatch: 4},
		Optimizer: DefaultOptimizer(),
	}
	e, err := NewWithAdapter(m, cfg, lora)
	if err != nil {
		t.Fatal(err)
	}
	return e, g, st
}

// inMemoryName maps PEFT's saved name to its in-memory name (with the
// adapter name "default"), as the golden file uses.
func inMemoryName(saved string) string {
	return strings.Replace(saved, ".weight", ".default.weight", 1)
}

func relErr(got, want []float32) float64 {
	var num, den float64
	for i := range want {
		d := float64(got[i] - want[i])
		num += d * d
		den += float64(want[i]) * float64(want[i])
	}
	return math.Sqrt(num) / math.Max(math.Sqrt(den), 1e-30)
}

// TestGoldenPerExampleGradients checks per-example gradients, their flat
// norms and the clipped sum against PEFT + PyTorch.
func TestGoldenPerExampleGradients(t *testing.T) {
	e, g, st := loadGolden(t)
	batch := Batch{InputIDs: g.InputIDs, Labels: g.Labels}
	grads, _, norms, err := e.PerExampleGradients(context.Background(), batch, loss.Spec{})
	if err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for _, name := range e.lora.Names {
		for i := range g.InputIDs {
			want, err := st.Tensors["example"+itoa(i)+"/"+inMemoryName(name)].Float32()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			r := relErr(grads[name][i], want)
			worst = math.Max(worst, r)
			if r > 1e-4 {
				t.Errorf("example %d %s: relative error %.3g", i, name, r)
			}
		}
	}
	t.Logf("worst per-example relative error %.3g", worst)
	for i, n := range norms {
		if math.Abs(n-g.Norms[i]) > 1e-4*g.Norms[i] {
			t.Errorf("norm %d = %v, want %v", i, n, g.Norms[i])
		}
	}

	// The clipped sum, through the real DP accumulation path.
	res, err := e.ForwardBackward(context.Background(), batch, loss.Spec{Type: "token_ce"})
	if err != nil {
		t.Fatal(err)
	}
	if res.PendingExamples != 4 || len(res.PerExampleNorms) != 4 {
		t.Fatalf("result = %+v", res)
	}
	for i, name := range e.lora.Names {
		want, err := st.Tensors["clipped_sum/"+inMemoryName(name)].Float32()
		if err != nil {
			t.Fatal(err)
		}
		if r := relErr(e.accum[i], want); r > 1e-4 {
			t.Errorf("clipped sum %s: relative error %.3g", name, r)
		}
	}
}

func itoa(i int) string { return string(rune('0' + i)) }
