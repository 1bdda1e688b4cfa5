package he

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"time"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
)

// BenchConfig sizes a benchmark run (tensafe he bench).
type BenchConfig struct {
	Preset string // parameter preset; "" means DefaultPreset
	D      int    // LoRA d_in = d_out; 0 means 4096
	Rank   int    // LoRA rank; 0 means 16
	// LatencyCiphertexts is how many ciphertexts the latency packing runs;
	// 0 means 4.
	LatencyCiphertexts int
	// Workers bounds parallelism; 0 means GOMAXPROCS.
	Workers int
}

// BenchResult is one measured operation.
type BenchResult struct {
	Name    string  `json:"name"`
	Count   int     `json:"count"`    // operations timed
	TotalMS float64 `json:"total_ms"` // wall time for all of them
	PerOpMS float64 `json:"per_op_ms"`
	Unit    string  `json:"unit"`            // what one op is
	Bytes   int     `json:"bytes,omitempty"` // size of one op's output, where meaningful
	Note    string  `json:"note,omitempty"`
}

// BenchReport is a full run.
type BenchReport struct {
	Params     string        `json:"params"`
	D          int           `json:"d"`
	Rank       int           `json:"rank"`
	Workers    int           `json:"workers"`
	GOMAXPROCS int           `json:"gomaxprocs"`
	Results    []BenchResult `json:"results"`
}

// Bench measures key generation, encryption, decryption, the LoRA delta in
// both packings, private inference of a 2-layer MLP and serialization, with
// real keys and ciphertexts. progress, if not nil, is told what runs next.
func Bench(ctx context.Context, cfg BenchConfig, progress func(string)) (*BenchReport, error) {
	if cfg.Preset == "" {
		cfg.Preset = DefaultPreset
	}
	if cfg.D == 0 {
		cfg.D = 4096
	}
	if cfg.Rank == 0 {
		cfg.Rank = 16
	}
	if cfg.LatencyCiphertexts == 0 {
		cfg.LatencyCiphertexts = 4
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	say := func(s string) {
		if progress != nil {
			progress(s)
		}
	}
	p, err := Preset(cfg.Preset)
	if err != nil {
		return nil, err
	}
	shape := LoRAShape{DIn: cfg.D, DOut: cfg.D, Rank: cfg.Rank}
	if err := shape.validate(); err != nil {
		return nil, err
	}
	r := rand.New(rand.NewPCG(1, 2))
	mlp := &MLP{Layers: []Layer{
		{W: benchMat(r, 64, 64, 0.1), Bias: benchVec(r, 64, 0.1), Act: Activation{Kind: ActSquare}},
		{W: benchMat(r, 10, 64, 0.1), Bias: benchVec(r, 10, 0.1), Act: Activation{Kind: ActNone}},
	}}
	caps := Capabilities{MLPWidths: []int{mlp.Width(2)}}
	if n, _ := shape.latencyWidth(); n <= p.Slots() {
		caps.LoRA = []LoRAShape{shape}
	}
	rep := &BenchReport{Params: p.String(), D: cfg.D, Rank: cfg.Rank, Workers: cfg.Workers, GOMAXPROCS: runtime.GOMAXPROCS(0)}
	add := func(name string, n int, total time.Duration, unit string, bytes int, note string) {
		ms := float64(total) / float64(time.Millisecond)
		rep.Results = append(rep.Results, BenchResult{Name: name, Count: n, TotalMS: ms, PerOpMS: ms / float64(n), Unit: unit, Bytes: bytes, Note: note})
	}

	say("key generation")
	start := time.Now()
	ck, evk, err := GenerateKeys(ctx, p, caps)
	if err != nil {
		return nil, err
	}
	add("keygen", 1, time.Since(start), "key set", evk.Size(), fmt.Sprintf("%d Galois keys, relin=%v", len(evk.Galois), evk.Relin != nil))
	client := NewClient(ck)
	client.Workers = cfg.Workers
	ev, err := NewEvaluator(evk)
	if err != nil {
		return nil, err
	}
	ev.Workers = cfg.Workers
	ad := Adapter{A: benchMat(r, cfg.Rank, cfg.D, 0.02), B: benchMat(r, cfg.D, cfg.Rank, 0.02), Scale: 2}
	if err := ev.RegisterAdapter("bench", ad); err != nil {
		return nil, err
	}

	// Encrypt / decrypt: a pool of feature-major ciphertexts, each carrying
	// 2·slots tokens of one feature.
	tokens := 2 * p.Slots()
	const pool = 32
	x := make([][]float64, tokens)
	for t := range x {
		x[t] = benchUniform(r, pool)
	}
	say("encrypt")
	start = time.Now()
	cts, err := client.EncryptFeatures(ctx, x, 0, pool)
	if err != nil {
		return nil, err
	}
	ctBytes := cts[0].BinarySize()
	add("encrypt", pool, time.Since(start), "ciphertext", ctBytes, fmt.Sprintf("level %d, %d workers", cts[0].Level(), cfg.Workers))
	say("decrypt")
	start = time.Now()
	for _, ct := range cts {
		if _, err := client.DecryptFeature(ct, tokens); err != nil {
			return nil, err
		}
	}
	add("decrypt", pool, time.Since(start), "ciphertext", 0, "1 worker")

	// Throughput delta over one full group: d_in inputs (cycled from the
	// pool: the cost does not depend on the values), d_out outputs.
	say(fmt.Sprintf("delta feature-major d=%d r=%d over %d tokens", cfg.D, cfg.Rank, tokens))
	var outBytes int
	start = time.Now()
	err = ev.DeltaStream(ctx, "bench",
		func(i int) (*rlwe.Ciphertext, error) { return cts[i%pool], nil },
		func(c int, ct *rlwe.Ciphertext) error { outBytes = ct.BinarySize(); return nil })
	if err != nil {
		return nil, err
	}
	el := time.Since(start)
	add("delta_feature_major", tokens, el, "token", 0, fmt.Sprintf("%d ciphertexts in, %d out (%d B each); %.0f ms per %d tokens", cfg.D, cfg.D, outBytes, float64(el)/1e6, tokens))

	// Latency delta.
	if len(caps.LoRA) > 0 {
		n, _ := shape.latencyWidth()
		lx := make([][]float64, 2*(p.Slots()/n)*cfg.LatencyCiphertexts)
		for t := range lx {
			lx[t] = benchUniform(r, cfg.D)
		}
		in, err := client.EncryptLoRAInput(ctx, lx, PackingLatency, shape)
		if err != nil {
			return nil, err
		}
		say("delta interleaved (1 worker, latency)")
		ev.Workers = 1
		start = time.Now()
		if _, err := ev.Delta(ctx, "bench", in); err != nil {
			return nil, err
		}
		el := time.Since(start)
		ev.Workers = cfg.Workers
		add("delta_interleaved", len(in.Ciphertexts), el, "ciphertext", 0, fmt.Sprintf("%d tokens per ciphertext, 1 worker", len(lx)/len(in.Ciphertexts)))
		say("delta interleaved (all workers)")
		start = time.Now()
		if _, err := ev.Delta(ctx, "bench", in); err != nil {
			return nil, err
		}
		add("delta_interleaved_parallel", len(in.Ciphertexts), time.Since(start), "ciphertext", 0, fmt.Sprintf("%d workers", cfg.Workers))
		// The latency of a request with one ciphertext: its evaluation
		// split across all workers (latency.go), five times.
		say("delta interleaved (one ciphertext, all workers)")
		one := *in
		one.Ciphertexts = in.Ciphertexts[:1]
		one.Layout.Tokens = min(in.Layout.Tokens, 2*(p.Slots()/n))
		const reps = 5
		start = time.Now()
		for range reps {
			if _, err := ev.Delta(ctx, "bench", &one); err != nil {
				return nil, err
			}
		}
		add("delta_interleaved_one", reps, time.Since(start), "ciphertext", 0, fmt.Sprintf("one ciphertext (%d tokens) split across %d workers, %d runs", one.Layout.Tokens, cfg.Workers, reps))
	}

	// Private inference: 2-layer MLP 64→64 (x²)→10, full profile.
	say("private inference")
	if err := ev.RegisterModel("bench-mlp", mlp, ProfileFull, 0); err != nil {
		return nil, err
	}
	w := mlp.Width(2)
	prompt := make([][]float64, p.Slots()/w)
	for t := range prompt {
		prompt[t] = benchUniform(r, 64)
	}
	mIn, err := client.EncryptModelInput(ctx, prompt, w)
	if err != nil {
		return nil, err
	}
	ev.Workers = 1
	start = time.Now()
	mout, err := ev.Infer(ctx, "bench-mlp", mIn)
	if err != nil {
		return nil, err
	}
	add("inference_mlp_2layer", 1, time.Since(start), "prompt", 0, fmt.Sprintf("%d tokens × 64 features in one ciphertext, 1 worker", len(prompt)))
	ev.Workers = cfg.Workers
	if _, err := client.Decrypt(ctx, mout); err != nil {
		return nil, err
	}

	// Serialization of the feature-major pool.
	batch := &Batch{KeyID: ck.ID(), Params: p, Layout: Layout{Packing: PackingThroughput, Dim: pool, Tokens: tokens}, Ciphertexts: cts}
	say("serialization")
	start = time.Now()
	raw := make([][]byte, pool)
	for i, ct := range cts {
		if raw[i], err = MarshalCiphertext(ct); err != nil {
			return nil, err
		}
	}
	add("marshal_binary", pool, time.Since(start), "ciphertext", len(raw[0]), "")
	start = time.Now()
	for _, b := range raw {
		if _, err := UnmarshalCiphertext(p, b, 0); err != nil {
			return nil, err
		}
	}
	add("unmarshal_binary", pool, time.Since(start), "ciphertext", len(raw[0]), "validated")
	for _, c := range []Compression{CompressionNone, CompressionDeflate} {
		start = time.Now()
		bu, err := NewBundle(KindLoRAInput, batch, c)
		if err != nil {
			return nil, err
		}
		newT := time.Since(start)
		for _, f := range []struct {
			name   string
			enc    func(*Bundle) ([]byte, error)
			decode func([]byte, Limits) (*Bundle, error)
		}{{"json", EncodeBundleJSON, DecodeBundleJSON}, {"cbor", EncodeBundleCBOR, DecodeBundleCBOR}} {
			t0 := time.Now()
			data, err := f.enc(bu)
			if err != nil {
				return nil, err
			}
			encT := newT + time.Since(t0) // marshal, compress, hash, encode
			t0 = time.Now()
			b2, err := f.decode(data, DefaultLimits())
			if err != nil {
				return nil, err
			}
			if _, err := b2.Batch(p, DefaultLimits()); err != nil {
				return nil, err
			}
			decT := time.Since(t0)
			add("bundle_"+f.name+"_"+string(c)+"_encode", pool, encT, "ciphertext", len(data)/pool, "")
			add("bundle_"+f.name+"_"+string(c)+"_decode", pool, decT, "ciphertext", len(data)/pool, "parse, inflate, validate, hash")
		}
	}
	return rep, nil
}

func benchMat(r *rand.Rand, rows, cols int, std float64) [][]float64 {
	m := make([][]float64, rows)
	for i := range m {
		m[i] = benchVec(r, cols, std)
	}
	return m
}

func benchVec(r *rand.Rand, n int, std float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = r.NormFloat64() * std
	}
	return v
}

func benchUniform(r *rand.Rand, n int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = 2*r.Float64() - 1
	}
	return v
}
