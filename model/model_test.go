package model

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/tensafe/tensafe/compute"
)

func fixture(parts ...string) string {
	return filepath.Join(append([]string{"..", "testdata", "fixtures"}, parts...)...)
}

type goldenLogits struct {
	InputIDs        [][]int32     `json:"input_ids"`
	Logits          [][][]float32 `json:"logits"`
	LastHiddenState [][][]float32 `json:"last_hidden_state"`
}

// runForward returns hidden states and logits for ids (no padding).
func runForward(t testing.TB, m *Model, ids [][]int32) (hidden, logits *tensors.Tensor) {
	t.Helper()
	b, err := compute.Backend()
	if err != nil {
		t.Fatal(err)
	}
	T := len(ids[0])
	cos, sin := m.RotaryTables(0, T)
	exec, err := NewExec(b, func(in []*Node) []*Node {
		base := m.BindBase(in[3:])
		h := m.Forward(base, nil, Inputs{IDs: in[0], Cos: in[1], Sin: in[2]})
		return []*Node{h, m.Logits(base, h)}
	})
	if err != nil {
		t.Fatal(err)
	}
	args := []any{tensors.FromValue(ids), cos, sin}
	for _, w := range m.Weights() {
		args = append(args, w)
	}
	out, err := exec.Exec(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out[0], out[1]
}

func TestGoldenLogits(t *testing.T) {
	for _, name := range []string{"tiny-llama", "tiny-llama3-tied"} {
		t.Run(name, func(t *testing.T) {
			m, err := Load(fixture(name))
			if err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(fixture(name, "golden_logits.json"))
			if err != nil {
				t.Fatal(err)
			}
			var g goldenLogits
			if err := json.Unmarshal(data, &g); err != nil {
				t.Fatal(err)
			}
			hidden, logits := runForward(t, m, g.InputIDs)
			compare3(t, "last_hidden_state", hidden, g.LastHiddenState, 1e-4)
			compare3(t, "logits", logits, g.Logits, 1e-4)
		})
	}
}

func compare3(t *testing.T, what string, got *tensors.Tensor, want [][][]float32, tol float64) {
	t.Helper()
	flat := tensors.MustCopyFlatData[float32](got)
	var maxDiff float64
	i := 0
	for _, a := range want {
		for _, b := range a {
			for _, w := range b {
				d := math.Abs(float64(flat[i] - w))
				maxDiff = max(maxDiff, d)
				i++
			}
		}
	}
	if i != len(flat) {
		t.Fatalf("%s: %d values, want %d", what, len(flat), i)
	}
	t.Logf("%s: max abs diff %.3g", what, maxDiff)
	if maxDiff > tol {
		t.Errorf("%s: max abs diff %.3g > %g", what, maxDiff, tol)
	}
}
