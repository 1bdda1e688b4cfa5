package rlvr

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"
	"unicode/utf8"
)

// schema is a compiled subset of JSON Schema (draft 2020-12 keywords):
// type, properties, required, items, enum, additionalProperties (a boolean
// or a schema), minimum, maximum, minLength, maxLength, minItems, maxItems.
// Any other keyword is an error at compile time, so a schema never silently
// checks less than its author meant. (No maintained JSON Schema validator
// is in this module's dependencies; the subset is small and tested.)
type schema struct {
	types      []string // "object", "array", "string", "number", "integer", "boolean", "null"
	properties map[string]*schema
	required   []string
	items      *schema
	enum       []any
	addl       *schema // nil: any additional property
	noAddl     bool
	min, max   *float64
	minLen     *int
	maxLen     *int
	minItems   *int
	maxItems   *int
}

var schemaTypes = map[string]bool{"object": true, "array": true, "string": true, "number": true, "integer": true, "boolean": true, "null": true}

func compileSchema(m map[string]any, path string) (*schema, error) {
	s := &schema{}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := m[k]
		p := path + "." + k
		switch k {
		case "$schema", "title", "description", "$comment", "examples", "default":
		case "type":
			switch t := v.(type) {
			case string:
				s.types = []string{t}
			case []any:
				for i, x := range t {
					str, ok := x.(string)
					if !ok {
						return nil, fmt.Errorf("%s[%d]: must be a string", p, i)
					}
					s.types = append(s.types, str)
				}
			default:
				return nil, fmt.Errorf("%s: must be a string or a list of strings", p)
			}
			for _, t := range s.types {
				if !schemaTypes[t] {
					return nil, fmt.Errorf("%s: unknown type %q", p, t)
				}
			}
		case "properties":
			props, ok := v.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%s: must be an object", p)
			}
			s.properties = map[string]*schema{}
			for name, sub := range props {
				sm, ok := sub.(map[string]any)
				if !ok {
					return nil, fmt.Errorf("%s.%s: must be a schema object", p, name)
				}
				c, err := compileSchema(sm, p+"."+name)
				if err != nil {
					return nil, err
				}
				s.properties[name] = c
			}
		case "required":
			list, ok := v.([]any)
			if !ok {
				return nil, fmt.Errorf("%s: must be a list of strings", p)
			}
			for i, x := range list {
				str, ok := x.(string)
				if !ok {
					return nil, fmt.Errorf("%s[%d]: must be a string", p, i)
				}
				s.required = append(s.required, str)
			}
		case "items":
			sm, ok := v.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%s: must be a schema object", p)
			}
			c, err := compileSchema(sm, p)
			if err != nil {
				return nil, err
			}
			s.items = c
		case "enum":
			list, ok := v.([]any)
			if !ok || len(list) == 0 {
				return nil, fmt.Errorf("%s: must be a non-empty list", p)
			}
			s.enum = list
		case "additionalProperties":
			switch a := v.(type) {
			case bool:
				s.noAddl = !a
			case map[string]any:
				c, err := compileSchema(a, p)
				if err != nil {
					return nil, err
				}
				s.addl = c
			default:
				return nil, fmt.Errorf("%s: must be a boolean or a schema object", p)
			}
		case "minimum", "maximum":
			f, ok := v.(float64)
			if !ok {
				if i, isInt := v.(int); isInt {
					f, ok = float64(i), true
				}
			}
			if !ok {
				return nil, fmt.Errorf("%s: must be a number", p)
			}
			if k == "minimum" {
				s.min = &f
			} else {
				s.max = &f
			}
		case "minLength", "maxLength", "minItems", "maxItems":
			f, ok := v.(float64)
			if i, isInt := v.(int); isInt {
				f, ok = float64(i), true
			}
			if !ok || f < 0 || f != math.Trunc(f) || f > math.MaxInt32 {
				return nil, fmt.Errorf("%s: must be a non-negative integer", p)
			}
			n := int(f)
			switch k {
			case "minLength":
				s.minLen = &n
			case "maxLength":
				s.maxLen = &n
			case "minItems":
				s.minItems = &n
			case "maxItems":
				s.maxItems = &n
			}
		default:
			return nil, fmt.Errorf("%s: keyword not supported (supported: type, properties, required, items, enum, additionalProperties, minimum, maximum, minLength, maxLength, minItems, maxItems)", p)
		}
	}
	return s, nil
}

// parseJSON decodes one JSON value with numbers as float64 (json.Number
// kept for integer checks).
func parseJSON(text string) (any, bool) {
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	if strings.TrimSpace(text[dec.InputOffset():]) != "" {
		return nil, false // trailing data
	}
	return v, true
}

func jsonType(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number:
		if _, err := x.Int64(); err == nil {
			return "integer"
		}
		if f, err := x.Float64(); err == nil && f == math.Trunc(f) && !strings.ContainsAny(x.String(), ".eE") {
			return "integer"
		}
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

func (s *schema) validate(v any) error { return s.check(v, "$") }

func (s *schema) check(v any, path string) error {
	t := jsonType(v)
	if len(s.types) > 0 {
		ok := false
		for _, want := range s.types {
			ok = ok || want == t || (want == "number" && t == "integer")
		}
		if !ok {
			return fmt.Errorf("%s: %s, want %s", path, t, strings.Join(s.types, " or "))
		}
	}
	if s.enum != nil {
		ok := false
		for _, e := range s.enum {
			ok = ok || jsonEqual(e, v)
		}
		if !ok {
			return fmt.Errorf("%s: not one of the enum values", path)
		}
	}
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if s.min != nil && f < *s.min {
			return fmt.Errorf("%s: %v < minimum %v", path, f, *s.min)
		}
		if s.max != nil && f > *s.max {
			return fmt.Errorf("%s: %v > maximum %v", path, f, *s.max)
		}
	case string:
		n := utf8.RuneCountInString(x)
		if s.minLen != nil && n < *s.minLen || s.maxLen != nil && n > *s.maxLen {
			return fmt.Errorf("%s: length %d out of bounds", path, n)
		}
	case []any:
		if s.minItems != nil && len(x) < *s.minItems || s.maxItems != nil && len(x) > *s.maxItems {
			return fmt.Errorf("%s: %d items out of bounds", path, len(x))
		}
		if s.items != nil {
			for i, e := range x {
				if err := s.items.check(e, fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
		}
	case map[string]any:
		for _, r := range s.required {
			if _, ok := x[r]; !ok {
				return fmt.Errorf("%s: required property %q missing", path, r)
			}
		}
		for k, e := range x {
			sub, ok := s.properties[k]
			switch {
			case ok:
			case s.noAddl:
				return fmt.Errorf("%s: additional property %q", path, k)
			case s.addl != nil:
				sub = s.addl
			default:
				continue
			}
			if err := sub.check(e, path+"."+k); err != nil {
				return err
			}
		}
	}
	return nil
}

// jsonEqual compares an enum value (from kwargs: float64, string, …) with
// a parsed value (numbers as json.Number).
func jsonEqual(a, b any) bool {
	norm := func(v any) []byte {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		if n, ok := v.(json.Number); ok {
			if f, err := n.Float64(); err == nil {
				v = f
			}
		}
		if i, ok := v.(int); ok {
			v = float64(i)
		}
		if err := enc.Encode(v); err != nil {
			return nil
		}
		return buf.Bytes()
	}
	na, nb := norm(a), norm(b)
	return na != nil && reflect.DeepEqual(na, nb)
}
