package he

import (
	"context"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
)

// fixture caches keys across tests: key generation is the slow part.
type fixture struct {
	params Params
	ck     *ClientKeys
	evk    *EvaluationKeys
	client *Client
	ev     *Evaluator
}

var (
	fixOnce sync.Once
	fix     *fixture
	fixErr  error
)

// testShape is small so unit tests stay fast; the d=4096 check is separate.
var testShape = LoRAShape{DIn: 96, DOut: 80, Rank: 6}

var testMLP = func() *MLP {
	r := rand.New(rand.NewPCG(7, 8))
	return &MLP{Layers: []Layer{
		{W: randMat(r, 24, 20, 0.2), Bias: randVec(r, 24, 0.1), Act: Activation{Kind: ActSquare}},
		{W: randMat(r, 10, 24, 0.2), Bias: randVec(r, 10, 0.1), Act: Activation{Kind: ActNone}},
	}}
}()

func getFixture(t testing.TB) *fixture {
	t.Helper()
	fixOnce.Do(func() {
		p, err := Preset(DefaultPreset)
		if err != nil {
			fixErr = err
			return
		}
		caps := Capabilities{LoRA: []LoRAShape{testShape}, MLPWidths: []int{testMLP.Width(2)}}
		ck, evk, err := GenerateKeys(context.Background(), p, caps)
		if err != nil {
			fixErr = err
			return
		}
		ev, err := NewEvaluator(evk)
		if err != nil {
			fixErr = err
			return
		}
		fix = &fixture{params: p, ck: ck, evk: evk, client: NewClient(ck), ev: ev}
	})
	if fixErr != nil {
		t.Fatal(fixErr)
	}
	return fix
}

func randMat(r *rand.Rand, rows, cols int, std float64) [][]float64 {
	m := make([][]float64, rows)
	for i := range m {
		m[i] = randVec(r, cols, std)
	}
	return m
}

func randVec(r *rand.Rand, n int, std float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = r.NormFloat64() * std
	}
	return v
}

func uniform(r *rand.Rand, rows, cols int) [][]float64 {
	m := make([][]float64, rows)
	for i := range m {
		m[i] = make([]float64, cols)
		for j := range m[i] {
			m[i][j] = 2*r.Float64() - 1
		}
	}
	return m
}

func maxAbsDiff(t testing.TB, got, want [][]float64) float64 {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d rows, want %d", len(got), len(want))
	}
	var m float64
	for i := range got {
		if len(got[i]) != len(want[i]) {
			t.Fatalf("row %d: got %d columns, want %d", i, len(got[i]), len(want[i]))
		}
		for j := range got[i] {
			m = math.Max(m, math.Abs(got[i][j]-want[i][j]))
		}
	}
	return m
}

// plainRows applies f to every row of x: the plaintext result an encrypted
// evaluation must match.
func plainRows(x [][]float64, f func([]float64) []float64) [][]float64 {
	out := make([][]float64, len(x))
	for i := range x {
		out[i] = f(x[i])
	}
	return out
}

// evalDecrypt evaluates in with eval and decrypts the result with c,
// failing the test on any error; it also returns the evaluated batch.
func evalDecrypt(t testing.TB, c *Client, in *Batch, eval func(context.Context, *Batch) (*Batch, error)) ([][]float64, *Batch) {
	t.Helper()
	ctx := context.Background()
	out, err := eval(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Decrypt(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	return got, out
}

// delta returns the Delta of module as an evalDecrypt evaluation.
func delta(ev *Evaluator, module string) func(context.Context, *Batch) (*Batch, error) {
	return func(ctx context.Context, in *Batch) (*Batch, error) { return ev.Delta(ctx, module, in) }
}

func testAdapter(r *rand.Rand, s LoRAShape) Adapter {
	return Adapter{A: randMat(r, s.Rank, s.DIn, 0.02), B: randMat(r, s.DOut, s.Rank, 0.02), Scale: 2}
}

func TestLoRADeltaBothPackings(t *testing.T) {
	f := getFixture(t)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(1, 2))
	ad := testAdapter(r, testShape)
	// Make the weights large enough that an error would show.
	for i := range ad.B {
		for j := range ad.B[i] {
			ad.B[i][j] *= 50
		}
	}
	if err := f.ev.RegisterAdapter("layers.0.q_proj", ad); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		packing Packing
		tokens  int
	}{
		{PackingThroughput, 37},
		{PackingLatency, 1},
		{PackingLatency, 130}, // 64 tokens per ciphertext at width 128 → 3 ciphertexts
	} {
		t.Run(string(tc.packing), func(t *testing.T) {
			x := uniform(r, tc.tokens, testShape.DIn)
			in, err := f.client.EncryptLoRAInput(ctx, x, tc.packing, testShape)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := evalDecrypt(t, f.client, in, delta(f.ev, "layers.0.q_proj"))
			if d := maxAbsDiff(t, got, plainRows(x, ad.Apply)); d > 1e-4 {
				t.Fatalf("max |delta - plaintext| = %g > 1e-4", d)
			} else {
				t.Logf("%s, %d tokens, %d ciphertexts: max error %.2e", tc.packing, tc.tokens, len(in.Ciphertexts), d)
			}
		})
	}
}

func TestPrivateInferenceProfiles(t *testing.T) {
	f := getFixture(t)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(3, 4))
	x := uniform(r, 40, testMLP.InputDim())
	for _, tc := range []struct {
		profile Profile
		n       int
	}{
		{ProfileFull, 0},
		{ProfileEncryptedInput, 0},
		{ProfileHybrid, 1},
	} {
		t.Run(string(tc.profile), func(t *testing.T) {
			name := "mlp-" + string(tc.profile)
			if err := f.ev.RegisterModel(name, testMLP, tc.profile, tc.n); err != nil {
				t.Fatal(err)
			}
			info, err := f.ev.Model(name)
			if err != nil {
				t.Fatal(err)
			}
			in, err := f.client.EncryptModelInput(ctx, x, info.Width)
			if err != nil {
				t.Fatal(err)
			}
			out, err := f.ev.Infer(ctx, name, in)
			if err != nil {
				t.Fatal(err)
			}
			h, err := f.client.Decrypt(ctx, out)
			if err != nil {
				t.Fatal(err)
			}
			got := make([][]float64, len(h))
			want := make([][]float64, len(h))
			for i := range h {
				got[i] = testMLP.ForwardFrom(info.HELayers, h[i])
				want[i] = testMLP.Forward(x[i])
			}
			if d := maxAbsDiff(t, got, want); d > 1e-3 {
				t.Fatalf("max |HE - plaintext| = %g > 1e-3", d)
			} else {
				t.Logf("%s (%d HE layers): max error %.2e", tc.profile, info.HELayers, d)
			}
		})
	}
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }
