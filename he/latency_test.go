package he

import (
	"context"
	"sync"
	"testing"

	"github.com/tuneinsight/lattigo/v6/circuits/ckks/lintrans"
	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/schemes/ckks"
)

func shallowCopies(ev *ckks.Evaluator, n int) []*ckks.Evaluator {
	evs := make([]*ckks.Evaluator, n)
	for i := range evs {
		evs[i] = ev.ShallowCopy()
	}
	return evs
}

// The multi-worker rotation is Lattigo's Rotate, bit for bit, at every level
// and for any number of workers.
func TestRotateAddParallelMatchesLattigo(t *testing.T) {
	f := getFixture(t)
	ctx := context.Background()
	in, err := f.client.EncryptLoRAInput(ctx, uniform(newRand(31), 2, testShape.DIn), PackingLatency, testShape)
	if err != nil {
		t.Fatal(err)
	}
	n, rp := testShape.latencyWidth()
	k := rp * f.params.Slots() / n
	ref := f.ev.eval.ShallowCopy()
	for _, level := range []int{3, 2, 1} {
		for _, workers := range []int{1, 2, 3, 5} {
			ct := in.Ciphertexts[0].CopyNew()
			ref.DropLevel(ct, ct.Level()-level)
			want := ct.CopyNew()
			tmp := rlwe.NewCiphertext(f.params.p, 1, level)
			if err := ref.Rotate(want, k, tmp); err != nil {
				t.Fatal(err)
			}
			if err := ref.Add(want, tmp, want); err != nil {
				t.Fatal(err)
			}
			pw := newParWork(shallowCopies(f.ev.eval, workers))
			if err := pw.rotateAddInPlace(ct, k); err != nil {
				t.Fatal(err)
			}
			for p := range 2 {
				if !ct.Value[p].Equal(&want.Value[p]) {
					t.Fatalf("level %d, %d workers: polynomial %d differs from Lattigo's Rotate+Add", level, workers, p)
				}
			}
			if !ct.Scale.Equal(want.Scale) || ct.Level() != want.Level() {
				t.Fatalf("level %d, %d workers: metadata %v/%d, want %v/%d", level, workers, ct.Scale, ct.Level(), want.Scale, want.Level())
			}
		}
	}
	pw := newParWork(shallowCopies(f.ev.eval, 2))
	if err := pw.rotateAddInPlace(in.Ciphertexts[0].CopyNew(), 7); err == nil {
		t.Fatal("rotation without a Galois key accepted")
	}
}

// The whole latency delta on any number of workers is the one-core
// Lattigo evaluation, bit for bit.
func TestLoRALatencyParMatchesLattigo(t *testing.T) {
	f := getFixture(t)
	ctx := context.Background()
	ev, err := NewEvaluator(f.evk)
	if err != nil {
		t.Fatal(err)
	}
	r := newRand(43)
	if err := ev.RegisterAdapter("m", Adapter{A: randMat(r, testShape.Rank, testShape.DIn, 0.1), B: randMat(r, testShape.DOut, testShape.Rank, 0.1), Scale: 3}); err != nil {
		t.Fatal(err)
	}
	ad := ev.adapters["m"]
	in, err := f.client.EncryptLoRAInput(ctx, uniform(r, 2, testShape.DIn), PackingLatency, testShape)
	if err != nil {
		t.Fatal(err)
	}
	P := f.params.Slots() / ad.width
	want, err := loraLatencyOne(ev.eval.ShallowCopy(), ad, P, in.Ciphertexts[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, workers := range []int{1, 2, 3} {
		got, err := loraLatencyPar(newParWork(shallowCopies(ev.eval, workers)), ad, P, in.Ciphertexts[0])
		if err != nil {
			t.Fatal(err)
		}
		if got.Level() != want.Level() || !got.Scale.Equal(want.Scale) {
			t.Fatalf("%d workers: level %d scale %v, want %d %v", workers, got.Level(), got.Scale, want.Level(), want.Scale)
		}
		for p := range 2 {
			if !got.Value[p].Equal(&want.Value[p]) {
				t.Fatalf("%d workers: polynomial %d differs", workers, p)
			}
		}
	}
}

// One ciphertext split across workers gives the delta of the one-core path.
func TestDeltaLatencyWorkers(t *testing.T) {
	f := getFixture(t)
	ctx := context.Background()
	r := newRand(77)
	ad := Adapter{A: randMat(r, testShape.Rank, testShape.DIn, 0.1), B: randMat(r, testShape.DOut, testShape.Rank, 0.1), Scale: 2}
	x := uniform(r, 3, testShape.DIn)
	in, err := f.client.EncryptLoRAInput(ctx, x, PackingLatency, testShape)
	if err != nil {
		t.Fatal(err)
	}
	want := plainRows(x, ad.Apply)
	var first [][]float64
	for _, workers := range []int{1, 2, 3, 4} {
		ev, err := NewEvaluator(f.evk)
		if err != nil {
			t.Fatal(err)
		}
		ev.Workers = workers
		if err := ev.RegisterAdapter("q", ad); err != nil {
			t.Fatal(err)
		}
		out, err := ev.Delta(ctx, "q", in)
		if err != nil {
			t.Fatalf("%d workers: %v", workers, err)
		}
		got, err := f.client.Decrypt(ctx, out)
		if err != nil {
			t.Fatal(err)
		}
		if d := maxAbsDiff(t, got, want); d > 1e-4 {
			t.Fatalf("%d workers: max error %g > 1e-4", workers, d)
		}
		if first == nil {
			first = got
		} else if d := maxAbsDiff(t, got, first); d > 1e-6 {
			t.Fatalf("%d workers: differs from 1 worker by %g", workers, d)
		}
	}
}

// TestLoRALatencyD4096R16 is the correctness bar for the latency
// packing: d = 4096, r = 16, one ciphertext (two tokens), on one worker and
// split across two and three; the decrypted delta is within 1e-4 of the
// plaintext.
func TestLoRALatencyD4096R16(t *testing.T) {
	ctx := context.Background()
	p, err := Preset(DefaultPreset)
	if err != nil {
		t.Fatal(err)
	}
	shape := LoRAShape{DIn: 4096, DOut: 4096, Rank: 16}
	ck, evk, err := GenerateKeys(ctx, p, Capabilities{LoRA: []LoRAShape{shape}})
	if err != nil {
		t.Fatal(err)
	}
	r := newRand(4097)
	ad := Adapter{A: randMat(r, 16, 4096, 0.02), B: randMat(r, 4096, 16, 0.02), Scale: 2}
	c := NewClient(ck)
	x := uniform(r, 2, 4096)
	in, err := c.EncryptLoRAInput(ctx, x, PackingLatency, shape)
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Ciphertexts) != 1 {
		t.Fatalf("%d ciphertexts, want 1", len(in.Ciphertexts))
	}
	want := [][]float64{ad.Apply(x[0]), ad.Apply(x[1])}
	for _, workers := range []int{1, 2, 3} {
		ev, err := NewEvaluator(evk)
		if err != nil {
			t.Fatal(err)
		}
		ev.Workers = workers
		if err := ev.RegisterAdapter("d4096", ad); err != nil {
			t.Fatal(err)
		}
		out, err := ev.Delta(ctx, "d4096", in)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Decrypt(ctx, out)
		if err != nil {
			t.Fatal(err)
		}
		d := maxAbsDiff(t, got, want)
		t.Logf("%d workers: max |delta - plaintext| = %.3e", workers, d)
		if d > 1e-4 {
			t.Fatalf("%d workers: max error %g > 1e-4", workers, d)
		}
	}
}

// The multi-worker BSGS product is Lattigo's, bit for bit, for A (level 3)
// and B (level 2) and any number of workers.
func TestBSGSParallelMatchesLattigo(t *testing.T) {
	f := getFixture(t)
	ctx := context.Background()
	ev, err := NewEvaluator(f.evk)
	if err != nil {
		t.Fatal(err)
	}
	r := newRand(41)
	if err := ev.RegisterAdapter("m", Adapter{A: randMat(r, testShape.Rank, testShape.DIn, 0.1), B: randMat(r, testShape.DOut, testShape.Rank, 0.1), Scale: 1}); err != nil {
		t.Fatal(err)
	}
	ad := ev.adapters["m"]
	in, err := f.client.EncryptLoRAInput(ctx, uniform(r, 2, testShape.DIn), PackingLatency, testShape)
	if err != nil {
		t.Fatal(err)
	}
	ref := ev.eval.ShallowCopy()
	lin := lintrans.NewEvaluator(ref)
	for _, tc := range []struct {
		name string
		lt   *lintrans.LinearTransformation
		drop int
	}{{"A", ad.ltA, 0}, {"B", ad.ltB, 1}} {
		ct := in.Ciphertexts[0].CopyNew()
		ref.DropLevel(ct, tc.drop)
		want, err := lin.EvaluateNew(ct, *tc.lt)
		if err != nil {
			t.Fatal(err)
		}
		for _, workers := range []int{1, 2, 3} {
			got, err := newParWork(shallowCopies(ev.eval, workers)).bsgs(ct, tc.lt)
			if err != nil {
				t.Fatalf("%s, %d workers: %v", tc.name, workers, err)
			}
			if got.Level() != want.Level() || !got.Scale.Equal(want.Scale) {
				t.Fatalf("%s, %d workers: level %d scale %v, want %d %v", tc.name, workers, got.Level(), got.Scale, want.Level(), want.Scale)
			}
			for p := range 2 {
				if !got.Value[p].Equal(&want.Value[p]) {
					t.Fatalf("%s, %d workers: polynomial %d differs from Lattigo's", tc.name, workers, p)
				}
			}
		}
	}
}

// Concurrent one-ciphertext requests on one Evaluator share its pool of
// split evaluations safely (run with -race).
func TestDeltaLatencyConcurrent(t *testing.T) {
	f := getFixture(t)
	ctx := context.Background()
	r := newRand(91)
	ad := Adapter{A: randMat(r, testShape.Rank, testShape.DIn, 0.1), B: randMat(r, testShape.DOut, testShape.Rank, 0.1), Scale: 1}
	ev, err := NewEvaluator(f.evk)
	if err != nil {
		t.Fatal(err)
	}
	ev.Workers = 2
	if err := ev.RegisterAdapter("c", ad); err != nil {
		t.Fatal(err)
	}
	const callers = 4
	xs := make([][][]float64, callers)
	ins := make([]*Batch, callers)
	for i := range xs {
		xs[i] = uniform(r, 2, testShape.DIn)
		if ins[i], err = f.client.EncryptLoRAInput(ctx, xs[i], PackingLatency, testShape); err != nil {
			t.Fatal(err)
		}
	}
	outs := make([]*Batch, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				outs[i], errs[i] = ev.Delta(ctx, "c", ins[i])
				if errs[i] != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	for i := range callers {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		got, err := f.client.Decrypt(ctx, outs[i])
		if err != nil {
			t.Fatal(err)
		}
		want := [][]float64{ad.Apply(xs[i][0]), ad.Apply(xs[i][1])}
		if d := maxAbsDiff(t, got, want); d > 1e-4 {
			t.Fatalf("caller %d: max error %g", i, d)
		}
	}
}

// With two auxiliary primes (CKKS-N14-QP435) a digit spans two primes: the
// key switches take the digit-parallel path, still Lattigo's result bit for
// bit.
func TestLoRALatencyParMatchesLattigoN14(t *testing.T) {
	if testing.Short() {
		t.Skip("N14 key generation")
	}
	ctx := context.Background()
	p, err := Preset(PresetN14)
	if err != nil {
		t.Fatal(err)
	}
	if p.p.MaxLevelP() < 1 {
		t.Fatalf("%s has %d auxiliary primes, the test needs two", p.name, p.p.MaxLevelP()+1)
	}
	shape := LoRAShape{DIn: 40, DOut: 24, Rank: 3}
	ck, evk, err := GenerateKeys(ctx, p, Capabilities{LoRA: []LoRAShape{shape}})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := NewEvaluator(evk)
	if err != nil {
		t.Fatal(err)
	}
	r := newRand(14)
	ad := Adapter{A: randMat(r, shape.Rank, shape.DIn, 0.1), B: randMat(r, shape.DOut, shape.Rank, 0.1), Scale: 2}
	if err := ev.RegisterAdapter("n14", ad); err != nil {
		t.Fatal(err)
	}
	x := uniform(r, 3, shape.DIn)
	in, err := NewClient(ck).EncryptLoRAInput(ctx, x, PackingLatency, shape)
	if err != nil {
		t.Fatal(err)
	}
	la := ev.adapters["n14"]
	P := p.Slots() / la.width
	want, err := loraLatencyOne(ev.eval.ShallowCopy(), la, P, in.Ciphertexts[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, workers := range []int{1, 2} {
		got, err := loraLatencyPar(newParWork(shallowCopies(ev.eval, workers)), la, P, in.Ciphertexts[0])
		if err != nil {
			t.Fatal(err)
		}
		for q := range 2 {
			if !got.Value[q].Equal(&want.Value[q]) {
				t.Fatalf("%d workers: polynomial %d differs", workers, q)
			}
		}
	}
	ev.Workers = 2
	out, err := ev.Delta(ctx, "n14", in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := NewClient(ck).Decrypt(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	wantPlain := make([][]float64, len(x))
	for i := range x {
		wantPlain[i] = ad.Apply(x[i])
	}
	if d := maxAbsDiff(t, got, wantPlain); d > 1e-4 {
		t.Fatalf("max error %g > 1e-4", d)
	}
}
