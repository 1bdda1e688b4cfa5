package compliance_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/tensafe/tensafe/compliance"
)

// Scanning a decrypted artifact in memory: the findings say what and where,
// never the value.
func ExampleScanner_ScanBytes() {
	s, err := compliance.NewScanner(compliance.Options{})
	if err != nil {
		panic(err)
	}
	data := []byte(`{"prompt": "reach me at ana@example.org", "completion": "ok"}
{"prompt": "card 4111 1111 1111 1111", "completion": "noted"}
`)
	findings, err := s.ScanBytes(context.Background(), "train.jsonl", data)
	if err != nil {
		panic(err)
	}
	for _, f := range findings {
		fmt.Printf("%s:%d:%d %s (%s)\n", f.File, f.Line, f.Column, f.Kind, f.Kind.Category())
	}
	// Output:
	// train.jsonl:1:25 email (pii)
	// train.jsonl:2:18 payment_card (pii)
}

// Minimizing a dataset with the default policy: contact data is redacted,
// an example with a card number is dropped, a field is removed, and the
// report counts it all.
func ExampleScanner_Minimize() {
	s, err := compliance.NewScanner(compliance.Options{})
	if err != nil {
		panic(err)
	}
	in := strings.NewReader(`{"prompt": "reach me at ana@example.org", "completion": "ok", "user": "u1"}
{"prompt": "card 4111 1111 1111 1111", "completion": "noted", "user": "u2"}
`)
	p := compliance.DefaultPolicy()
	p.DropFields = []string{"user"}
	var out strings.Builder
	rep, err := s.Minimize(context.Background(), in, &out, p)
	if err != nil {
		panic(err)
	}
	fmt.Print(out.String())
	fmt.Println(rep.ExamplesIn, rep.ExamplesOut, rep.DroppedByKind, rep.RedactedByKind, rep.FieldsDropped)
	// Output:
	// {"completion":"ok","prompt":"reach me at [REDACTED:email]"}
	// 2 1 map[payment_card:1] map[email:1] map[user:2]
}
