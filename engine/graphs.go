package engine

import (
	"fmt"
	"sync"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX graph code reads best with its ops unqualified.
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/tensafe/tensafe/loss"
	"github.com/tensafe/tensafe/model"
)

// graphCache holds one compiled-graph executor per kind of computation (and
// loss); each executor compiles once per distinct input shape.
type graphCache struct {
	mu    sync.Mutex
	execs map[string]*Exec
}

func newGraphCache() *graphCache { return &graphCache{execs: map[string]*Exec{}} }

func (c *graphCache) get(key string, build func() (*Exec, error)) (*Exec, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.execs[key]; ok {
		return e, nil
	}
	e, err := build()
	if err != nil {
		return nil, err
	}
	c.execs[key] = e
	return e, nil
}

// run executes exec, turning GoMLX panics into errors.
func run(exec *Exec, args []any) (out []*tensors.Tensor, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("engine: graph execution: %v", r)
		}
	}()
	out, err = exec.Exec(args...)
	if err != nil {
		return nil, fmt.Errorf("engine: graph execution: %w", err)
	}
	return out, nil
}

// Fixed leading inputs of the training graphs.
const (
	inIDs = iota
	inMask
	inTargets
	inWeights
	inCos
	inSin
	inRNG // GoMLX RNG state for LoRA dropout
	numFixedInputs
)

// gradMode selects what the training graph differentiates.
type gradMode int

const (
	gradPlain      gradMode = iota // mean-free sum of gradients, no clipping (non-private)
	gradClipped                    // per-example gradients, clipped and summed (DP-SGD)
	gradPerExample                 // per-example gradients themselves (inspection, tests)
)

// buildTrain builds the training graph: outputs are the per-example losses
// [B], then for gradClipped the per-example norms [B] followed by the clipped
// sum of each LoRA tensor; for gradPlain the summed gradient of each LoRA
// tensor; for gradPerExample the norms and each per-example gradient
// [B, ...].
func buildTrain(m *model.Model, lora *model.LoRA, lossFn loss.Func, mode gradMode, clipNorm float64) func([]*Node) []*Node {
	nBase := len(m.ParamNames())
	return func(in []*Node) []*Node {
		ids := in[inIDs]
		B := ids.Shape().Dimensions[0]
		base := m.BindBase(in[numFixedInputs : numFixedInputs+nBase])
		loraIn := in[numFixedInputs+nBase:]
		nodes := make(map[string]*Node, len(lora.Names))
		wrt := make([]*Node, len(lora.Names))
		for i, name := range lora.Names {
			// The broadcast trick: each example gets its own copy of the
			// weights, so d(sum of losses)/d(copy b) is example b's
			// gradient. The plain mode uses it too and sums: on the pure-Go
			// backend the batched contractions are faster than the
			// gradient of a weight shared across the batch.
			w := BroadcastPrefix(loraIn[i], B)
			nodes[name] = w
			wrt[i] = w
		}
		hidden := m.Forward(base, lora.Adapter(nodes, true, in[inRNG]), model.Inputs{
			IDs: ids, KeyMask: in[inMask], Cos: in[inCos], Sin: in[inSin],
		})
		logits := m.Logits(base, hidden)
		perExample := lossFn(loss.Outputs{Logits: logits, Hidden: hidden}, loss.Batch{Targets: in[inTargets], Weights: in[inWeights]})
		grads := Gradient(ReduceAllSum(perExample), wrt...)
		if mode == gradPlain {
			out := []*Node{perExample}
			for _, g := range grads {
				out = append(out, ReduceSum(g, 0))
			}
			return out
		}
		// Flat L2 norm over all trainable tensors, per example.
		var sq *Node
		for _, g := range grads {
			axes := make([]int, g.Rank()-1)
			for i := range axes {
				axes[i] = i + 1
			}
			s := ReduceSum(Square(g), axes...)
			if sq == nil {
				sq = s
			} else {
				sq = Add(sq, s)
			}
		}
		norms := Sqrt(sq) // [B]
		out := []*Node{perExample, norms}
		if mode == gradPerExample {
			return append(out, grads...)
		}
		// Opacus' rule: factor = min(1, C / (norm + 1e-6)).
		factor := MinScalar(Div(Scalar(ids.Graph(), norms.DType(), clipNorm), AddScalar(norms, 1e-6)), 1.0)
		for _, g := range grads {
			f := Reshape(factor, append([]int{B}, onesDims(g.Rank()-1)...)...)
			out = append(out, ReduceSum(Mul(g, f), 0))
		}
		return out
	}
}

func onesDims(n int) []int {
	d := make([]int, n)
	for i := range d {
		d[i] = 1
	}
	return d
}

// buildForward builds the evaluation graph: per-token log-probabilities of
// the targets [B, T] and the per-example losses [B].
func buildForward(m *model.Model, lora *model.LoRA, lossFn loss.Func) func([]*Node) []*Node {
	nBase := len(m.ParamNames())
	return func(in []*Node) []*Node {
		base := m.BindBase(in[numFixedInputs : numFixedInputs+nBase])
		nodes := bindLoRA(lora, in[numFixedInputs+nBase:])
		hidden := m.Forward(base, lora.Adapter(nodes, false, nil), model.Inputs{
			IDs: in[inIDs], KeyMask: in[inMask], Cos: in[inCos], Sin: in[inSin],
		})
		logits := m.Logits(base, hidden)
		logp := LogSoftmax(logits, -1)
		V := logp.Shape().Dimensions[2]
		tok := ReduceSum(Mul(logp, OneHot(in[inTargets], V, logp.DType())), -1)
		tok = Mul(tok, ConvertDType(GreaterThan(in[inWeights], ScalarZero(logp.Graph(), logp.DType())), logp.DType()))
		perExample := lossFn(loss.Outputs{Logits: logits, Hidden: hidden}, loss.Batch{Targets: in[inTargets], Weights: in[inWeights]})
		return []*Node{tok, perExample}
	}
}

func bindLoRA(lora *model.LoRA, in []*Node) map[string]*Node {
	nodes := make(map[string]*Node, len(lora.Names))
	for i, name := range lora.Names {
		nodes[name] = in[i]
	}
	return nodes
}
