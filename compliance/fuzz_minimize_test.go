package compliance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// FuzzParsePolicy: any bytes parse to a valid policy or an ErrBadPolicy,
// and a policy that parses survives a round trip.
func FuzzParsePolicy(f *testing.F) {
	good, _ := json.Marshal(DefaultPolicy())
	f.Add(good)
	f.Add([]byte(`{"format":"tensafe.compliance.policy/v1","pii":{},"secrets":"allow"}`))
	f.Add([]byte(`{"format":"x"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePolicy(data)
		if err != nil {
			if !errors.Is(err, ErrBadPolicy) {
				t.Fatalf("error %v is not ErrBadPolicy", err)
			}
			return
		}
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParsePolicy(b); err != nil {
			t.Fatalf("round trip of a valid policy: %v", err)
		}
	})
}

// FuzzMinimize: any input is minimized or refused with ErrBadExample;
// every output line is a JSON object, no more examples come out than went
// in, and minimizing the output again with the same policy finds nothing
// the policy drops or redacts (the output is a fixed point).
func FuzzMinimize(f *testing.F) {
	for _, s := range []string{
		`{"text":"mail bob@example.com, call +44 20 7946 0958","id":1}`,
		`{"a":{"b":["card 4111 1111 1111 1111","10.1.2.3"]}}` + "\n\n" + `{"c":null}`,
		`{"k":"-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----"}`,
		`not json`,
		`{"x":"ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R"}`,
	} {
		f.Add([]byte(s))
	}
	s, err := NewScanner(Options{})
	if err != nil {
		f.Fatal(err)
	}
	p := DefaultPolicy()
	p.DropFields = []string{"id", "a.b"}
	p.Secrets = ActionRedact
	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		rep, err := s.Minimize(context.Background(), bytes.NewReader(data), &out, p)
		if err != nil {
			if !errors.Is(err, ErrBadExample) && !strings.Contains(err.Error(), "longer than") {
				t.Fatalf("error %v", err)
			}
			return
		}
		lines := 0
		for _, l := range bytes.Split(bytes.TrimSuffix(out.Bytes(), []byte("\n")), []byte("\n")) {
			if len(l) == 0 {
				continue
			}
			lines++
			var m map[string]any
			if err := json.Unmarshal(l, &m); err != nil {
				t.Fatalf("output line %q: %v", l, err)
			}
		}
		if lines != rep.ExamplesOut || rep.ExamplesOut+rep.ExamplesDropped != rep.ExamplesIn {
			t.Fatalf("counts %+v for %d lines", rep, lines)
		}
		var again bytes.Buffer
		rep2, err := s.Minimize(context.Background(), bytes.NewReader(out.Bytes()), &again, p)
		if err != nil {
			t.Fatalf("minimizing the output: %v", err)
		}
		if rep2.ExamplesDropped != 0 {
			t.Fatalf("second pass dropped %d examples (%v)", rep2.ExamplesDropped, rep2.DroppedByKind)
		}
	})
}
