package he

import (
	"context"
	"testing"
	"time"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
)

// TestLoRADeltaD4096R16 is the correctness bar: d=4096, r=16, x
// uniform in [-1, 1], weights ~N(0, 0.02²); the decrypted delta equals the
// plaintext scale·B(Ax) within 1e-4. It streams the feature-major packing
// (rank accumulators in memory, not 4096 ciphertexts each way).
func TestLoRADeltaD4096R16(t *testing.T) {
	f := getFixture(t)
	ctx := context.Background()
	const d, rank, tokens, block = 4096, 16, 64, 256
	r := newRand(4096)
	ad := Adapter{A: randMat(r, rank, d, 0.02), B: randMat(r, d, rank, 0.02), Scale: 2}
	if err := f.ev.RegisterAdapter("d4096", ad); err != nil {
		t.Fatal(err)
	}
	x := uniform(r, tokens, d)
	var cur []*rlwe.Ciphertext
	got := make([][]float64, tokens)
	for i := range got {
		got[i] = make([]float64, d)
	}
	start := time.Now()
	err := f.ev.DeltaStream(ctx, "d4096",
		func(i int) (*rlwe.Ciphertext, error) {
			if i%block == 0 {
				var err error
				if cur, err = f.client.EncryptFeatures(ctx, x, i, min(i+block, d)); err != nil {
					return nil, err
				}
			}
			return cur[i%block], nil
		},
		func(c int, ct *rlwe.Ciphertext) error {
			col, err := f.client.DecryptFeature(ct, tokens)
			if err != nil {
				return err
			}
			for tok := range col {
				got[tok][c] = col[tok]
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	want := plainRows(x, ad.Apply)
	diff := maxAbsDiff(t, got, want)
	t.Logf("d=%d r=%d, %d tokens: max |delta - plaintext| = %.3e (encrypt+evaluate+decrypt %v)", d, rank, tokens, diff, time.Since(start))
	if diff > 1e-4 {
		t.Fatalf("max error %g > 1e-4", diff)
	}
}
