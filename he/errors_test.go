package he

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestDeltaManyAndDecryptPublic(t *testing.T) {
	f := getFixture(t)
	ctx := context.Background()
	r := newRand(31)
	q, v := testAdapter(r, testShape), testAdapter(r, testShape)
	if err := f.ev.RegisterAdapter("layers.1.q_proj", q); err != nil {
		t.Fatal(err)
	}
	if err := f.ev.RegisterAdapter("layers.1.v_proj", v); err != nil {
		t.Fatal(err)
	}
	x := uniform(r, 5, testShape.DIn)
	in, err := f.client.EncryptLoRAInput(ctx, x, PackingThroughput, testShape)
	if err != nil {
		t.Fatal(err)
	}
	outs, err := f.ev.DeltaMany(ctx, []string{"layers.1.q_proj", "layers.1.v_proj"}, in)
	if err != nil {
		t.Fatal(err)
	}
	for i, ad := range []Adapter{q, v} {
		got, err := f.client.Decrypt(ctx, outs[i])
		if err != nil {
			t.Fatal(err)
		}
		want := make([][]float64, len(x))
		for k := range x {
			want[k] = ad.Apply(x[k])
		}
		if d := maxAbsDiff(t, got, want); d > 1e-4 {
			t.Fatalf("adapter %d: error %g", i, d)
		}
		// DecodePublic rounding: every value is a multiple of 2^-20.
		pub, err := f.client.DecryptPublic(ctx, outs[i], 20)
		if err != nil {
			t.Fatal(err)
		}
		for _, row := range pub {
			for _, y := range row {
				if s := y * (1 << 20); math.Abs(s-math.Round(s)) > 1e-6 {
					t.Fatalf("DecryptPublic value %v is not a multiple of 2^-20", y)
				}
			}
		}
		if d := maxAbsDiff(t, pub, want); d > 1e-4 {
			t.Fatalf("adapter %d: public decryption error %g", i, d)
		}
	}
}

func TestEvaluatorRejects(t *testing.T) {
	f := getFixture(t)
	ctx := context.Background()
	r := newRand(32)
	good := testAdapter(r, testShape)
	if err := f.ev.RegisterAdapter("ok", good); err != nil {
		t.Fatal(err)
	}
	in, err := f.client.EncryptLoRAInput(ctx, uniform(r, 2, testShape.DIn), PackingLatency, testShape)
	if err != nil {
		t.Fatal(err)
	}

	nan := testAdapter(r, testShape)
	nan.A[0][3] = math.NaN()
	ragged := testAdapter(r, testShape)
	ragged.B[5] = ragged.B[5][:2]
	for _, tc := range []struct {
		name   string
		module string
		ad     Adapter
		want   string
	}{
		{"nan weight", "m", nan, "A row 0: element 3 is not finite"},
		{"ragged B", "m", ragged, "B row 5 has 2 columns"},
		{"zero scale", "m", Adapter{A: good.A, B: good.B}, "scale must be finite and non-zero"},
		{"bad module name", "../etc", good, "module name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := f.ev.RegisterAdapter(tc.module, tc.ad); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want error containing %q", err, tc.want)
			}
		})
	}

	// Unknown module, other keys, a shape without latency keys.
	if _, err := f.ev.Delta(ctx, "missing", in); !errors.Is(err, ErrUnknownAdapter) {
		t.Fatalf("unknown module: %v", err)
	}
	other := *in
	other.KeyID = "hek_" + strings.Repeat("f", 32)
	if _, err := f.ev.Delta(ctx, "ok", &other); !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("other key: %v", err)
	}
	wide := LoRAShape{DIn: testShape.DIn, DOut: 300, Rank: 4}
	if err := f.ev.RegisterAdapter("wide", testAdapter(r, wide)); err != nil {
		t.Fatal(err)
	}
	win, err := f.client.EncryptLoRAInput(ctx, uniform(r, 1, wide.DIn), PackingLatency, wide)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ev.Delta(ctx, "wide", win); !errors.Is(err, ErrMissingKeys) {
		t.Fatalf("latency shape without keys: %v", err)
	}
	// The same adapter works in the throughput packing, which needs no keys.
	tin, err := f.client.EncryptLoRAInput(ctx, uniform(r, 1, wide.DIn), PackingThroughput, wide)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ev.Delta(ctx, "wide", tin); err != nil {
		t.Fatalf("throughput packing: %v", err)
	}
	// Wrong dimension for the adapter.
	small, err := f.client.EncryptLoRAInput(ctx, uniform(r, 1, 16), PackingThroughput, LoRAShape{DIn: 16, DOut: 16, Rank: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ev.Delta(ctx, "ok", small); err == nil || !strings.Contains(err.Error(), "d_in=96") {
		t.Fatalf("wrong dim: %v", err)
	}
	// A ciphertext at the wrong level.
	lvl := *in
	lvl.Ciphertexts = append(lvl.Ciphertexts[:0:0], f.ev.eval.DropLevelNew(in.Ciphertexts[0], 1))
	if _, err := f.ev.Delta(ctx, "ok", &lvl); err == nil || !strings.Contains(err.Error(), "level") {
		t.Fatalf("wrong level: %v", err)
	}

	// Models: too deep, width not among the capabilities, bad activation.
	deep := &MLP{}
	for range 4 {
		deep.Layers = append(deep.Layers, Layer{W: randMat(r, 20, 20, 0.1), Act: Activation{Kind: ActSquare}})
	}
	if err := f.ev.RegisterModel("deep", deep, ProfileFull, 0); err == nil || !strings.Contains(err.Error(), "need depth 8") {
		t.Fatalf("too deep: %v", err)
	}
	big := &MLP{Layers: []Layer{{W: randMat(r, 100, 100, 0.1), Act: Activation{Kind: ActNone}}}}
	if err := f.ev.RegisterModel("big", big, ProfileFull, 0); !errors.Is(err, ErrMissingKeys) {
		t.Fatalf("width without keys: %v", err)
	}
	bad := &MLP{Layers: []Layer{{W: randMat(r, 4, 4, 0.1), Act: Activation{Kind: "relu"}}}}
	if err := f.ev.RegisterModel("bad", bad, ProfileFull, 0); err == nil || !strings.Contains(err.Error(), "unknown activation") {
		t.Fatalf("relu: %v", err)
	}
	if err := f.ev.RegisterModel("h", testMLP, ProfileHybrid, 3); err == nil || !strings.Contains(err.Error(), "hybrid") {
		t.Fatalf("hybrid with 3 of 2 layers: %v", err)
	}
	if _, err := f.ev.Infer(ctx, "nope", in); !errors.Is(err, ErrUnknownModel) {
		t.Fatalf("unknown model: %v", err)
	}
}

func TestPolyActivation(t *testing.T) {
	f := getFixture(t)
	ctx := context.Background()
	r := newRand(33)
	// A degree-3 approximation of a smooth activation (0.5 + 0.197x − 0.004x³,
	// the logistic sigmoid fit used in HE literature).
	m := &MLP{Layers: []Layer{
		{W: randMat(r, 24, 20, 0.3), Bias: randVec(r, 24, 0.1), Act: Activation{Kind: ActPoly, Coeffs: []float64{0.5, 0.197, 0, -0.004}}},
		{W: randMat(r, 10, 24, 0.3), Act: Activation{Kind: ActNone}},
	}}
	if err := f.ev.RegisterModel("poly", m, ProfileFull, 0); err != nil {
		t.Fatal(err)
	}
	x := uniform(r, 7, 20)
	in, err := f.client.EncryptModelInput(ctx, x, m.Width(2))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := evalDecrypt(t, f.client, in, func(ctx context.Context, in *Batch) (*Batch, error) { return f.ev.Infer(ctx, "poly", in) })
	if d := maxAbsDiff(t, got, plainRows(x, m.Forward)); d > 1e-3 {
		t.Fatalf("poly activation MLP error %g > 1e-3", d)
	}
}
