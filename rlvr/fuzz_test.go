package rlvr

import (
	"encoding/json"
	"math"
	"testing"
)

// FuzzLastNumber: completions are untrusted model output; the number
// parser never panics and returns only finite numbers.
func FuzzLastNumber(f *testing.F) {
	for _, s := range []string{"42", "the answer is -1,234.5e-3", "1/0", "3/4 or .5", "9999999999999999999e999", "", "１２３"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, ok := LastNumber(s)
		if ok && (math.IsNaN(v) || math.IsInf(v, 0)) {
			t.Fatalf("LastNumber(%q) = %v", s, v)
		}
		// The fast path finds what the full scan finds.
		w, wok := lastNumberIn(s)
		if ok != wok || ok && v != w {
			t.Fatalf("LastNumber(%q) = %v, %v; full scan %v, %v", s, v, ok, w, wok)
		}
	})
}

// FuzzSchema: the JSON-schema check of format_compliance never panics on
// untrusted completions, and what it accepts is valid JSON.
func FuzzSchema(f *testing.F) {
	sch, err := compileSchema(map[string]any{
		"type": "object", "required": []any{"a"},
		"properties": map[string]any{
			"a": map[string]any{"type": "array", "items": map[string]any{"type": "integer", "minimum": 0.0}, "maxItems": 3.0},
			"b": map[string]any{"enum": []any{"x", 1.0, nil}},
		},
		"additionalProperties": map[string]any{"type": "string", "maxLength": 4.0},
	}, "json_schema")
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{`{"a": [1, 2]}`, `{"a": [], "b": null, "c": "xy"}`, `{"a": [-1]}`, `[1]`, `{"a": [1e400]}`, `"x"`, `{`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, ok := parseJSON(s)
		if !ok {
			return
		}
		if sch.validate(v) == nil && !json.Valid([]byte(s)) {
			t.Fatalf("accepted invalid JSON %q", s)
		}
	})
}

// FuzzParseState: checkpoint metadata comes back from storage; the state
// parser never panics and what it accepts marshals back.
func FuzzParseState(f *testing.F) {
	good, _ := State{Format: StateFormat, Algorithm: REINFORCE, Step: 2, RNG: []byte{1}, RewardHistory: []float64{0.5}}.metadata()
	f.Add([]byte(good))
	f.Add([]byte(`{"rlvr": {"format": "tensafe-rlvr-state/v1", "baseline": {"value": 1e309}}}`))
	f.Add([]byte(`{"rlvr": null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := parseState(data)
		if err != nil {
			return
		}
		if _, err := s.metadata(); err != nil {
			t.Fatalf("accepted state does not marshal: %v", err)
		}
	})
}
