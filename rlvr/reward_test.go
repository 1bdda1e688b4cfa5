package rlvr

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func resolve(t *testing.T, typ string, kw map[string]any) RewardFunc {
	t.Helper()
	fn, err := NewRegistry().Resolve(RewardSpec{Type: typ, Kwargs: kw})
	if err != nil {
		t.Fatalf("%s %v: %v", typ, kw, err)
	}
	return fn
}

func TestRewards(t *testing.T) {
	person := map[string]any{
		"type":                 "object",
		"required":             []any{"name", "age"},
		"additionalProperties": false,
		"properties": map[string]any{
			"name": map[string]any{"type": "string", "minLength": 1.0},
			"age":  map[string]any{"type": "integer", "minimum": 0.0, "maximum": 150.0},
			"tags": map[string]any{"type": "array", "items": map[string]any{"enum": []any{"a", "b"}}, "maxItems": 2.0},
		},
	}
	for _, c := range []struct {
		typ  string
		kw   map[string]any
		s    Sample
		want float64
	}{
		{"keyword_contains", map[string]any{"keywords": []any{"cat", "dog"}}, Sample{Completion: "a Cat sat"}, 0.5},
		{"keyword_contains", map[string]any{"keywords": []any{"cat", "dog"}, "case_sensitive": true}, Sample{Completion: "a Cat sat"}, 0},
		{"keyword_contains", map[string]any{"keywords": []any{"cat", "dog"}, "mode": "all"}, Sample{Completion: "dog and cat"}, 1},
		{"keyword_contains", map[string]any{"keywords": []any{"cat", "dog"}, "mode": "all"}, Sample{Completion: "dog"}, 0},
		{"keyword_contains", map[string]any{"keywords": []any{"cat", "dog"}, "mode": "any"}, Sample{Completion: "dog"}, 1},
		{"length_penalty", map[string]any{"target": 4}, Sample{Completion: "abcd"}, 0},
		{"length_penalty", map[string]any{"target": 4}, Sample{Completion: "abcdef"}, -0.5},
		{"length_penalty", map[string]any{"target": 4, "scale": 2.0}, Sample{Completion: "abcdef"}, -1},
		{"length_penalty", map[string]any{"target": 4, "min": 2}, Sample{Completion: "a"}, -0.5},
		{"length_penalty", map[string]any{"target": 2}, Sample{Completion: "éé"}, 0}, // characters, not bytes
		{"length_penalty", map[string]any{"target": 2, "unit": "bytes"}, Sample{Completion: "éé"}, -1},
		{"format_compliance", map[string]any{"regex": `\d+`}, Sample{Completion: " 123\n"}, 1},
		{"format_compliance", map[string]any{"regex": `\d+`}, Sample{Completion: "x123"}, 0},
		{"format_compliance", map[string]any{"regex": `\d+`, "search": true}, Sample{Completion: "x123"}, 1},
		{"format_compliance", map[string]any{"regex": `\d+`, "trim": false}, Sample{Completion: " 123"}, 0},
		{"format_compliance", map[string]any{"json_schema": person}, Sample{Completion: `{"name": "Ada", "age": 36}`}, 1},
		{"format_compliance", map[string]any{"json_schema": person}, Sample{Completion: `{"name": "Ada", "age": 36, "tags": ["a"]}`}, 1},
		{"format_compliance", map[string]any{"json_schema": person}, Sample{Completion: `{"name": "Ada", "age": 36, "tags": ["c"]}`}, 0},
		{"format_compliance", map[string]any{"json_schema": person}, Sample{Completion: `{"name": "Ada", "age": 36.5}`}, 0},
		{"format_compliance", map[string]any{"json_schema": person}, Sample{Completion: `{"name": "Ada", "age": -1}`}, 0},
		{"format_compliance", map[string]any{"json_schema": person}, Sample{Completion: `{"name": "Ada"}`}, 0},
		{"format_compliance", map[string]any{"json_schema": person}, Sample{Completion: `{"name": "", "age": 3}`}, 0},
		{"format_compliance", map[string]any{"json_schema": person}, Sample{Completion: `{"name": "Ada", "age": 3, "x": 1}`}, 0},
		{"format_compliance", map[string]any{"json_schema": person}, Sample{Completion: `{"name": "Ada", "age": 3} trailing`}, 0},
		{"format_compliance", map[string]any{"json_schema": person}, Sample{Completion: `not json`}, 0},
		{"format_compliance", map[string]any{"json_schema": map[string]any{"type": "number"}}, Sample{Completion: `3`}, 1},
		{"format_compliance", map[string]any{"json_schema": map[string]any{"type": []any{"string", "null"}}}, Sample{Completion: `null`}, 1},
		{"exact_match", nil, Sample{Completion: " Paris\n", Answer: "Paris"}, 1},
		{"exact_match", nil, Sample{Completion: "paris", Answer: "Paris"}, 0},
		{"exact_match", map[string]any{"normalize": "lower"}, Sample{Completion: "new   YORK", Answer: "New York"}, 1},
		{"exact_match", map[string]any{"normalize": "none"}, Sample{Completion: "Paris ", Answer: "Paris"}, 0},
		{"numeric_match", nil, Sample{Completion: "so 6 × 7 = 42.", Answer: "#### 42"}, 1},
		{"numeric_match", nil, Sample{Completion: "it is 1,234.5", Answer: "1234.5"}, 1},
		{"numeric_match", nil, Sample{Completion: "about 3/4", Answer: "0.75"}, 1},
		{"numeric_match", nil, Sample{Completion: "42 then 41", Answer: "42"}, 0},
		{"numeric_match", nil, Sample{Completion: "no idea", Answer: "42"}, 0},
		{"numeric_match", map[string]any{"tolerance": 0.01}, Sample{Completion: "3.141", Answer: "3.1416"}, 1},
		{"numeric_match", map[string]any{"tolerance": 0.0, "rel_tolerance": 0.01}, Sample{Completion: "990", Answer: "1000"}, 1},
		{"numeric_match", nil, Sample{Completion: "-2.5e3", Answer: "-2500"}, 1},
	} {
		got, err := resolve(t, c.typ, c.kw)(c.s)
		if err != nil || math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%s %v on %+v = %v, %v; want %v", c.typ, c.kw, c.s, got, err, c.want)
		}
	}
}

func TestRewardErrors(t *testing.T) {
	r := NewRegistry()
	for _, c := range []struct {
		typ  string
		kw   map[string]any
		want string
	}{
		{"nope", nil, "unknown reward"},
		{"keyword_contains", map[string]any{"keyword": []any{"x"}}, `unknown kwarg "keyword"`},
		{"keyword_contains", map[string]any{}, "keywords"},
		{"keyword_contains", map[string]any{"keywords": "x"}, `kwarg "keywords"`},
		{"keyword_contains", map[string]any{"keywords": []any{"x"}, "mode": "most"}, `"mode"`},
		{"length_penalty", map[string]any{}, `"target"`},
		{"length_penalty", map[string]any{"target": 3, "min": 5}, `"min"`},
		{"length_penalty", map[string]any{"target": 3, "scale": -1.0}, `"scale"`},
		{"format_compliance", map[string]any{}, "regex"},
		{"format_compliance", map[string]any{"regex": "("}, `"regex"`},
		{"format_compliance", map[string]any{"regex": "a", "json_schema": map[string]any{}}, "not both"},
		{"format_compliance", map[string]any{"json_schema": map[string]any{"pattern": "x"}}, "json_schema.pattern: keyword not supported"},
		{"format_compliance", map[string]any{"json_schema": map[string]any{"type": "float"}}, "unknown type"},
		{"exact_match", map[string]any{"normalize": "upper"}, `"normalize"`},
		{"numeric_match", map[string]any{"tolerance": -1.0}, `"tolerance"`},
		{"numeric_match", map[string]any{"tol": 1.0}, `unknown kwarg "tol"`},
	} {
		_, err := r.Resolve(RewardSpec{Type: c.typ, Kwargs: c.kw})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %v: %v, want an error containing %q", c.typ, c.kw, err, c.want)
		}
	}
	if _, err := r.Resolve(RewardSpec{Type: "nope"}); !errors.Is(err, ErrUnknownReward) {
		t.Errorf("unknown reward: %v", err)
	}
	fn := resolve(t, "numeric_match", nil)
	if _, err := fn(Sample{Completion: "1", Answer: "none"}); err == nil {
		t.Error("numeric_match with an answer without a number: no error")
	}
}

func TestRegister(t *testing.T) {
	r := NewRegistry()
	if err := r.RegisterFunc("has_x", func(s Sample) (float64, error) { return b2f(strings.Contains(s.Completion, "x")), nil }); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"has_x", "exact_match", "Bad-Name", ""} {
		if err := r.RegisterFunc(name, func(Sample) (float64, error) { return 0, nil }); err == nil {
			t.Errorf("register %q: accepted", name)
		}
	}
	w := 2.0
	sum, err := r.ResolveAll([]RewardSpec{{Type: "has_x"}, {Type: "keyword_contains", Kwargs: map[string]any{"keywords": []any{"y"}}, Weight: &w}})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := sum(Sample{Completion: "xy"}); err != nil || v != 3 {
		t.Errorf("has_x + 2·keyword(y) on xy = %v, %v", v, err)
	}
	if _, err := r.Resolve(RewardSpec{Type: "has_x", Kwargs: map[string]any{"k": 1}}); err == nil {
		t.Error("kwargs to a reward without kwargs accepted")
	}
	if _, err := r.ResolveAll([]RewardSpec{{Type: "has_x"}, {Type: "nope"}}); err == nil || !strings.Contains(err.Error(), "rewards[1]") {
		t.Errorf("bad second reward: %v", err)
	}
	// The package default registry is separate.
	if _, err := Resolve(RewardSpec{Type: "has_x"}); !errors.Is(err, ErrUnknownReward) {
		t.Errorf("default registry sees a private registration: %v", err)
	}
}

func TestLastNumber(t *testing.T) {
	for _, c := range []struct {
		in   string
		want float64
		ok   bool
	}{
		{"The answer is 42", 42, true},
		{"3 apples and 4.5 pears", 4.5, true},
		{"-7", -7, true},
		{"1,000,000 dollars", 1e6, true},
		{"ratio 1/2.", 0.5, true},
		{"divide 1/0", 0, false}, // "1/0" is no number
		{"x = .5", 0.5, true},
		{"1e3", 1000, true},
		{"no digits here", 0, false},
		{"", 0, false},
		{"version 2.0.1", 0.1, true},
	} {
		got, ok := LastNumber(c.in)
		if ok != c.ok || (ok && math.Abs(got-c.want) > 1e-12) {
			t.Errorf("LastNumber(%q) = %v, %v; want %v, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}
