package model

import (
	"fmt"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/tensafe/tensafe/compute"
)

// ComputeLogits runs the base model (no adapter) over one unpadded
// sequence and returns its logits [T][Vocab] and last hidden states
// [T][Hidden]: the check a user runs to see that a checkpoint loads right.
func (m *Model) ComputeLogits(ids []int) (logits, hidden [][]float32, err error) {
	T := len(ids)
	if T == 0 {
		return nil, nil, fmt.Errorf("model: logits: input_ids is empty")
	}
	if T > m.Config.MaxPositions {
		return nil, nil, fmt.Errorf("model: logits: %d input_ids exceed the model's %d positions", T, m.Config.MaxPositions)
	}
	ids32 := make([]int32, T)
	for i, id := range ids {
		if id < 0 || id >= m.Config.VocabSize {
			return nil, nil, fmt.Errorf("model: logits: input_ids[%d] = %d is outside the vocabulary [0, %d)", i, id, m.Config.VocabSize)
		}
		ids32[i] = int32(id)
	}
	b, err := compute.Backend()
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("model: logits: %v", r)
		}
	}()
	exec, err := NewExec(b, func(in []*Node) []*Node {
		base := m.BindBase(in[3:])
		h := m.Forward(base, nil, Inputs{IDs: in[0], Cos: in[1], Sin: in[2]})
		return []*Node{m.Logits(base, h), h}
	})
	if err != nil {
		return nil, nil, fmt.Errorf("model: logits: %w", err)
	}
	cos, sin := m.RotaryTables(0, T)
	args := []any{tensors.FromFlatDataAndDimensions(ids32, 1, T), cos, sin}
	for _, w := range m.Weights() {
		args = append(args, w)
	}
	out, err := exec.Exec(args...)
	if err != nil {
		return nil, nil, fmt.Errorf("model: logits: %w", err)
	}
	split := func(t *tensors.Tensor, width int) [][]float32 {
		flat := tensors.MustCopyFlatData[float32](t)
		rows := make([][]float32, T)
		for i := range rows {
			rows[i] = flat[i*width : (i+1)*width]
		}
		return rows
	}
	return split(out[0], m.Config.VocabSize), split(out[1], m.Config.Hidden), nil
}
