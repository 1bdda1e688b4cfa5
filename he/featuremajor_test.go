package he

import (
	"context"
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// TestBarrettSigned: signed sums of magnitude below 2^62 reduce to the same
// residue as big-integer arithmetic, for every prime of the presets.
func TestBarrettSigned(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, name := range Presets() {
		p, err := Preset(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range p.CKKS().Q() {
			b := newBarrett(q)
			bq := new(big.Int).SetUint64(q)
			vals := []int64{0, 1, -1, 1<<62 - 1, -(1<<62 - 1), int64(q), -int64(q), int64(q) - 1}
			for range 2000 {
				vals = append(vals, r.Int64N(1<<62)-r.Int64N(1<<62))
			}
			for _, v := range vals {
				want := new(big.Int).Mod(big.NewInt(v), bq).Uint64()
				if got := b.signed(v); got != want {
					t.Fatalf("%s q=%d: %d mod q = %d, want %d", name, q, v, got, want)
				}
			}
		}
	}
}

// TestQuantizeFM: int64 accumulation where the bound allows it (the default
// preset's 30–33-bit primes), 128-bit residues where it does not (N14's
// 55-bit prime), and weights within their bit budget.
func TestQuantizeFM(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	w := randMat(r, 16, 4096, 0.02)
	for _, tc := range []struct {
		preset string
		level  int
		narrow bool
	}{
		{PresetN13, 2, true},
		{PresetN14, 2, false},
		{PresetN15, 2, false},
	} {
		p, _ := Preset(tc.preset)
		moduli := p.CKKS().Q()[:tc.level+1]
		fw, err := quantizeFM(w, 2, 4096, moduli, fmMaxBitsA)
		if err != nil {
			t.Fatal(err)
		}
		if fw.narrow != tc.narrow {
			t.Fatalf("%s: narrow = %v, want %v", tc.preset, fw.narrow, tc.narrow)
		}
		var maxErr float64
		for j, row := range w {
			for i, v := range row {
				k := j*4096 + i
				var q float64
				if fw.narrow {
					if math.Abs(float64(fw.ints[k])) > 1<<17 {
						t.Fatalf("%s: weight %d exceeds 17 bits at d=4096", tc.preset, fw.ints[k])
					}
					q = float64(fw.ints[k])
				} else {
					res := fw.res[k][0]
					if res > moduli[0]/2 {
						q = -float64(moduli[0] - res)
					} else {
						q = float64(res)
					}
				}
				maxErr = math.Max(maxErr, math.Abs(math.Ldexp(q, -fw.shift)-2*v))
			}
		}
		if maxErr > math.Ldexp(1, -fw.shift) {
			t.Fatalf("%s: quantization error %g above half a step %g", tc.preset, maxErr, math.Ldexp(1, -fw.shift))
		}
	}
}

// TestDeltaFeatureMajorWidePrimes: the 128-bit path (CKKS-N14-QP435, whose
// 55-bit first prime is too wide for int64 sums) meets the same bound.
func TestDeltaFeatureMajorWidePrimes(t *testing.T) {
	if testing.Short() {
		t.Skip("N14 keys and ciphertexts")
	}
	ctx := context.Background()
	p, err := Preset(PresetN14)
	if err != nil {
		t.Fatal(err)
	}
	ck, evk, err := GenerateKeys(ctx, p, Capabilities{})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := NewEvaluator(evk)
	if err != nil {
		t.Fatal(err)
	}
	s := LoRAShape{DIn: 40, DOut: 24, Rank: 4}
	r := newRand(14)
	ad := testAdapter(r, s)
	if err := ev.RegisterAdapter("wide", ad); err != nil {
		t.Fatal(err)
	}
	if ev.adapters["wide"].fmA.narrow || ev.adapters["wide"].fmB.narrow {
		t.Fatal("N14 adapter uses int64 accumulation; the 55-bit prime needs 128 bits")
	}
	c := NewClient(ck)
	x := uniform(r, 9, s.DIn)
	in, err := c.EncryptLoRAInput(ctx, x, PackingThroughput, s)
	if err != nil {
		t.Fatal(err)
	}
	got, out := evalDecrypt(t, c, in, delta(ev, "wide"))
	if d := maxAbsDiff(t, got, plainRows(x, ad.Apply)); d > 1e-4 {
		t.Fatalf("max error %g > 1e-4", d)
	} else {
		t.Logf("N14 feature-major: max error %.2e, output level %d", d, out.Ciphertexts[0].Level())
	}
}

// TestDeltaFeatureMajorLevels: inputs at the wrong level are refused, and
// the output sits one level below the input with no second rescale.
func TestDeltaFeatureMajorLevels(t *testing.T) {
	f := getFixture(t)
	ctx := context.Background()
	r := newRand(77)
	if err := f.ev.RegisterAdapter("levels", testAdapter(r, testShape)); err != nil {
		t.Fatal(err)
	}
	x := uniform(r, 3, testShape.DIn)
	in, err := f.client.EncryptLoRAInput(ctx, x, PackingThroughput, testShape)
	if err != nil {
		t.Fatal(err)
	}
	if got := in.Ciphertexts[0].Level(); got != loraThroughputLevel(f.params) {
		t.Fatalf("input level %d", got)
	}
	out, err := f.ev.Delta(ctx, "levels", in)
	if err != nil {
		t.Fatal(err)
	}
	if got := out.Ciphertexts[0].Level(); got != loraThroughputLevel(f.params)-1 {
		t.Fatalf("output level %d, want %d", got, loraThroughputLevel(f.params)-1)
	}
	wrong, err := f.client.Encrypt(ctx, x, in.Layout, loraInputLevel(f.params))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ev.Delta(ctx, "levels", wrong); err == nil {
		t.Fatal("input at the latency packing's level accepted by the feature-major delta")
	}
}

// TestDeltaFeatureMajorHeadroom: activations 1000× larger than the issue's
// (|x| ≤ 1000, |Ax| in the hundreds) still decrypt correctly: the error
// stays relative to the values, a few 1e-5 of max |delta| from the weights'
// quantization (docs/HE.md §3.1, precision and headroom), where an overflow
// of the output modulus would give errors as large as the values.
func TestDeltaFeatureMajorHeadroom(t *testing.T) {
	f := getFixture(t)
	ctx := context.Background()
	r := newRand(1000)
	ad := testAdapter(r, testShape)
	if err := f.ev.RegisterAdapter("headroom", ad); err != nil {
		t.Fatal(err)
	}
	x := uniform(r, 20, testShape.DIn)
	for _, row := range x {
		for i := range row {
			row[i] *= 1000
		}
	}
	in, err := f.client.EncryptLoRAInput(ctx, x, PackingThroughput, testShape)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := evalDecrypt(t, f.client, in, delta(f.ev, "headroom"))
	want := plainRows(x, ad.Apply)
	var scale float64
	for _, row := range want {
		for _, v := range row {
			scale = math.Max(scale, math.Abs(v))
		}
	}
	if d := maxAbsDiff(t, got, want); d > 1e-4*scale {
		t.Fatalf("max error %g for max |delta| %g", d, scale)
	} else {
		t.Logf("max |delta| %.3g, max error %.2e (relative %.1e)", scale, d, d/scale)
	}
}

// TestThroughputEvaluator: without evaluation keys the feature-major delta
// works and the latency packing and models are refused.
func TestThroughputEvaluator(t *testing.T) {
	f := getFixture(t)
	ctx := context.Background()
	ev, err := NewThroughputEvaluator(f.params, f.ck.ID())
	if err != nil {
		t.Fatal(err)
	}
	r := newRand(5)
	ad := testAdapter(r, testShape)
	if err := ev.RegisterAdapter("q", ad); err != nil {
		t.Fatal(err)
	}
	x := uniform(r, 4, testShape.DIn)
	in, err := f.client.EncryptLoRAInput(ctx, x, PackingThroughput, testShape)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := evalDecrypt(t, f.client, in, delta(ev, "q"))
	want := plainRows(x, ad.Apply)
	if d := maxAbsDiff(t, got, want); d > 1e-4 {
		t.Fatalf("error %g", d)
	}
	lat, err := f.client.EncryptLoRAInput(ctx, x, PackingLatency, testShape)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ev.Delta(ctx, "q", lat); !errors.Is(err, ErrMissingKeys) {
		t.Fatalf("latency packing without keys: %v", err)
	}
	if err := ev.RegisterModel("m", testMLP, ProfileFull, 0); !errors.Is(err, ErrMissingKeys) {
		t.Fatalf("model without keys: %v", err)
	}
	if _, err := NewThroughputEvaluator(f.params, "hek_x"); err == nil {
		t.Fatal("malformed key id accepted")
	}
}
