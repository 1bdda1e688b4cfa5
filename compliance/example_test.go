package compliance_test

import (
	"context"
	"fmt"

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
