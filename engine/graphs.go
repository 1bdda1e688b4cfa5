package engine

import (
	"fmt"
	"math"
	"sync"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX graph code reads best with its ops unqualified.
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/tensafe/tensafe/loss"
	"github.com/tensafe/tensafe/model"
)

// maxGraphs bounds the executors one engine keeps. Built-in losses pass
// their numeric kwargs as graph inputs, so they need one executor per kind
// of computation and loss structure; losses registered from Go with
// kwargs baked into the graph may need more, and the least recently used
// executor is released beyond this bound.
const maxGraphs = 32

// graphCache holds one compiled-graph executor per kind of computation (and
// loss structure); each executor compiles once per distinct input shape
// (GoMLX keeps at most DefaultExecMaxCacheSize shapes per executor).
type graphCache struct {
	mu    sync.Mutex
	execs map[string]*cachedExec
	clock uint64
}

type cachedExec struct {
	exec     *Exec
	lastUsed uint64
}

func newGraphCache() *graphCache { return &graphCache{execs: map[string]*cachedExec{}} }

// get returns the executor for key, building it on first use. The engine's
// lock is held, so an evicted executor is not running.
func (c *graphCache) get(key string, build func() (*Exec, error)) (*Exec, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clock++
	if e, ok := c.execs[key]; ok {
		e.lastUsed = c.clock
		return e.exec, nil
	}
	e, err := build()
	if err != nil {
		return nil, err
	}
	if len(c.execs) >= maxGraphs {
		oldest, at := "", uint64(math.MaxUint64)
		for k, v := range c.execs {
			if v.lastUsed < at {
				oldest, at = k, v.lastUsed
			}
		}
		c.execs[oldest].exec.Finalize()
		delete(c.execs, oldest)
	}
	c.execs[key] = &cachedExec{exec: e, lastUsed: c.clock}
	return e, nil
}

// len returns the number of executors held.
func (c *graphCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.execs)
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
	inAdv       // advantages [B, T]
	inSamp      // sampling log-probabilities [B, T]
	inRef       // reference log-probabilities [B, T]
	inLPG       // custom loss gradients d loss/d logp [B, T]
	inExTargets // per-example regression targets [P]
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

// lossBatch binds the loss inputs of a training or forward graph; the
// loss's run-time hyper-parameters are the last inputs, after the LoRA
// weights.
func lossBatch(in []*Node, params []*Node) loss.Batch {
	return loss.Batch{Targets: in[inTargets], Weights: in[inWeights], Mask: in[inMask],
		Advantages: in[inAdv], SamplingLogProbs: in[inSamp], ReferenceLogProbs: in[inRef],
		LogProbGrads: in[inLPG], ExampleTargets: in[inExTargets], Params: params}
}

// splitInputs returns the base weights, the LoRA weights and the loss's
// hyper-parameters of a training or forward graph's inputs.
func splitInputs(in []*Node, nBase, nLoRA int) (base, lora, params []*Node) {
	b := numFixedInputs
	return in[b : b+nBase], in[b+nBase : b+nBase+nLoRA], in[b+nBase+nLoRA:]
}

// applyLoss runs the loss and checks what it returns: per-example losses
// [P] and one scalar per declared metric. A malformed custom loss panics
// here, while the graph is built; run turns that into an error.
func applyLoss(l loss.Loss, out loss.Outputs, in, params []*Node, P int) (perExample *Node, metrics []*Node) {
	r := l.Func(out, lossBatch(in, params))
	if r.PerExample == nil || r.PerExample.Rank() != 1 || r.PerExample.Shape().Dimensions[0] != P {
		panic(fmt.Sprintf("loss returned per-example losses of shape %v, want [%d]", shapeOf(r.PerExample), P))
	}
	perExample = ConvertDType(r.PerExample, out.Logits.DType())
	for _, name := range l.Metrics {
		m, ok := r.Metrics[name]
		if !ok || m == nil {
			panic(fmt.Sprintf("loss declared metric %q but did not return it", name))
		}
		metrics = append(metrics, ConvertDType(StopGradient(ReduceAllMean(m)), out.Logits.DType()))
	}
	return perExample, metrics
}

func shapeOf(n *Node) any {
	if n == nil {
		return "nil"
	}
	return n.Shape()
}

// buildTrain builds the training graph: outputs are the per-example losses
// [P], the loss's metrics (scalars), then for gradClipped the per-example
// norms [P] followed by the clipped sum of each LoRA tensor; for gradPlain
// the summed gradient of each LoRA tensor; for gradPerExample the norms and
// each per-example gradient [P, ...].
//
// An example is l.Group() consecutive rows: P = B/G copies of the LoRA
// weights are made, and copy p is expanded to its G rows, so the gradient
// with respect to copy p is example p's (the whole group's) gradient.
func buildTrain(m *model.Model, lora *model.LoRA, l loss.Loss, mode gradMode, clipNorm float64) func([]*Node) []*Node {
	nBase := len(m.ParamNames())
	return func(in []*Node) []*Node {
		ids := in[inIDs]
		B := ids.Shape().Dimensions[0]
		G := l.Group()
		P := B / G
		baseIn, loraIn, params := splitInputs(in, nBase, len(lora.Names))
		base := m.BindBase(baseIn)
		nodes := make(map[string]*Node, len(lora.Names))
		wrt := make([]*Node, len(lora.Names))
		for i, name := range lora.Names {
			// The broadcast trick: each example gets its own copy of the
			// weights, so d(sum of losses)/d(copy p) is example p's
			// gradient. The plain mode uses it too and sums: on the pure-Go
			// backend the batched contractions are faster than the
			// gradient of a weight shared across the batch.
			w := BroadcastPrefix(loraIn[i], P)
			wrt[i] = w
			if G > 1 {
				dims := w.Shape().Dimensions[1:]
				w = BroadcastToDims(InsertAxes(w, 1), append([]int{P, G}, dims...)...)
				w = Reshape(w, append([]int{B}, dims...)...)
			}
			nodes[name] = w
		}
		hidden := m.Forward(base, lora.Adapter(nodes, true, in[inRNG]), model.Inputs{
			IDs: ids, KeyMask: in[inMask], Cos: in[inCos], Sin: in[inSin],
		})
		logits := m.Logits(base, hidden)
		perExample, metrics := applyLoss(l, loss.Outputs{Logits: logits, Hidden: hidden}, in, params, P)
		grads := Gradient(ReduceAllSum(perExample), wrt...)
		out := append([]*Node{perExample}, metrics...)
		if mode == gradPlain {
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
		norms := Sqrt(sq) // [P]
		out = append(out, norms)
		if mode == gradPerExample {
			return append(out, grads...)
		}
		// Opacus' rule: factor = min(1, C / (norm + 1e-6)).
		factor := MinScalar(Div(Scalar(ids.Graph(), norms.DType(), clipNorm), AddScalar(norms, 1e-6)), 1.0)
		for _, g := range grads {
			f := Reshape(factor, append([]int{P}, onesDims(g.Rank()-1)...)...)
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
// the targets [B, T] and, when l is not nil, the per-example losses [P] and
// the loss's metrics.
func buildForward(m *model.Model, lora *model.LoRA, l *loss.Loss) func([]*Node) []*Node {
	nBase := len(m.ParamNames())
	return func(in []*Node) []*Node {
		baseIn, loraIn, params := splitInputs(in, nBase, len(lora.Names))
		base := m.BindBase(baseIn)
		nodes := bindLoRA(lora, loraIn)
		hidden := m.Forward(base, lora.Adapter(nodes, false, nil), model.Inputs{
			IDs: in[inIDs], KeyMask: in[inMask], Cos: in[inCos], Sin: in[inSin],
		})
		logits := m.Logits(base, hidden)
		b := lossBatch(in, params)
		_, tok := loss.TokenLogProbs(loss.Outputs{Logits: logits}, b)
		tok = Mul(tok, loss.TargetMask(b))
		if l == nil {
			return []*Node{tok}
		}
		B := in[inIDs].Shape().Dimensions[0]
		perExample, metrics := applyLoss(*l, loss.Outputs{Logits: logits, Hidden: hidden}, in, params, B/l.Group())
		return append([]*Node{tok, perExample}, metrics...)
	}
}

func bindLoRA(lora *model.LoRA, in []*Node) map[string]*Node {
	nodes := make(map[string]*Node, len(lora.Names))
	for i, name := range lora.Names {
		nodes[name] = in[i]
	}
	return nodes
}
