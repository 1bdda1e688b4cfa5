package compliance

import (
	"context"
	"strings"
	"testing"
)

// BenchmarkPathologicalLine is one 1 MiB line packed with findings and
// phone-shaped runs: the cost per byte must stay flat (no quadratic walks).
func BenchmarkPathologicalLine(b *testing.B) {
	for _, unit := range []string{"a@example.com 10.1.2.3 ", "+1 415 555 2671 ", "1.1.1.1.1.1.1.1.", "((((1-2-3-4 ", "AKIAZ7QWERTY12345678 x@y.co 4111111111111111 "} {
		line := strings.Repeat(unit, (1<<20)/len(unit))
		s, err := NewScanner(Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(strings.Fields(unit)[0], func(b *testing.B) {
			b.SetBytes(int64(len(line)))
			for b.Loop() {
				if _, err := s.ScanBytes(context.Background(), "p.txt", []byte(line)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
