package compliance

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"sort"
	"strings"
	"time"
)

// Formats of the minimization policy and report (docs/compliance/EVIDENCE.md).
const (
	PolicyFormat       = "tensafe.compliance.policy/v1"
	MinimizationFormat = "tensafe.compliance.minimization/v1"
)

// Action is what a Policy does with a dataset example that holds one kind
// of finding.
type Action string

// Actions.
const (
	// ActionAllow keeps the value as it is.
	ActionAllow Action = "allow"
	// ActionRedact replaces the matched bytes with "[REDACTED:<kind>]".
	ActionRedact Action = "redact"
	// ActionDrop removes the whole example from the dataset.
	ActionDrop Action = "drop-example"
)

func (a Action) valid() bool { return a == ActionAllow || a == ActionRedact || a == ActionDrop }

// Policy is a data-minimization policy: an action per PII kind, one for
// every secret kind, and fields removed from every example.
type Policy struct {
	Format string `json:"format"`
	// PII maps each personal-data kind to its action. Every kind of
	// PIIKinds must be present.
	PII map[Kind]Action `json:"pii"`
	// Secrets is the action for every secret kind.
	Secrets Action `json:"secrets"`
	// DropFields are top-level fields of each JSON example removed before
	// scanning (a dotted path "a.b" removes a nested field).
	DropFields []string `json:"drop_fields,omitempty"`
}

// DefaultPolicy redacts contact data and network addresses, and drops
// examples holding financial or government identifiers or secrets.
func DefaultPolicy() Policy {
	return Policy{Format: PolicyFormat, Secrets: ActionDrop, PII: map[Kind]Action{
		KindEmail: ActionRedact, KindPhone: ActionRedact, KindIPv4: ActionRedact, KindIPv6: ActionRedact,
		KindDateOfBirth: ActionRedact, KindPaymentCard: ActionDrop, KindSSN: ActionDrop, KindIBAN: ActionDrop,
	}}
}

// ErrBadPolicy is returned for a policy that does not validate; the error
// names the field.
var ErrBadPolicy = errors.New("compliance: bad policy")

// Validate checks p, naming the first bad field.
func (p Policy) Validate() error {
	if p.Format != PolicyFormat {
		return fmt.Errorf("%w: field format: %q, want %q", ErrBadPolicy, p.Format, PolicyFormat)
	}
	for k, a := range p.PII {
		if !piiKinds[k] {
			return fmt.Errorf("%w: field pii: %q is not a personal-data kind (known: %v)", ErrBadPolicy, k, PIIKinds())
		}
		if !a.valid() {
			return fmt.Errorf("%w: field pii.%s: action %q, want allow, redact or drop-example", ErrBadPolicy, k, a)
		}
	}
	for _, k := range PIIKinds() {
		if _, ok := p.PII[k]; !ok {
			return fmt.Errorf("%w: field pii.%s: missing (every personal-data kind needs an action)", ErrBadPolicy, k)
		}
	}
	if !p.Secrets.valid() {
		return fmt.Errorf("%w: field secrets: action %q, want allow, redact or drop-example", ErrBadPolicy, p.Secrets)
	}
	for i, f := range p.DropFields {
		if f == "" || strings.HasPrefix(f, ".") || strings.HasSuffix(f, ".") || strings.Contains(f, "..") {
			return fmt.Errorf("%w: field drop_fields[%d]: %q is not a field path", ErrBadPolicy, i, f)
		}
	}
	return nil
}

// ParsePolicy decodes and validates a JSON policy; unknown fields are
// refused.
func ParsePolicy(b []byte) (Policy, error) {
	var p Policy
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return Policy{}, fmt.Errorf("%w: %w", ErrBadPolicy, err)
	}
	if dec.More() {
		return Policy{}, fmt.Errorf("%w: trailing data after the policy", ErrBadPolicy)
	}
	return p, p.Validate()
}

func (p Policy) action(k Kind) Action {
	if k.Category() == CategorySecret {
		return p.Secrets
	}
	return p.PII[k]
}

// MinimizationReport records what Minimize did to a dataset. It holds
// counts and hashes, never a value from the data.
type MinimizationReport struct {
	Format       string    `json:"format"`
	CreatedAt    time.Time `json:"created_at"`
	Input        string    `json:"input"`
	Output       string    `json:"output"`
	InputSHA256  string    `json:"input_sha256"`
	OutputSHA256 string    `json:"output_sha256"`
	Policy       Policy    `json:"policy"`
	PolicySHA256 string    `json:"policy_sha256"`
	ExamplesIn   int       `json:"examples_in"`
	ExamplesOut  int       `json:"examples_out"`
	// ExamplesDropped counts the examples removed; DroppedByKind counts,
	// per kind, the removed examples that held it.
	ExamplesDropped int          `json:"examples_dropped"`
	DroppedByKind   map[Kind]int `json:"dropped_by_kind"`
	// RedactedByKind counts the values redacted, per kind.
	RedactedByKind map[Kind]int `json:"redacted_by_kind"`
	// AllowedByKind counts the findings kept because the policy allows
	// them.
	AllowedByKind map[Kind]int `json:"allowed_by_kind"`
	// FieldsDropped counts, per field path, the examples it was removed
	// from.
	FieldsDropped map[string]int `json:"fields_dropped"`
}

// ErrBadExample is returned by Minimize for an input line that is not a
// JSON object; the error names the line, never its content.
var ErrBadExample = errors.New("compliance: bad dataset example")

// Minimize applies p to the JSONL dataset read from r (one JSON object per
// line; blank lines are skipped) and writes the kept examples to w, one per
// line. It returns the report (with the SHA-256 of the bytes read and
// written). The scanner's options select the kinds it finds.
func (s *Scanner) Minimize(ctx context.Context, r io.Reader, w io.Writer, p Policy) (*MinimizationReport, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	pj, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	ps := sha256.Sum256(pj)
	rep := &MinimizationReport{Format: MinimizationFormat, Policy: p, PolicySHA256: "sha256:" + hex.EncodeToString(ps[:]),
		DroppedByKind: map[Kind]int{}, RedactedByKind: map[Kind]int{}, AllowedByKind: map[Kind]int{}, FieldsDropped: map[string]int{}}
	for _, f := range p.DropFields {
		rep.FieldsDropped[f] = 0
	}
	ih, oh := sha256.New(), sha256.New()
	br := bufio.NewReaderSize(io.TeeReader(r, ih), 64<<10)
	bw := bufio.NewWriter(io.MultiWriter(w, oh))
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for line := 1; ; line++ {
		raw, rerr := readLine(br, s.maxLine)
		if rerr != nil && rerr != io.EOF {
			return nil, fmt.Errorf("compliance: minimize: line %d: %w", line, rerr)
		}
		if len(bytes.TrimSpace(raw)) > 0 {
			if line&255 == 0 {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
			}
			rep.ExamplesIn++
			out, keep, err := s.minimizeExample(raw, p, rep)
			if err != nil {
				return nil, fmt.Errorf("%w: line %d: %v", ErrBadExample, line, err)
			}
			if keep {
				buf.Reset()
				if err := enc.Encode(out); err != nil {
					return nil, fmt.Errorf("compliance: minimize: line %d: %w", line, err)
				}
				if _, err := bw.Write(buf.Bytes()); err != nil {
					return nil, fmt.Errorf("compliance: minimize: write: %w", err)
				}
				rep.ExamplesOut++
			} else {
				rep.ExamplesDropped++
			}
		}
		if rerr == io.EOF {
			break
		}
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("compliance: minimize: write: %w", err)
	}
	rep.InputSHA256, rep.OutputSHA256 = sumOf(ih), sumOf(oh)
	return rep, nil
}

func sumOf(h hash.Hash) string { return "sha256:" + hex.EncodeToString(h.Sum(nil)) }

// readLine reads one line without its end, refusing lines over max bytes.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var out []byte
	for {
		chunk, err := br.ReadSlice('\n')
		out = append(out, chunk...)
		if len(out) > max {
			return nil, fmt.Errorf("line longer than %d bytes", max)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		return bytes.TrimRight(out, "\r\n"), err
	}
}

// minimizeExample applies p to one JSON example. It returns the example to
// write and whether to keep it.
func (s *Scanner) minimizeExample(raw []byte, p Policy, rep *MinimizationReport) (any, bool, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false, errors.New("not valid JSON")
	}
	if dec.More() {
		return nil, false, errors.New("more than one JSON value")
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, false, errors.New("not a JSON object")
	}
	for _, f := range p.DropFields {
		if dropField(obj, strings.Split(f, ".")) {
			rep.FieldsDropped[f]++
		}
	}
	// First pass: find every kind in the example, to decide on dropping
	// before redacting anything.
	found := map[Kind]int{}
	walkStrings(obj, func(str string) string {
		for _, m := range s.spans(str) {
			found[m.kind]++
		}
		return str
	})
	drop := false
	for k := range found {
		if p.action(k) == ActionDrop {
			drop = true
			rep.DroppedByKind[k]++
		}
	}
	if drop {
		return nil, false, nil
	}
	for k, n := range found {
		if p.action(k) == ActionAllow {
			rep.AllowedByKind[k] += n
		}
	}
	out := walkStrings(obj, func(str string) string {
		ms := s.spans(str)
		// replace from the end, so that earlier offsets stay valid
		for i := len(ms) - 1; i >= 0; i-- {
			m := ms[i]
			if p.action(m.kind) != ActionRedact {
				continue
			}
			str = str[:m.start] + "[REDACTED:" + string(m.kind) + "]" + str[m.end:]
			rep.RedactedByKind[m.kind]++
		}
		return str
	})
	return out, true, nil
}

// spans returns the findings in one string value with byte offsets into
// it, in order, without overlaps.
func (s *Scanner) spans(str string) []match {
	st := newFileState("value")
	var out []match
	off := 0
	for _, line := range strings.SplitAfter(str, "\n") {
		body := strings.TrimRight(line, "\r\n")
		st.line++
		for _, m := range s.scanLine([]byte(body), st, nil) {
			m.start += off
			m.end += off
			if m.kind == KindPrivateKey {
				m.end = pemEnd(str, m.start)
			}
			out = append(out, m)
		}
		off += len(line)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].start < out[j].start })
	kept := out[:0]
	end := -1
	for _, m := range out {
		if m.start >= end {
			kept = append(kept, m)
			end = m.end
		}
	}
	return kept
}

// pemEnd returns the end of the PEM block that starts at start: past the
// dashes that close its END line, or the end of str when it has none.
func pemEnd(str string, start int) int {
	i := strings.Index(str[start:], "-----END ")
	if i < 0 {
		return len(str)
	}
	j := strings.Index(str[start+i+9:], "-----")
	if j < 0 {
		return len(str)
	}
	return start + i + 9 + j + 5
}

// walkStrings returns v with every string value (not object keys) replaced
// by f's result.
func walkStrings(v any, f func(string) string) any {
	switch x := v.(type) {
	case string:
		return f(x)
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys) // deterministic counting order
		for _, k := range keys {
			x[k] = walkStrings(x[k], f)
		}
		return x
	case []any:
		for i := range x {
			x[i] = walkStrings(x[i], f)
		}
		return x
	}
	return v
}

// dropField removes the field at path from obj and reports whether it was
// there.
func dropField(obj map[string]any, path []string) bool {
	for len(path) > 1 {
		next, ok := obj[path[0]].(map[string]any)
		if !ok {
			return false
		}
		obj, path = next, path[1:]
	}
	if _, ok := obj[path[0]]; !ok {
		return false
	}
	delete(obj, path[0])
	return true
}
