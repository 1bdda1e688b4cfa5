package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestQuickstart runs the README's main job for a few steps through the
// embedded server and checks that it trains, samples, saves and verifies.
func TestQuickstart(t *testing.T) {
	var out bytes.Buffer
	o := quickstartOptions{steps: 3, expectedBatch: 8, sigma: 1, clip: 1, lr: 5e-3, targetEps: 8, delta: 1e-5, dataDir: t.TempDir()}
	if err := runQuickstart(context.Background(), &out, o); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"step   3/3", "sample (greedy)", "privacy spent: ε = ", "encrypted checkpoint: artifact art_", "audit chain verified: true"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
