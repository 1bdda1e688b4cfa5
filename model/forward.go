package model

import (
	"fmt"
	"math"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX graph code reads best with its ops unqualified.
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// Base binds the base parameter nodes of one graph by name.
type Base map[string]*Node

// BindBase maps graph input nodes, in ParamNames order, to their names.
func (m *Model) BindBase(nodes []*Node) Base {
	b := make(Base, len(m.names))
	for i, n := range m.names {
		b[n] = nodes[i]
	}
	return b
}

// Adapter supplies the LoRA delta of one projection, or nil where the
// projection has no adapter. layer is the decoder layer, module the
// projection ("q_proj", …, "down_proj"), x its input [B, T, in].
type Adapter func(layer int, module string, x *Node) *Node

// Cache is the attention key/value cache of one forward chunk: per layer,
// keys and values [B, KVHeads, MaxLen, HeadDim]. Pos is the scalar (int32)
// position of the chunk's first token.
type Cache struct {
	Keys, Values []*Node
	Pos          *Node
}

// Inputs of a forward pass.
type Inputs struct {
	IDs *Node // [B, T] int32 token ids
	// KeyMask [B, Tk] float32: 1 for real tokens, 0 for padding; Tk is T
	// without a cache and MaxLen with one. May be nil (no padding).
	KeyMask *Node
	// Cos and Sin [T, HeadDim/2] float32: rotary tables for the chunk's
	// positions (see RotaryTables).
	Cos, Sin *Node
	Cache    *Cache // nil: no cache, positions 0..T-1
}

// Forward computes the last hidden state [B, T, Hidden] (after the final
// norm). With a cache it writes the chunk's keys and values into it (the
// Cache's slices are replaced by the updated nodes).
func (m *Model) Forward(base Base, lora Adapter, in Inputs) *Node {
	c := m.Config
	x := embed(base["model.embed_tokens.weight"], in.IDs)
	for i := 0; i < c.Layers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		h := rmsNorm(x, base[p+"input_layernorm.weight"], c.RMSNormEps)
		x = Add(x, m.attention(base, lora, i, p, h, in))
		h = rmsNorm(x, base[p+"post_attention_layernorm.weight"], c.RMSNormEps)
		gate := project(base, lora, i, p+"mlp.", "gate_proj", h)
		up := project(base, lora, i, p+"mlp.", "up_proj", h)
		act := Mul(Mul(gate, Logistic(gate)), up) // SwiGLU: silu(gate) * up
		x = Add(x, project(base, lora, i, p+"mlp.", "down_proj", act))
	}
	return rmsNorm(x, base["model.norm.weight"], c.RMSNormEps)
}

// Logits projects hidden states [B, T, Hidden] to [B, T, Vocab].
func (m *Model) Logits(base Base, hidden *Node) *Node {
	w := base["lm_head.weight"]
	if m.Config.TieEmbeddings {
		w = base["model.embed_tokens.weight"]
	}
	return Einsum("bth,vh->btv", hidden, w)
}

func embed(table, ids *Node) *Node {
	// Gather rows: indices [B, T, 1] → [B, T, Hidden].
	return Gather(table, InsertAxes(ids, -1))
}

func rmsNorm(x, w *Node, eps float64) *Node {
	variance := ReduceAndKeep(Square(x), ReduceMean, -1)
	// Div(x, Sqrt(..)) rather than Rsqrt: v0.26.0 has no gradient for Rsqrt.
	normed := Div(x, Sqrt(AddScalar(variance, eps)))
	return Mul(normed, ExpandLeftToRank(w, x.Rank()))
}

// project applies the HF linear layer prefix+module (weight [out, in],
// optional bias) to x [B, T, in], plus its LoRA delta.
func project(base Base, lora Adapter, layer int, prefix, module string, x *Node) *Node {
	y := Einsum("bti,oi->bto", x, base[prefix+module+".weight"])
	if b, ok := base[prefix+module+".bias"]; ok {
		y = Add(y, ExpandLeftToRank(b, 3))
	}
	if lora != nil {
		if d := lora(layer, module, x); d != nil {
			y = Add(y, d)
		}
	}
	return y
}

func (m *Model) attention(base Base, lora Adapter, layer int, p string, h *Node, in Inputs) *Node {
	c := m.Config
	dims := h.Shape().Dimensions
	B, T := dims[0], dims[1]
	G := c.Heads / c.KVHeads
	q := project(base, lora, layer, p+"self_attn.", "q_proj", h)
	k := project(base, lora, layer, p+"self_attn.", "k_proj", h)
	v := project(base, lora, layer, p+"self_attn.", "v_proj", h)
	q = Reshape(q, B, T, c.KVHeads, G, c.HeadDim)
	k = Reshape(k, B, T, c.KVHeads, c.HeadDim)
	v = Reshape(v, B, T, c.KVHeads, c.HeadDim)
	q = rotary(q, in.Cos, in.Sin)
	k = rotary(k, in.Cos, in.Sin)
	// Keys and values as [B, KV, Tk, D].
	k = TransposeAllAxes(k, 0, 2, 1, 3)
	v = TransposeAllAxes(v, 0, 2, 1, 3)
	g := h.Graph()
	var qPos, kPos *Node // absolute positions of queries [T] and keys [Tk]
	qPos = Iota(g, shapes.Make(qDType, T), 0)
	if in.Cache != nil {
		qPos = Add(qPos, ConvertDType(in.Cache.Pos, qDType))
		k = writeCache(in.Cache.Keys[layer], k, qPos)
		v = writeCache(in.Cache.Values[layer], v, qPos)
		in.Cache.Keys[layer], in.Cache.Values[layer] = k, v
	}
	Tk := k.Shape().Dimensions[2]
	kPos = Iota(g, shapes.Make(qDType, Tk), 0)
	scores := Einsum("bqkgd,bksd->bkgqs", q, k) // [B, KV, G, T, Tk]
	scores = MulScalar(scores, 1/math.Sqrt(float64(c.HeadDim)))
	// Causal mask (key position ≤ query position) and key padding mask.
	allowed := GreaterOrEqual(InsertAxes(qPos, -1), InsertAxes(kPos, 0)) // [T, Tk]
	allowed = BroadcastToDims(Reshape(allowed, 1, 1, 1, T, Tk), B, c.KVHeads, G, T, Tk)
	if in.KeyMask != nil {
		km := GreaterThan(in.KeyMask, ScalarZero(g, in.KeyMask.DType()))
		km = BroadcastToDims(Reshape(km, B, 1, 1, 1, Tk), B, c.KVHeads, G, T, Tk)
		allowed = LogicalAnd(allowed, km)
	}
	scores = Where(allowed, scores, BroadcastToShape(Scalar(g, scores.DType(), -1e30), scores.Shape()))
	probs := Softmax(scores, -1)
	out := Einsum("bkgqs,bksd->bqkgd", probs, v) // [B, T, KV, G, D]
	out = Reshape(out, B, T, c.Heads*c.HeadDim)
	return project(base, lora, layer, p+"self_attn.", "o_proj", out)
}

const qDType = dtypes.Int32

// writeCache writes chunk [B, KV, T, D] into cache [B, KV, MaxLen, D] at the
// absolute positions pos [T]. The pure-Go backend of v0.26.0 lacks
// DynamicUpdateSlice, so the write is a contraction with a one-hot
// placement matrix and a select.
func writeCache(cache, chunk, pos *Node) *Node {
	g := cache.Graph()
	maxLen := cache.Shape().Dimensions[2]
	T := pos.Shape().Dimensions[0]
	slots := Iota(g, shapes.Make(qDType, T, maxLen), 1)
	place := Equal(slots, BroadcastToDims(InsertAxes(pos, -1), T, maxLen)) // [T, MaxLen]
	placeF := ConvertDType(place, chunk.DType())
	placed := Einsum("bktd,ts->bksd", chunk, placeF)
	written := ReduceSum(placeF, 0) // [MaxLen]: 1 where the chunk writes
	keep := OneMinus(written)
	dims := cache.Shape().Dimensions
	keep = BroadcastToDims(Reshape(keep, 1, 1, maxLen, 1), dims...)
	return Add(Mul(cache, keep), placed)
}

// rotary applies HF's rotate-half rotary embedding to x [B, T, ..., D] with
// tables cos, sin [T, D/2]. rotate_half is written as a contraction with a
// fixed 2×2 matrix rather than slices: in v0.26.0 the gradient of Slice
// needs Pad, which the pure-Go backend lacks.
func rotary(x, cos, sin *Node) *Node {
	dims := x.Shape().Dimensions
	D := dims[len(dims)-1]
	T := dims[1]
	g := x.Graph()
	// Tables to [1, T, 1..., D] with the halves repeated, as HF's cat(freqs, freqs).
	full := func(t *Node) *Node {
		t = Concatenate([]*Node{t, t}, -1) // [T, D]
		shape := make([]int, len(dims))
		for i := range shape {
			shape[i] = 1
		}
		shape[1], shape[len(dims)-1] = T, D
		return BroadcastToDims(Reshape(t, shape...), dims...)
	}
	split := append(append([]int{}, dims[:len(dims)-1]...), 2, D/2)
	xs := Reshape(x, split...)
	// rotate_half(x) = cat(-x2, x1): [h0, h1] → [-h1, h0].
	rot := Const(g, [][]float32{{0, -1}, {1, 0}})
	rot = ConvertDType(rot, x.DType())
	prefix := "abcefgij"[:len(dims)-1]
	rh := Einsum(prefix+"hd,oh->"+prefix+"od", xs, rot)
	rh = Reshape(rh, dims...)
	return Add(Mul(x, full(cos)), Mul(rh, full(sin)))
}

// RotaryTables computes cos and sin [T, D/2] for positions start..start+T-1.
func (m *Model) RotaryTables(start, T int) (cos, sin *tensors.Tensor) {
	inv := m.Config.InvFrequencies()
	h := len(inv)
	cv := make([]float32, T*h)
	sv := make([]float32, T*h)
	for t := 0; t < T; t++ {
		for i, f := range inv {
			// transformers computes the angle in float32.
			a := float64(float32(float64(start+t)) * float32(f))
			cv[t*h+i] = float32(math.Cos(a))
			sv[t*h+i] = float32(math.Sin(a))
		}
	}
	return tensors.FromFlatDataAndDimensions(cv, T, h), tensors.FromFlatDataAndDimensions(sv, T, h)
}
