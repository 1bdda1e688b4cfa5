package rlvr

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// Sample is what a reward sees: the prompt, the completion the policy
// wrote, and the reference answer of the prompt (empty when there is none).
type Sample struct {
	Prompt     string
	Completion string
	Answer     string
}

// RewardFunc scores one completion. An error means the reward could not be
// computed (a bug or a misconfiguration), not a bad completion: bad
// completions get a low score.
type RewardFunc func(s Sample) (float64, error)

// Factory builds a reward from its keyword arguments. It must reject
// unknown kwargs, naming them.
type Factory func(kwargs map[string]any) (RewardFunc, error)

// RewardSpec names a reward and its keyword arguments, as training configs
// carry it: {"type": "numeric_match", "kwargs": {"tolerance": 1e-6},
// "weight": 1}.
type RewardSpec struct {
	Type   string         `json:"type" yaml:"type"`
	Kwargs map[string]any `json:"kwargs,omitempty" yaml:"kwargs"`
	// Weight scales the reward in a sum of several (default 1).
	Weight *float64 `json:"weight,omitempty" yaml:"weight"`
}

// ErrUnknownReward is returned by Resolve for a name nobody registered.
var ErrUnknownReward = errors.New("rlvr: unknown reward")

// Registry maps reward names to factories. Its methods are safe for
// concurrent use. NewRegistry holds the built-ins.
type Registry struct {
	mu        sync.RWMutex
	factories map[string]Factory
}

// NewRegistry returns a registry holding the built-in rewards.
func NewRegistry() *Registry {
	return &Registry{factories: map[string]Factory{
		"keyword_contains":  keywordContains,
		"length_penalty":    lengthPenalty,
		"format_compliance": formatCompliance,
		"exact_match":       exactMatch,
		"numeric_match":     numericMatch,
	}}
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// Register adds a reward under name (lower case letters, digits and _).
// Built-in and already registered names cannot be replaced.
func (r *Registry) Register(name string, f Factory) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("rlvr: register reward %q: name must match %s", name, nameRE)
	}
	if f == nil {
		return fmt.Errorf("rlvr: register reward %q: nil factory", name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.factories[name]; ok {
		return fmt.Errorf("rlvr: register reward %q: already registered", name)
	}
	r.factories[name] = f
	return nil
}

// RegisterFunc registers a reward without keyword arguments.
func (r *Registry) RegisterFunc(name string, fn RewardFunc) error {
	if fn == nil {
		return fmt.Errorf("rlvr: register reward %q: nil function", name)
	}
	return r.Register(name, func(kw map[string]any) (RewardFunc, error) {
		if err := noKwargs(name, kw); err != nil {
			return nil, err
		}
		return fn, nil
	})
}

// Names lists the registered rewards, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Sorted(maps.Keys(r.factories))
}

// Resolve builds the reward a spec names.
func (r *Registry) Resolve(s RewardSpec) (RewardFunc, error) {
	r.mu.RLock()
	f, ok := r.factories[s.Type]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknownReward, s.Type, strings.Join(r.Names(), ", "))
	}
	fn, err := f(s.Kwargs)
	if err != nil {
		return nil, fmt.Errorf("rlvr: reward %s: %w", s.Type, err)
	}
	if s.Weight != nil {
		w := *s.Weight
		if math.IsNaN(w) || math.IsInf(w, 0) {
			return nil, fmt.Errorf("rlvr: reward %s: weight must be finite", s.Type)
		}
		inner := fn
		fn = func(x Sample) (float64, error) {
			v, err := inner(x)
			return w * v, err
		}
	}
	return fn, nil
}

// ResolveAll builds the sum of several rewards (each scaled by its weight).
func (r *Registry) ResolveAll(specs []RewardSpec) (RewardFunc, error) {
	if len(specs) == 0 {
		return nil, errors.New("rlvr: no reward given")
	}
	fns := make([]RewardFunc, len(specs))
	for i, s := range specs {
		fn, err := r.Resolve(s)
		if err != nil {
			return nil, fmt.Errorf("rewards[%d]: %w", i, err)
		}
		fns[i] = fn
	}
	if len(fns) == 1 {
		return fns[0], nil
	}
	return func(x Sample) (float64, error) {
		var sum float64
		for i, fn := range fns {
			v, err := fn(x)
			if err != nil {
				return 0, fmt.Errorf("rewards[%d] (%s): %w", i, specs[i].Type, err)
			}
			sum += v
		}
		return sum, nil
	}, nil
}

// kwargs decoding: JSON and YAML both give float64/int, string, bool,
// []any and map[string]any; decode through JSON into a struct with the
// allowed names.
func decodeKwargs(kw map[string]any, dst any, allowed ...string) error {
	for k := range kw {
		ok := false
		for _, a := range allowed {
			ok = ok || k == a
		}
		if !ok {
			return fmt.Errorf("unknown kwarg %q (allowed: %s)", k, strings.Join(allowed, ", "))
		}
	}
	if len(kw) == 0 {
		return nil
	}
	b, err := json.Marshal(kw)
	if err != nil {
		return fmt.Errorf("kwargs: %w", err)
	}
	if err := json.Unmarshal(b, dst); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return fmt.Errorf("kwarg %q: must be %s, got %s", te.Field, te.Type, te.Value)
		}
		return fmt.Errorf("kwargs: %w", err)
	}
	return nil
}

func noKwargs(name string, kw map[string]any) error {
	for k := range kw {
		return fmt.Errorf("reward %s takes no kwargs, got %q", name, k)
	}
	return nil
}

// keyword_contains: the fraction (mode "fraction", default), all ("all")
// or any ("any") of keywords found in the completion; 1 or 0 for all/any.
func keywordContains(kw map[string]any) (RewardFunc, error) {
	var c struct {
		Keywords      []string `json:"keywords"`
		Mode          string   `json:"mode"`
		CaseSensitive bool     `json:"case_sensitive"`
	}
	if err := decodeKwargs(kw, &c, "keywords", "mode", "case_sensitive"); err != nil {
		return nil, err
	}
	if len(c.Keywords) == 0 {
		return nil, errors.New("kwarg \"keywords\": at least one keyword is required")
	}
	for i, k := range c.Keywords {
		if k == "" {
			return nil, fmt.Errorf("kwarg \"keywords\"[%d]: empty keyword", i)
		}
		if !c.CaseSensitive {
			c.Keywords[i] = strings.ToLower(k)
		}
	}
	switch c.Mode {
	case "":
		c.Mode = "fraction"
	case "fraction", "all", "any":
	default:
		return nil, fmt.Errorf("kwarg \"mode\": %q, want fraction, all or any", c.Mode)
	}
	return func(s Sample) (float64, error) {
		text := s.Completion
		if !c.CaseSensitive {
			text = strings.ToLower(text)
		}
		found := 0
		for _, k := range c.Keywords {
			if strings.Contains(text, k) {
				found++
			}
		}
		switch c.Mode {
		case "all":
			return b2f(found == len(c.Keywords)), nil
		case "any":
			return b2f(found > 0), nil
		}
		return float64(found) / float64(len(c.Keywords)), nil
	}, nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// length_penalty: −scale · max(0, length − target) / target, length in
// characters (unit "chars", default) or bytes; with min, also
// −scale · max(0, min − length) / min. 0 for a completion within bounds.
func lengthPenalty(kw map[string]any) (RewardFunc, error) {
	var c struct {
		Target *int     `json:"target"`
		Min    int      `json:"min"`
		Scale  *float64 `json:"scale"`
		Unit   string   `json:"unit"`
	}
	if err := decodeKwargs(kw, &c, "target", "min", "scale", "unit"); err != nil {
		return nil, err
	}
	if c.Target == nil || *c.Target < 1 {
		return nil, errors.New("kwarg \"target\": a length ≥ 1 is required")
	}
	if c.Min < 0 || c.Min > *c.Target {
		return nil, fmt.Errorf("kwarg \"min\": must be in [0, target], got %d", c.Min)
	}
	scale := 1.0
	if c.Scale != nil {
		scale = *c.Scale
	}
	if !(scale >= 0) || math.IsInf(scale, 0) {
		return nil, errors.New("kwarg \"scale\": must be ≥ 0 and finite")
	}
	count := utf8.RuneCountInString
	switch c.Unit {
	case "", "chars":
	case "bytes":
		count = func(s string) int { return len(s) }
	default:
		return nil, fmt.Errorf("kwarg \"unit\": %q, want chars or bytes", c.Unit)
	}
	target, lo := float64(*c.Target), float64(c.Min)
	return func(s Sample) (float64, error) {
		n := float64(count(s.Completion))
		p := 0.0
		if n > target {
			p += (n - target) / target
		}
		if lo > 0 && n < lo {
			p += (lo - n) / lo
		}
		return -scale * p, nil
	}, nil
}

// format_compliance: 1 when the completion matches regex (Go RE2 syntax,
// anchored at both ends unless "search": true), or parses as JSON valid
// under json_schema (a subset of JSON Schema: type, properties, required,
// items, enum, additionalProperties, minimum/maximum, minLength/maxLength,
// minItems/maxItems); else 0. "trim" (default true) strips surrounding
// white space first.
func formatCompliance(kw map[string]any) (RewardFunc, error) {
	var c struct {
		Regex      string         `json:"regex"`
		Search     bool           `json:"search"`
		JSONSchema map[string]any `json:"json_schema"`
		Trim       *bool          `json:"trim"`
	}
	if err := decodeKwargs(kw, &c, "regex", "search", "json_schema", "trim"); err != nil {
		return nil, err
	}
	trim := c.Trim == nil || *c.Trim
	prep := func(s string) string {
		if trim {
			return strings.TrimSpace(s)
		}
		return s
	}
	switch {
	case c.Regex != "" && c.JSONSchema != nil:
		return nil, errors.New("give kwarg \"regex\" or \"json_schema\", not both")
	case c.Regex != "":
		expr := c.Regex
		if !c.Search {
			expr = `^(?:` + expr + `)$`
		}
		re, err := regexp.Compile(expr)
		if err != nil {
			return nil, fmt.Errorf("kwarg \"regex\": %w", err)
		}
		return func(s Sample) (float64, error) { return b2f(re.MatchString(prep(s.Completion))), nil }, nil
	case c.JSONSchema != nil:
		if c.Search {
			return nil, errors.New("kwarg \"search\" applies to regex only")
		}
		sch, err := compileSchema(c.JSONSchema, "json_schema")
		if err != nil {
			return nil, err
		}
		return func(s Sample) (float64, error) {
			v, ok := parseJSON(prep(s.Completion))
			if !ok {
				return 0, nil
			}
			return b2f(sch.validate(v) == nil), nil
		}, nil
	}
	return nil, errors.New("kwarg \"regex\" or \"json_schema\" is required")
}

// exact_match: 1 when the completion equals the answer after normalization
// ("strip" trims white space, default; "lower" also folds case and
// collapses inner white space; "none"), else 0.
func exactMatch(kw map[string]any) (RewardFunc, error) {
	var c struct {
		Normalize string `json:"normalize"`
	}
	if err := decodeKwargs(kw, &c, "normalize"); err != nil {
		return nil, err
	}
	var norm func(string) string
	switch c.Normalize {
	case "", "strip":
		norm = strings.TrimSpace
	case "lower":
		norm = func(s string) string { return strings.Join(strings.Fields(strings.ToLower(s)), " ") }
	case "none":
		norm = func(s string) string { return s }
	default:
		return nil, fmt.Errorf("kwarg \"normalize\": %q, want strip, lower or none", c.Normalize)
	}
	return func(s Sample) (float64, error) {
		return b2f(norm(s.Completion) == norm(s.Answer)), nil
	}, nil
}

// numberRE matches a decimal number: sign, digits with optional thousands
// commas, fraction, exponent; or a fraction a/b.
var numberRE = regexp.MustCompile(`[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?(?:/\d+)?|[-+]?\.\d+(?:[eE][-+]?\d+)?`)

// LastNumber returns the last number written in text ("the answer is
// 1,234.5" → 1234.5; "3/4" → 0.75), the way math answers are checked.
func LastNumber(text string) (float64, bool) {
	// Fast path: only the run of number characters around the last digit
	// can hold the last number.
	last := strings.LastIndexAny(text, "0123456789")
	if last < 0 {
		return 0, false
	}
	const numChars = "0123456789,.+-/eE"
	start := last
	for start > 0 && strings.IndexByte(numChars, text[start-1]) >= 0 {
		start--
	}
	end := last + 1
	for end < len(text) && strings.IndexByte(numChars, text[end]) >= 0 {
		end++
	}
	if v, ok := lastNumberIn(text[start:end]); ok {
		return v, true
	}
	return lastNumberIn(text[:start])
}

// lastNumberIn is the full scan: every match of numberRE, last first.
func lastNumberIn(text string) (float64, bool) {
	ms := numberRE.FindAllString(text, -1)
	for i := len(ms) - 1; i >= 0; i-- {
		if v, ok := parseNumber(ms[i]); ok {
			return v, true
		}
	}
	return 0, false
}

func parseNumber(m string) (float64, bool) {
	m = strings.ReplaceAll(m, ",", "")
	if num, den, ok := strings.Cut(m, "/"); ok {
		a, err1 := strconv.ParseFloat(num, 64)
		b, err2 := strconv.ParseFloat(den, 64)
		if err1 != nil || err2 != nil || b == 0 {
			return 0, false
		}
		return a / b, true
	}
	v, err := strconv.ParseFloat(m, 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, false
	}
	return v, true
}

// numeric_match: 1 when the last number of the completion is within
// tolerance of the last number of the answer: |x − y| ≤ abs_tol +
// rel_tol·|y| (defaults 1e-6 and 0); 0 otherwise, and 0 when the completion
// has no number. An answer without a number is an error.
func numericMatch(kw map[string]any) (RewardFunc, error) {
	var c struct {
		Tolerance *float64 `json:"tolerance"`
		RelTol    float64  `json:"rel_tolerance"`
	}
	if err := decodeKwargs(kw, &c, "tolerance", "rel_tolerance"); err != nil {
		return nil, err
	}
	abs := 1e-6
	if c.Tolerance != nil {
		abs = *c.Tolerance
	}
	if !(abs >= 0) || math.IsInf(abs, 0) {
		return nil, errors.New("kwarg \"tolerance\": must be ≥ 0 and finite")
	}
	if !(c.RelTol >= 0) || math.IsInf(c.RelTol, 0) {
		return nil, errors.New("kwarg \"rel_tolerance\": must be ≥ 0 and finite")
	}
	return func(s Sample) (float64, error) {
		want, ok := LastNumber(s.Answer)
		if !ok {
			return 0, fmt.Errorf("numeric_match: the reference answer %q has no number", truncate(s.Answer, 40))
		}
		got, ok := LastNumber(s.Completion)
		if !ok {
			return 0, nil
		}
		return b2f(math.Abs(got-want) <= abs+c.RelTol*math.Abs(want)), nil
	}, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// defaultRegistry backs the package-level Register and Resolve, like
// database/sql's drivers: a program registers its rewards once, at init.
var defaultRegistry = NewRegistry()

// Register adds a reward to the default registry.
func Register(name string, f Factory) error { return defaultRegistry.Register(name, f) }

// RegisterFunc adds a reward without kwargs to the default registry.
func RegisterFunc(name string, fn RewardFunc) error { return defaultRegistry.RegisterFunc(name, fn) }

// Resolve builds a reward from the default registry.
func Resolve(s RewardSpec) (RewardFunc, error) { return defaultRegistry.Resolve(s) }

// ResolveAll builds the weighted sum of rewards from the default registry.
func ResolveAll(specs []RewardSpec) (RewardFunc, error) { return defaultRegistry.ResolveAll(specs) }
