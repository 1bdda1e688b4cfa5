package loss

import (
	"fmt"
	"math"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX graph code reads best with its ops unqualified.
)

// builtins are the losses every registry starts with (docs/LOSSES.md).
var builtins = map[string]Factory{
	"token_ce":            newTokenCE,
	"margin_ranking":      newMarginRanking,
	"contrastive":         newContrastive,
	"mse":                 newMSE,
	"importance_sampling": newImportanceSampling,
	"ppo":                 newPPO,
	"dpo":                 newDPO,
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// TokenLogProbs returns log p(v) for the whole vocabulary [B, T, V] and the
// log-probability of each position's target [B, T] (0 where the target is
// 0 and unweighted: callers mask with TargetMask).
func TokenLogProbs(out Outputs, b Batch) (full, target *Node) {
	full = LogSoftmax(out.Logits, -1)
	V := full.Shape().Dimensions[2]
	target = ReduceSum(Mul(full, OneHot(b.Targets, V, full.DType())), -1)
	return full, target
}

// TargetMask is 1 at target positions (weight > 0) and 0 elsewhere.
func TargetMask(b Batch) *Node {
	return ConvertDType(GreaterThan(b.Weights, ZerosLike(b.Weights)), b.Weights.DType())
}

// Entropy returns the entropy of the model's distribution at each position
// [B, T], from the full log-probabilities [B, T, V].
func Entropy(full *Node) *Node {
	return Neg(ReduceSum(Mul(Exp(full), full), -1))
}

// rowSum sums x [B, T] over target positions: [B].
func rowSum(x, mask *Node) *Node { return ReduceSum(Mul(x, mask), -1) }

// tokenMean is the mean of x [B, T] over every target position of the
// batch: a scalar metric.
func tokenMean(x, mask *Node) *Node {
	return Div(ReduceAllSum(Mul(x, mask)), MaxScalar(ReduceAllSum(mask), 1))
}

// groups reshapes per-row values [B] to [B/G, G].
func groups(x *Node, G int) *Node {
	B := x.Shape().Dimensions[0]
	return Reshape(x, B/G, G)
}

// column returns column j of x [P, G] as [P].
func column(x *Node, j int) *Node {
	G := x.Shape().Dimensions[1]
	sel := make([]float64, G)
	sel[j] = 1
	return ReduceSum(Mul(x, ExpandLeftToRank(constLike(sel, x), 2)), -1)
}

// constLike is the constant v in like's dtype.
func constLike(v []float64, like *Node) *Node {
	return ConvertDType(Const(like.Graph(), v), like.DType())
}

// tokenCE is token-level cross-entropy. Each example's loss is the weighted
// mean over its target positions: Σ_t w_t ℓ_t / Σ_t w_t, with
// ℓ_t = (1-ε)·(−log p(target)) + ε·(−mean_v log p(v)) for label smoothing ε
// (PyTorch's definition). With unit weights and ε = 0 this is exactly the
// Hugging Face causal-LM loss of the example alone.
type tokenCE struct {
	LabelSmoothing float64 `json:"label_smoothing"`
	IgnoreIndex    int     `json:"ignore_index"`
}

func newTokenCE(kw map[string]any) (Loss, error) {
	c := tokenCE{IgnoreIndex: IgnoreIndex}
	if err := DecodeKwargs(kw, &c); err != nil {
		return Loss{}, fmt.Errorf("loss: token_ce: %w", err)
	}
	if !(c.LabelSmoothing >= 0 && c.LabelSmoothing < 1) {
		return Loss{}, fmt.Errorf("loss: token_ce: kwargs.label_smoothing must be in [0, 1), got %v", c.LabelSmoothing)
	}
	ignore := c.IgnoreIndex
	return Loss{Func: c.Func, IgnoreLabel: &ignore, Params: []float64{c.LabelSmoothing},
		Key: fmt.Sprintf("token_ce/ignore=%d/smoothing=%t", ignore, c.LabelSmoothing > 0)}, nil
}

// Func is the graph function; Params[0] is the label smoothing ε.
func (c tokenCE) Func(out Outputs, b Batch) Result {
	full, target := TokenLogProbs(out, b)
	tok := Neg(target)
	if c.LabelSmoothing > 0 { // in the graph only when used: it costs a pass over the vocabulary
		eps := b.Param(0, target)
		smooth := Neg(ReduceMean(full, -1))
		tok = Add(Mul(tok, OneMinus(eps)), Mul(smooth, eps))
	}
	num := ReduceSum(Mul(tok, b.Weights), -1)
	den := MaxScalar(ReduceSum(b.Weights, -1), 1e-12)
	return Result{PerExample: Div(num, den)}
}

// marginRanking scores each row by its sequence log-probability
// s = Σ_t logp_t (or the mean over target tokens) and ranks the chosen row
// of a pair (row 2i) above the rejected one (row 2i+1):
// loss = max(0, margin − (s_chosen − s_rejected)).
type marginRanking struct {
	Margin    float64 `json:"margin"`
	Normalize string  `json:"normalize"`
}

func newMarginRanking(kw map[string]any) (Loss, error) {
	c := marginRanking{Margin: 1, Normalize: "sum"}
	if err := DecodeKwargs(kw, &c); err != nil {
		return Loss{}, fmt.Errorf("loss: margin_ranking: %w", err)
	}
	if !finite(c.Margin) {
		return Loss{}, fmt.Errorf("loss: margin_ranking: kwargs.margin must be finite")
	}
	if c.Normalize != "sum" && c.Normalize != "mean" {
		return Loss{}, fmt.Errorf("loss: margin_ranking: kwargs.normalize must be \"sum\" or \"mean\", got %q", c.Normalize)
	}
	return Loss{Func: c.Func, GroupSize: 2, Metrics: []string{"accuracy"}, Params: []float64{c.Margin},
		Key: "margin_ranking/" + c.Normalize}, nil
}

// Func is the graph function; Params[0] is the margin.
func (c marginRanking) Func(out Outputs, b Batch) Result {
	_, target := TokenLogProbs(out, b)
	mask := TargetMask(b)
	s := rowSum(target, mask)
	if c.Normalize == "mean" {
		s = Div(s, MaxScalar(ReduceSum(mask, -1), 1))
	}
	pair := groups(s, 2)
	diff := Sub(column(pair, 0), column(pair, 1))
	lossPer := MaxScalar(Sub(b.Param(0, diff), diff), 0)
	acc := ReduceAllMean(ConvertDType(GreaterThan(diff, ZerosLike(diff)), diff.DType()))
	return Result{PerExample: lossPer, Metrics: map[string]*Node{"accuracy": acc}}
}

// contrastive is InfoNCE inside each group of GroupSize rows (anchor,
// positive, negatives…) over the mean-pooled final hidden states of the real
// tokens, with cosine similarity divided by the temperature:
// loss = −log softmax_j(cos(a, x_j)/τ)[positive] for j over the group's
// other rows.
type contrastive struct {
	Temperature float64 `json:"temperature"`
	GroupSize   int     `json:"group_size"`
}

func newContrastive(kw map[string]any) (Loss, error) {
	c := contrastive{Temperature: 0.05, GroupSize: 3}
	if err := DecodeKwargs(kw, &c); err != nil {
		return Loss{}, fmt.Errorf("loss: contrastive: %w", err)
	}
	if !(c.Temperature > 0) || !finite(c.Temperature) {
		return Loss{}, fmt.Errorf("loss: contrastive: kwargs.temperature must be positive and finite, got %v", c.Temperature)
	}
	if c.GroupSize < 3 || c.GroupSize > 64 {
		return Loss{}, fmt.Errorf("loss: contrastive: kwargs.group_size must be in [3, 64] (anchor, positive, at least one negative), got %d", c.GroupSize)
	}
	return Loss{Func: c.Func, GroupSize: c.GroupSize, Metrics: []string{"accuracy"}, Params: []float64{c.Temperature},
		Key: fmt.Sprintf("contrastive/%d", c.GroupSize)}, nil
}

// meanPool averages hidden [B, T, H] over the real tokens of each row: [B, H].
func meanPool(hidden, mask *Node) *Node {
	m := InsertAxes(mask, -1) // [B, T, 1]
	sum := ReduceSum(Mul(hidden, m), 1)
	return Div(sum, MaxScalar(ReduceSum(m, 1), 1))
}

// Func is the graph function; Params[0] is the temperature.
func (c contrastive) Func(out Outputs, b Batch) Result {
	pooled := meanPool(out.Hidden, b.Mask) // [B, H]
	dims := pooled.Shape().Dimensions
	B, H, G := dims[0], dims[1], c.GroupSize
	P := B / G
	// Unit vectors; Div(x, Sqrt(..)) because Rsqrt has no gradient.
	unit := Div(pooled, Sqrt(AddScalar(ReduceAndKeep(Square(pooled), ReduceSum, -1), 1e-12)))
	grp := Reshape(unit, P, G, H)
	anchor := InsertAxes(column3(grp, 0), 1) // [P, 1, H]
	sims := ReduceSum(Mul(grp, anchor), -1)  // [P, G]; column 0 is the anchor itself
	logits := Div(sims, b.Param(0, sims))    // [P, G]
	others := ConvertDType(GreaterThan(Iota(grp.Graph(), logits.Shape(), 1), ZerosLike(Iota(grp.Graph(), logits.Shape(), 1))), logits.DType())
	// Push the anchor's own column out of the softmax.
	masked := Add(Mul(logits, others), MulScalar(OneMinus(others), -1e9))
	logp := LogSoftmax(masked, -1)
	lossPer := Neg(column(logp, 1))
	best := ReduceMax(masked, -1)
	acc := ReduceAllMean(ConvertDType(GreaterOrEqual(column(masked, 1), best), logits.DType()))
	return Result{PerExample: lossPer, Metrics: map[string]*Node{"accuracy": acc}}
}

// column3 returns x[:, j, :] of x [P, G, H] as [P, H].
func column3(x *Node, j int) *Node {
	G := x.Shape().Dimensions[1]
	sel := make([]float64, G)
	sel[j] = 1
	w := Reshape(constLike(sel, x), 1, G, 1)
	return ReduceSum(Mul(x, w), 1)
}

// mse regresses a scalar head on each example's target: the head's value is
// the logit of HeadToken at the pooled final hidden state (mean over real
// tokens, or the last real token), that is the LM head's row of HeadToken
// dotted with the pooled state, so only LoRA weights train.
// loss = (value − target)².
type mse struct {
	HeadToken *int   `json:"head_token"`
	Pooling   string `json:"pooling"`
}

func newMSE(kw map[string]any) (Loss, error) {
	c := mse{Pooling: "mean"}
	if err := DecodeKwargs(kw, &c); err != nil {
		return Loss{}, fmt.Errorf("loss: mse: %w", err)
	}
	if c.HeadToken == nil {
		return Loss{}, fmt.Errorf("loss: mse: kwargs.head_token is required (the token whose LM-head row is the scalar head)")
	}
	if *c.HeadToken < 0 {
		return Loss{}, fmt.Errorf("loss: mse: kwargs.head_token must be a token id ≥ 0, got %d", *c.HeadToken)
	}
	if c.Pooling != "mean" && c.Pooling != "last" {
		return Loss{}, fmt.Errorf("loss: mse: kwargs.pooling must be \"mean\" or \"last\", got %q", c.Pooling)
	}
	return Loss{Func: c.Func, Needs: []Field{FieldTargets}, TokenIDs: map[string]int{"head_token": *c.HeadToken},
		Metrics: []string{"prediction_mean"}}, nil
}

// Func is the graph function. By linearity of the (bias-free) LM head, the
// logit at the pooled state equals the pooled logits, which is how it is
// computed.
func (c mse) Func(out Outputs, b Batch) Result {
	V := out.Logits.Shape().Dimensions[2]
	sel := make([]float64, V)
	sel[*c.HeadToken] = 1
	head := ReduceSum(Mul(out.Logits, ExpandLeftToRank(constLike(sel, out.Logits), 3)), -1) // [B, T]
	var pool *Node
	if c.Pooling == "mean" {
		pool = Div(b.Mask, MaxScalar(ReduceAndKeep(b.Mask, ReduceSum, -1), 1))
	} else {
		pos := ConvertDType(Iota(b.Mask.Graph(), b.Mask.Shape(), 1), b.Mask.DType())
		last := AddScalar(ReduceAndKeep(b.Mask, ReduceSum, -1), -1)
		pool = ConvertDType(Equal(pos, last), b.Mask.DType())
	}
	value := ReduceSum(Mul(head, pool), -1)
	target := ConvertDType(b.ExampleTargets, value.DType())
	return Result{PerExample: Square(Sub(value, target)), Metrics: map[string]*Node{"prediction_mean": ReduceAllMean(value)}}
}

// MaxRLGroupSize bounds the group_size kwarg of importance_sampling and
// ppo: the rows of one example (one prompt's completions).
const MaxRLGroupSize = 1024

// checkRLGroup validates the group_size kwarg of a policy-gradient loss.
func checkRLGroup(name string, g int) error {
	if g < 1 || g > MaxRLGroupSize {
		return fmt.Errorf("loss: %s: kwargs.group_size must be in [1, %d] (rows per example: one prompt's completions), got %d",
			name, MaxRLGroupSize, g)
	}
	return nil
}

// sumGroups sums per-row values [B] over groups of G consecutive rows:
// [B/G]. With G = 1 it returns x unchanged.
func sumGroups(x *Node, G int) *Node {
	if G <= 1 {
		return x
	}
	return ReduceSum(groups(x, G), -1)
}

// importanceSampling is the off-policy policy-gradient loss:
// loss = −Σ_t exp(logp_t − sampling_logp_t)·A_t − entropy_coef·Σ_t H_t
// per row; with group_size G > 1, an example is G consecutive rows (the G
// completions of one prompt) and its loss is the sum of its rows' losses,
// so the prompt, not the completion, is the DP privacy unit.
type importanceSampling struct {
	EntropyCoef float64 `json:"entropy_coef"`
	GroupSize   int     `json:"group_size"`
}

func newImportanceSampling(kw map[string]any) (Loss, error) {
	c := importanceSampling{GroupSize: 1}
	if err := DecodeKwargs(kw, &c); err != nil {
		return Loss{}, fmt.Errorf("loss: importance_sampling: %w", err)
	}
	if !finite(c.EntropyCoef) {
		return Loss{}, fmt.Errorf("loss: importance_sampling: kwargs.entropy_coef must be finite")
	}
	if err := checkRLGroup("importance_sampling", c.GroupSize); err != nil {
		return Loss{}, err
	}
	return Loss{Func: c.Func, GroupSize: c.GroupSize, Needs: []Field{FieldAdvantages, FieldSamplingLogProbs},
		Metrics: []string{"ratio_mean", "entropy"}, Params: []float64{c.EntropyCoef},
		Key: fmt.Sprintf("importance_sampling/entropy=%t/group=%d", c.EntropyCoef != 0, c.GroupSize)}, nil
}

// Func is the graph function; Params[0] is the entropy coefficient.
func (c importanceSampling) Func(out Outputs, b Batch) Result {
	full, logp := TokenLogProbs(out, b)
	mask := TargetMask(b)
	ratio := Exp(Mul(Sub(logp, b.SamplingLogProbs), mask))
	lossPer := Neg(rowSum(Mul(ratio, b.Advantages), mask))
	ent := Entropy(full)
	if c.EntropyCoef != 0 { // the entropy's gradient costs passes over the vocabulary
		lossPer = Sub(lossPer, Mul(rowSum(ent, mask), b.Param(0, ent)))
	}
	ent = StopGradient(ent)
	return Result{PerExample: sumGroups(lossPer, c.GroupSize), Metrics: map[string]*Node{
		"ratio_mean": tokenMean(ratio, mask), "entropy": tokenMean(ent, mask)}}
}

// ppo is the clipped surrogate objective with an optional k3 KL penalty
// against reference log-probabilities and an entropy bonus:
// r_t = exp(logp_t − sampling_logp_t),
// loss = −Σ_t min(r_t·A_t, clip(r_t, low, high)·A_t) + kl_coef·Σ_t KL_t − entropy_coef·Σ_t H_t,
// KL_t = exp(ref_t − logp_t) − (ref_t − logp_t) − 1,
// per row; with group_size G > 1 an example is G consecutive rows and its
// loss is the sum of theirs (as for importance_sampling).
type ppo struct {
	ClipLow     float64 `json:"clip_low_threshold"`
	ClipHigh    float64 `json:"clip_high_threshold"`
	KLCoef      float64 `json:"kl_coef"`
	EntropyCoef float64 `json:"entropy_coef"`
	GroupSize   int     `json:"group_size"`
}

func newPPO(kw map[string]any) (Loss, error) {
	c := ppo{ClipLow: 0.8, ClipHigh: 1.2, GroupSize: 1}
	if err := DecodeKwargs(kw, &c); err != nil {
		return Loss{}, fmt.Errorf("loss: ppo: %w", err)
	}
	switch {
	case !(c.ClipLow > 0 && c.ClipLow <= 1):
		return Loss{}, fmt.Errorf("loss: ppo: kwargs.clip_low_threshold must be in (0, 1], got %v", c.ClipLow)
	case !(c.ClipHigh >= 1) || !finite(c.ClipHigh):
		return Loss{}, fmt.Errorf("loss: ppo: kwargs.clip_high_threshold must be finite and ≥ 1, got %v", c.ClipHigh)
	case !(c.KLCoef >= 0) || !finite(c.KLCoef):
		return Loss{}, fmt.Errorf("loss: ppo: kwargs.kl_coef must be finite and ≥ 0, got %v", c.KLCoef)
	case !finite(c.EntropyCoef):
		return Loss{}, fmt.Errorf("loss: ppo: kwargs.entropy_coef must be finite")
	}
	if err := checkRLGroup("ppo", c.GroupSize); err != nil {
		return Loss{}, err
	}
	needs := []Field{FieldAdvantages, FieldSamplingLogProbs}
	if c.KLCoef > 0 {
		needs = append(needs, FieldReferenceLogProbs)
	}
	key := fmt.Sprintf("ppo/kl=%t/entropy=%t/group=%d", c.KLCoef > 0, c.EntropyCoef != 0, c.GroupSize)
	return Loss{Func: c.Func, GroupSize: c.GroupSize, Needs: needs, Metrics: []string{"clip_fraction", "approx_kl", "ratio_mean", "entropy"},
		Params: []float64{c.ClipLow, c.ClipHigh, c.KLCoef, c.EntropyCoef}, Key: key}, nil
}

// Func is the graph function; Params are the clip thresholds, the KL and
// the entropy coefficients. The KL term is in the graph only when kl_coef
// > 0 (without reference log-probabilities it could overflow).
func (c ppo) Func(out Outputs, b Batch) Result {
	full, logp := TokenLogProbs(out, b)
	mask := TargetMask(b)
	logRatio := Mul(Sub(logp, b.SamplingLogProbs), mask)
	ratio := Exp(logRatio)
	low, high := b.Param(0, ratio), b.Param(1, ratio)
	unclipped := Mul(ratio, b.Advantages)
	clipped := Mul(Min(Max(ratio, low), high), b.Advantages)
	lossPer := Neg(rowSum(Min(unclipped, clipped), mask))
	if c.KLCoef > 0 {
		d := Mul(Sub(b.ReferenceLogProbs, logp), mask)
		kl := Sub(Sub(Exp(d), d), OnesLike(d))
		lossPer = Add(lossPer, Mul(rowSum(kl, mask), b.Param(2, kl)))
	}
	ent := Entropy(full)
	if c.EntropyCoef != 0 {
		lossPer = Sub(lossPer, Mul(rowSum(ent, mask), b.Param(3, ent)))
	}
	ent = StopGradient(ent)
	outside := LogicalOr(LessThan(ratio, low), GreaterThan(ratio, high))
	// approx_kl estimates KL(sampling ‖ current) with k3: (r − 1) − log r.
	approxKL := Sub(Sub(ratio, OnesLike(ratio)), logRatio)
	return Result{PerExample: sumGroups(lossPer, c.GroupSize), Metrics: map[string]*Node{
		"clip_fraction": tokenMean(ConvertDType(outside, ratio.DType()), mask),
		"approx_kl":     tokenMean(approxKL, mask),
		"ratio_mean":    tokenMean(ratio, mask),
		"entropy":       tokenMean(ent, mask),
	}}
}

// dpo is direct preference optimisation over pairs (row 2i chosen, row
// 2i+1 rejected): with s = Σ_t logp_t and r = Σ_t reference_logp_t per row,
// loss = −log σ(β·((s_c − r_c) − (s_r − r_r))).
type dpo struct {
	Beta float64 `json:"beta"`
}

func newDPO(kw map[string]any) (Loss, error) {
	c := dpo{Beta: 0.1}
	if err := DecodeKwargs(kw, &c); err != nil {
		return Loss{}, fmt.Errorf("loss: dpo: %w", err)
	}
	if !(c.Beta > 0) || !finite(c.Beta) {
		return Loss{}, fmt.Errorf("loss: dpo: kwargs.beta must be positive and finite, got %v", c.Beta)
	}
	return Loss{Func: c.Func, GroupSize: 2, Needs: []Field{FieldReferenceLogProbs},
		Metrics: []string{"reward_accuracy", "reward_margin"}, Params: []float64{c.Beta}, Key: "dpo"}, nil
}

// Func is the graph function; Params[0] is β.
func (c dpo) Func(out Outputs, b Batch) Result {
	_, logp := TokenLogProbs(out, b)
	mask := TargetMask(b)
	reward := groups(Mul(rowSum(Sub(logp, b.ReferenceLogProbs), mask), b.Param(0, logp)), 2) // [P, 2]
	z := Sub(column(reward, 0), column(reward, 1))
	lossPer := Softplus(Neg(z)) // −log σ(z)
	return Result{PerExample: lossPer, Metrics: map[string]*Node{
		"reward_accuracy": ReduceAllMean(ConvertDType(GreaterThan(z, ZerosLike(z)), z.DType())),
		"reward_margin":   ReduceAllMean(z),
	}}
}

// LogProbSurrogate is the loss behind client-side custom losses: given
// g_t = d loss / d logp_t computed by the client, the per-example surrogate
// Σ_t g_t·logp_t (over target positions) has the client's loss gradient
// with respect to the model, so the engine can clip and accumulate it like
// any built-in loss. Its value is not the client's loss.
func LogProbSurrogate() Loss {
	return Loss{Needs: []Field{FieldLogProbGrads}, Key: "custom/logprob_grads", Func: func(out Outputs, b Batch) Result {
		_, logp := TokenLogProbs(out, b)
		return Result{PerExample: rowSum(Mul(logp, b.LogProbGrads), TargetMask(b))}
	}}
}
