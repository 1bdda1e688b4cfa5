package he

import (
	"context"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
)

// Benchmarks at the size: d=4096, r=16, preset CKKS-N13-QP218.
// go test -run '^$' -bench . -benchtime 1x ./he
// tensafe he bench runs the same operations and prints a table.

var (
	benchOnce sync.Once
	benchF    *benchFixture
)

type benchFixture struct {
	ck   *ClientKeys
	c    *Client
	ev   *Evaluator
	cts  []*rlwe.Ciphertext
	lat  *Batch
	mlpI *Batch
}

var benchShape = LoRAShape{DIn: 4096, DOut: 4096, Rank: 16}

var benchMLP = func() *MLP {
	r := newRand(99)
	return &MLP{Layers: []Layer{
		{W: randMat(r, 64, 64, 0.1), Bias: randVec(r, 64, 0.1), Act: Activation{Kind: ActSquare}},
		{W: randMat(r, 10, 64, 0.1), Bias: randVec(r, 10, 0.1), Act: Activation{Kind: ActNone}},
	}}
}()

func getBench(b *testing.B) *benchFixture {
	benchOnce.Do(func() {
		ctx := context.Background()
		p, _ := Preset(DefaultPreset)
		ck, evk, err := GenerateKeys(ctx, p, Capabilities{LoRA: []LoRAShape{benchShape}, MLPWidths: []int{64}})
		if err != nil {
			b.Fatal(err)
		}
		ev, _ := NewEvaluator(evk)
		r := newRand(5)
		if err := ev.RegisterAdapter("bench", Adapter{A: randMat(r, 16, 4096, 0.02), B: randMat(r, 4096, 16, 0.02), Scale: 2}); err != nil {
			b.Fatal(err)
		}
		if err := ev.RegisterModel("mlp", benchMLP, ProfileFull, 0); err != nil {
			b.Fatal(err)
		}
		c := NewClient(ck)
		x := uniform(r, 2*p.Slots(), 32)
		cts, err := c.EncryptFeatures(ctx, x, 0, 32)
		if err != nil {
			b.Fatal(err)
		}
		lat, err := c.EncryptLoRAInput(ctx, uniform(r, 4, 4096), PackingLatency, benchShape)
		if err != nil {
			b.Fatal(err)
		}
		mi, err := c.EncryptModelInput(ctx, uniform(r, 64, 64), 64)
		if err != nil {
			b.Fatal(err)
		}
		benchF = &benchFixture{ck: ck, c: c, ev: ev, cts: cts, lat: lat, mlpI: mi}
	})
	if benchF == nil {
		b.Fatal("bench setup failed")
	}
	return benchF
}

func BenchmarkKeyGen(b *testing.B) {
	p, _ := Preset(DefaultPreset)
	for b.Loop() {
		if _, _, err := GenerateKeys(context.Background(), p, Capabilities{LoRA: []LoRAShape{benchShape}}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncrypt(b *testing.B) {
	f := getBench(b)
	x := uniform(newRand(1), 8192, 1)
	f.c.Workers = 1
	for b.Loop() {
		if _, err := f.c.EncryptFeatures(context.Background(), x, 0, 1); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecrypt(b *testing.B) {
	f := getBench(b)
	for b.Loop() {
		if _, err := f.c.DecryptFeature(f.cts[0], 8192); err != nil {
			b.Fatal(err)
		}
	}
}

// cpuTime is the process's user and system CPU time so far. On a shared
// machine it varies much less with load than wall time does.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDeltaFeatureMajor: one group of 8192 tokens, d=4096, r=16. It
// reports wall time per token and CPU time per token (all workers).
func BenchmarkDeltaFeatureMajor(b *testing.B) {
	f := getBench(b)
	cpu0 := cpuTime()
	defer func() {
		b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N)/8192, "cpu-ms/token")
	}()
	for b.Loop() {
		err := f.ev.DeltaStream(context.Background(), "bench",
			func(i int) (*rlwe.Ciphertext, error) { return f.cts[i%len(f.cts)], nil },
			func(int, *rlwe.Ciphertext) error { return nil })
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N)/8192, "ms/token")
}

// BenchmarkDeltaInterleaved: one ciphertext (2 tokens at d=4096) per op, one worker.
func BenchmarkDeltaInterleaved(b *testing.B) {
	f := getBench(b)
	one := *f.lat
	one.Layout.Tokens = 2
	one.Ciphertexts = f.lat.Ciphertexts[:1]
	f.ev.Workers = 1
	defer func() { f.ev.Workers = 0 }()
	for b.Loop() {
		if _, err := f.ev.Delta(context.Background(), "bench", &one); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDeltaInterleavedSplit: one ciphertext per op, split across
// GOMAXPROCS workers (the latency of a one-ciphertext request).
func BenchmarkDeltaInterleavedSplit(b *testing.B) {
	f := getBench(b)
	one := *f.lat
	one.Layout.Tokens = 2
	one.Ciphertexts = f.lat.Ciphertexts[:1]
	f.ev.Workers = 0
	for b.Loop() {
		if _, err := f.ev.Delta(context.Background(), "bench", &one); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInferenceMLP: 2-layer MLP 64→64 (x²)→10 on one ciphertext (64 tokens).
func BenchmarkInferenceMLP(b *testing.B) {
	f := getBench(b)
	for b.Loop() {
		if _, err := f.ev.Infer(context.Background(), "mlp", f.mlpI); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshalCiphertext(b *testing.B) {
	f := getBench(b)
	var n int
	for b.Loop() {
		raw, err := MarshalCiphertext(f.cts[0])
		if err != nil {
			b.Fatal(err)
		}
		n = len(raw)
	}
	b.ReportMetric(float64(n), "bytes")
}

func BenchmarkUnmarshalCiphertext(b *testing.B) {
	f := getBench(b)
	raw, _ := MarshalCiphertext(f.cts[0])
	p := f.c.keys.params
	for b.Loop() {
		if _, err := UnmarshalCiphertext(p, raw, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBundleCBORDeflate(b *testing.B) {
	f := getBench(b)
	batch := &Batch{KeyID: f.ck.ID(), Params: f.c.keys.params, Layout: Layout{Packing: PackingThroughput, Dim: len(f.cts), Tokens: 8192}, Ciphertexts: f.cts}
	var n int
	for b.Loop() {
		bu, err := NewBundle(KindLoRAInput, batch, CompressionDeflate)
		if err != nil {
			b.Fatal(err)
		}
		data, err := EncodeBundleCBOR(bu)
		if err != nil {
			b.Fatal(err)
		}
		n = len(data)
	}
	b.ReportMetric(float64(n)/float64(len(f.cts)), "bytes/ct")
}
