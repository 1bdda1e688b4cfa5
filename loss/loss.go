// Package loss defines training objectives as per-example graph functions.
//
// A loss maps the model's outputs for a batch to one loss value per example.
// Per-example is the point: DP-SGD clips each example's gradient, so every
// loss must keep examples separate until the engine has clipped them. An
// example is one row of the batch, or for the grouped losses (pairs for
// margin_ranking and dpo, groups for contrastive) GroupSize consecutive
// rows: the group is then the privacy unit, and no loss ever compares rows
// of different groups (in-batch negatives would make one example's gradient
// depend on another's and break the per-example sensitivity bound).
//
// Losses are resolved by name with validated keyword arguments, so the same
// spec travels through the API, the SDKs and training configs. Built-ins are
// listed in docs/LOSSES.md; Go users add their own with Register, as
// database/sql drivers do, or keep them apart in a Registry of their own.
package loss

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX graph code reads best with its ops unqualified.
)

// IgnoreIndex is the label value that marks a position without a target,
// as in PyTorch and Hugging Face.
const IgnoreIndex = -100

// Spec names a loss and its keyword arguments, as the API carries it:
// {"type": "token_ce", "kwargs": {"label_smoothing": 0.1}}.
type Spec struct {
	Type   string         `json:"type"`
	Kwargs map[string]any `json:"kwargs,omitempty"`
}

// Key returns a canonical string for the spec (type and sorted kwargs), used
// to cache compiled graphs per loss.
func (s Spec) Key() string {
	data := []byte("{}")
	if len(s.Kwargs) > 0 {
		data, _ = json.Marshal(s.Kwargs) // map keys are sorted
	}
	t := s.Type
	if t == "" {
		t = "token_ce"
	}
	return t + string(data)
}

// Outputs are the model outputs a loss may read.
type Outputs struct {
	Logits *Node // [B, T, V]
	Hidden *Node // [B, T, H], after the final norm
}

// Batch holds the inputs a loss may read. Per-token inputs are [B, T] and
// already shifted so that position t holds the value of the token predicted
// at position t (the token at input position t+1); positions without a
// target hold 0. Inputs the loss did not declare in Needs may hold zeros.
type Batch struct {
	Targets *Node // [B, T] int32: the target token; 0 where there is none
	Weights *Node // [B, T] float: the label weight (> 0) at target positions, 0 elsewhere
	Mask    *Node // [B, T] float: 1 at real (unpadded) input tokens, 0 at padding

	Advantages        *Node // [B, T] float: A_t
	SamplingLogProbs  *Node // [B, T] float: log q(token) of the sampling policy
	ReferenceLogProbs *Node // [B, T] float: log p_ref(token)
	LogProbGrads      *Node // [B, T] float: d loss / d logp_t of a client-side loss
	ExampleTargets    *Node // [P] float: one regression target per example

	// Params are the loss's run-time hyper-parameters (Loss.Params), one
	// scalar node each, in order.
	Params []*Node
}

// Param returns hyper-parameter i as a scalar of like's dtype.
func (b Batch) Param(i int, like *Node) *Node { return ConvertDType(b.Params[i], like.DType()) }

// Result is what a loss function returns: one loss per example ([P] for P
// examples of GroupSize rows) and the metrics the loss declared, each a
// scalar over the whole batch.
type Result struct {
	PerExample *Node
	Metrics    map[string]*Node
}

// Func computes a loss on a batch.
type Func func(out Outputs, b Batch) Result

// Field names an optional batch input a loss needs. The names are the JSON
// names of the api.Batch fields.
type Field string

// Optional batch inputs.
const (
	FieldAdvantages        Field = "advantages"
	FieldSamplingLogProbs  Field = "sampling_logprobs"
	FieldReferenceLogProbs Field = "reference_logprobs"
	FieldTargets           Field = "targets"
	FieldLogProbGrads      Field = "logprob_grads"
)

// Loss is a resolved loss: its graph function and what the engine must
// know to feed it.
type Loss struct {
	// Func computes per-example losses and metrics.
	Func Func
	// GroupSize is the number of consecutive rows that form one example
	// (the DP privacy unit); 0 and 1 mean one row.
	GroupSize int
	// Needs lists the optional batch inputs Func reads; a batch without
	// one of them is refused, naming it.
	Needs []Field
	// Metrics lists the names of Result.Metrics, in output order.
	Metrics []string
	// IgnoreLabel, if set, replaces IgnoreIndex as the label value that
	// marks a position without a target.
	IgnoreLabel *int
	// TokenIDs names kwargs that hold token ids (kwarg → id); the engine
	// checks them against the model's vocabulary.
	TokenIDs map[string]int
	// Params are numeric hyper-parameters that Func reads at run time
	// from Batch.Params instead of baking them into the graph, so that a
	// new value (an annealed KL coefficient, say) needs no new compilation.
	Params []float64
	// Key, if set, identifies the compiled graph: two specs of one loss
	// with the same Key differ only in Params. Empty means the spec's
	// canonical form (Spec.Key) is the key.
	Key string
}

// Group returns the number of rows per example (at least 1).
func (l Loss) Group() int { return max(l.GroupSize, 1) }

// Ignore returns the label value that marks a position without a target.
func (l Loss) Ignore() int {
	if l.IgnoreLabel != nil {
		return *l.IgnoreLabel
	}
	return IgnoreIndex
}

// Factory builds a loss from its kwargs. It should decode them with
// DecodeKwargs, so that an unknown kwarg is an error naming it.
type Factory func(kwargs map[string]any) (Loss, error)

// Errors of the registry.
var (
	ErrUnknownLoss = errors.New("unknown loss type")
	ErrDuplicate   = errors.New("loss type already registered")
)

// Registry maps loss names to factories. The zero value is not usable; use
// NewRegistry. Its methods are safe for concurrent use.
type Registry struct {
	mu        sync.RWMutex
	factories map[string]Factory
	aliases   map[string]string
}

// NewRegistry returns a registry holding the built-in losses.
func NewRegistry() *Registry {
	r := &Registry{factories: map[string]Factory{}, aliases: map[string]string{"": "token_ce", "cross_entropy": "token_ce"}}
	for name, f := range builtins {
		r.factories[name] = f
	}
	return r
}

var validName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// Register adds a loss under name (lower case letters, digits and
// underscores, at most 64 characters). Names already taken, built-ins
// included, are refused with ErrDuplicate.
func (r *Registry) Register(name string, f Factory) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("loss: register %q: a name is 1 to 64 of [a-z0-9_], starting with a letter", name)
	}
	if f == nil {
		return fmt.Errorf("loss: register %q: nil factory", name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.factories[name]; ok {
		return fmt.Errorf("loss: register %q: %w", name, ErrDuplicate)
	}
	if _, ok := r.aliases[name]; ok {
		return fmt.Errorf("loss: register %q: %w", name, ErrDuplicate)
	}
	r.factories[name] = f
	return nil
}

// Names returns the registered loss names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Sorted(maps.Keys(r.factories))
}

// Resolve validates a spec and returns its loss. Unknown types and unknown
// or ill-typed kwargs are errors naming them.
func (r *Registry) Resolve(s Spec) (Loss, error) {
	r.mu.RLock()
	name := s.Type
	if a, ok := r.aliases[name]; ok {
		name = a
	}
	f, ok := r.factories[name]
	r.mu.RUnlock()
	if !ok {
		return Loss{}, fmt.Errorf("loss: %w %q (known: %s)", ErrUnknownLoss, s.Type, strings.Join(r.Names(), ", "))
	}
	l, err := f(s.Kwargs)
	if err != nil {
		if strings.HasPrefix(err.Error(), "loss: ") {
			return Loss{}, err
		}
		return Loss{}, fmt.Errorf("loss: %s: %w", name, err)
	}
	if l.Func == nil {
		return Loss{}, fmt.Errorf("loss: %s: the factory returned no function", name)
	}
	if l.GroupSize < 0 {
		return Loss{}, fmt.Errorf("loss: %s: negative group size %d", name, l.GroupSize)
	}
	return l, nil
}

var defaultRegistry = NewRegistry()

// Register adds a loss to the default registry, which the engine and the
// service resolve names in. Call it from an init function or before the
// service starts.
func Register(name string, f Factory) error { return defaultRegistry.Register(name, f) }

// Resolve resolves a spec in the default registry.
func Resolve(s Spec) (Loss, error) { return defaultRegistry.Resolve(s) }

// Names lists the losses of the default registry.
func Names() []string { return defaultRegistry.Names() }

// DecodeKwargs decodes kwargs into dst, a pointer to a struct whose json
// tags name the allowed kwargs; fields keep their values for absent kwargs
// (set defaults before calling). An unknown kwarg, a value of the wrong type
// or a non-finite number is an error naming the kwarg.
func DecodeKwargs(kwargs map[string]any, dst any) error {
	rt := reflect.TypeOf(dst)
	if rt == nil || rt.Kind() != reflect.Pointer || rt.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("loss: DecodeKwargs needs a pointer to a struct, got %T", dst)
	}
	st := rt.Elem()
	allowed := map[string]reflect.StructField{}
	for i := range st.NumField() {
		f := st.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		allowed[name] = f
	}
	keys := make([]string, 0, len(kwargs))
	for k := range kwargs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f, ok := allowed[k]
		if !ok {
			names := make([]string, 0, len(allowed))
			for n := range allowed {
				names = append(names, n)
			}
			sort.Strings(names)
			if len(names) == 0 {
				return fmt.Errorf("unknown kwarg %q (this loss takes none)", k)
			}
			return fmt.Errorf("unknown kwarg %q (allowed: %s)", k, strings.Join(names, ", "))
		}
		data, err := json.Marshal(kwargs[k])
		if err != nil {
			return fmt.Errorf("kwargs.%s: %v", k, err)
		}
		v := reflect.New(f.Type)
		if err := json.Unmarshal(data, v.Interface()); err != nil {
			return fmt.Errorf("kwargs.%s: must be of type %s, got %s", k, f.Type, data)
		}
		reflect.ValueOf(dst).Elem().FieldByIndex(f.Index).Set(v.Elem())
	}
	return nil
}

// NeedsField reports whether l reads the batch input field.
func (l Loss) NeedsField(field Field) bool { return slices.Contains(l.Needs, field) }
