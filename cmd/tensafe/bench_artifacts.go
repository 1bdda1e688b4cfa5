package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/tensafe/tensafe/benchsuite"
	"github.com/tensafe/tensafe/he"
	"github.com/tensafe/tensafe/model"
	"github.com/tensafe/tensafe/privacy"
	"github.com/tensafe/tensafe/seal"
	"github.com/tensafe/tensafe/tssp"
)

// benchTSSPGroup times packaging a real adapter of tensafe-tiny (LoRA r=8
// on every projection) with a DP certificate: create, sign, verify, open.
func benchTSSPGroup(ctx context.Context, r *benchsuite.Runner, o suiteOptions) error {
	lora, err := model.NewLoRA(model.TinyConfig(), model.LoRAConfig{Rank: 8, Alpha: 16, TargetModules: model.AllModules}, 1)
	if err != nil {
		return err
	}
	cfgJSON, err := lora.PEFTConfigJSON(model.TinyName)
	if err != nil {
		return err
	}
	var weights bytes.Buffer
	if err := lora.WriteSafetensors(&weights); err != nil {
		return err
	}
	sum := sha256.Sum256(weights.Bytes())
	b, err := privacy.NewBudget(privacy.BudgetConfig{TargetEpsilon: 8, Delta: 1e-5})
	if err != nil {
		return err
	}
	for range 100 {
		if err := b.RecordStep(0.01, 1); err != nil {
			return err
		}
	}
	now := time.Now().UTC()
	cert, err := privacy.NewCertificate(b, privacy.CertificateInput{Sampling: privacy.SamplingServerPoisson, DatasetSize: 10000,
		ClippingNorm: 1, TenSafeVersion: version, AdapterHash: "sha256:" + hex.EncodeToString(sum[:]),
		DatasetFingerprint: "sha256:" + hex.EncodeToString(make([]byte, 32)), SessionID: "tc_bench",
		StartedAt: now.Add(-time.Hour), FinishedAt: now, IssuedAt: now})
	if err != nil {
		return err
	}
	certJSON, err := cert.CanonicalJSON()
	if err != nil {
		return err
	}
	signer, err := seal.GenerateSigningKey(nil)
	if err != nil {
		return err
	}
	rk, err := seal.GenerateRecipientKey()
	if err != nil {
		return err
	}
	opts := func() tssp.CreateOptions {
		return tssp.CreateOptions{AdapterConfig: cfgJSON, Weights: bytes.NewReader(weights.Bytes()),
			BaseModel: tssp.BaseModel{Name: model.TinyName}, Certificate: certJSON,
			Evidence: []byte(`{"steps":100,"dataset_fingerprints":["sha256:00"]}`),
			Signer:   signer, Recipients: []*seal.RecipientPublicKey{rk.Public()}}
	}
	var pkg bytes.Buffer
	if _, err := tssp.Create(ctx, &pkg, opts()); err != nil {
		return err
	}
	r.Param("tssp", fmt.Sprintf("tensafe-tiny LoRA r=8 on all projections: %d-byte adapter, %d-byte package, 1 recipient, DP certificate",
		weights.Len(), pkg.Len()))
	n := iters(o, 50, 200)
	spec := func(name, original, note string) benchsuite.Spec {
		return benchsuite.Spec{Group: "tssp", Name: name, Original: original, N: n, Unit: "package", Note: note, MaxTime: 30 * time.Second}
	}
	if _, err := r.Measure(ctx, spec("create_package", "create_package",
		"fresh DEK, AES-256-GCM weights, X-Wing to the recipient, canonical manifest, hybrid signature, USTAR"),
		func(ctx context.Context) error {
			var buf bytes.Buffer
			_, err := tssp.Create(ctx, &buf, opts())
			return err
		}); err != nil {
		return err
	}
	p, err := tssp.Read(bytes.NewReader(pkg.Bytes()), int64(pkg.Len()))
	if err != nil {
		return err
	}
	mj := p.ManifestJSON()
	if _, err := r.Measure(ctx, spec("sign_manifest", "sign_manifest", fmt.Sprintf("hybrid Ed25519 + ML-DSA-65 over the %d-byte manifest", len(mj))),
		func(context.Context) error { _, err := signer.Sign(tssp.SignatureContext, mj); return err }); err != nil {
		return err
	}
	trusted := []*seal.VerifyingKey{signer.Public()}
	if _, err := r.Measure(ctx, spec("verify_signature (read + verify)", "verify_signature",
		"parse the archive, verify both signatures and every member's SHA-256"),
		func(ctx context.Context) error {
			p, err := tssp.Read(bytes.NewReader(pkg.Bytes()), int64(pkg.Len()))
			if err != nil {
				return err
			}
			return p.Verify(ctx, trusted)
		}); err != nil {
		return err
	}
	_, err = r.Measure(ctx, spec("open_package (verify + decrypt)", "", "the edge loader: verify, X-Wing open, decrypt and hash-check in memory"),
		func(ctx context.Context) error {
			p, err := tssp.Read(bytes.NewReader(pkg.Bytes()), int64(pkg.Len()))
			if err != nil {
				return err
			}
			a, err := tssp.Load(ctx, p, trusted, tssp.RecipientIdentity(rk))
			if err != nil {
				return err
			}
			if !bytes.Equal(a.Weights, weights.Bytes()) {
				return fmt.Errorf("opened weights differ")
			}
			return nil
		})
	return err
}

// benchHEGroup times CKKS (Lattigo v6, 128-bit parameters) as the HE
// runtime uses it, one operation at a time.
func benchHEGroup(ctx context.Context, r *benchsuite.Runner, o suiteOptions) error {
	p, err := he.Preset(he.DefaultPreset)
	if err != nil {
		return err
	}
	const d, rank = 4096, 16 // the original's rank; d of a 7–8B model's attention
	rng := rand.New(rand.NewPCG(3, 4))
	mat := func(rows, cols int, std float64) [][]float64 {
		m := make([][]float64, rows)
		for i := range m {
			m[i] = vec(rng, cols, std)
		}
		return m
	}
	shape := he.LoRAShape{DIn: d, DOut: d, Rank: rank}
	mlp := &he.MLP{Layers: []he.Layer{
		{W: mat(64, 64, 0.1), Bias: vec(rng, 64, 0.1), Act: he.Activation{Kind: he.ActSquare}},
		{W: mat(10, 64, 0.1), Bias: vec(rng, 10, 0.1), Act: he.Activation{Kind: he.ActNone}},
	}}
	caps := he.Capabilities{LoRA: []he.LoRAShape{shape}, MLPWidths: []int{mlp.Width(2)}}
	r.Param("he", fmt.Sprintf("%s; LoRA d_in=d_out=%d rank %d; MLP 64→64 (x²)→10", p.String(), d, rank))
	var ck *he.ClientKeys
	var evk *he.EvaluationKeys
	if _, err := r.Measure(ctx, benchsuite.Spec{Group: "he", Name: "keygen (secret + evaluation keys)", Original: "he_key_bundle",
		N: iters(o, 2, 5), Warmup: -1, Unit: "key set", Note: "CKKS secret, public, relinearization and the Galois keys the capabilities need (original: LWE)"},
		func(ctx context.Context) error {
			var err error
			ck, evk, err = he.GenerateKeys(ctx, p, caps)
			return err
		}); err != nil {
		return err
	}
	client := he.NewClient(ck)
	client.Workers = 1
	ev, err := he.NewEvaluator(evk)
	if err != nil {
		return err
	}
	ev.Workers = 1
	for _, m := range []string{"q_proj", "k_proj", "v_proj", "o_proj"} {
		if err := ev.RegisterAdapter(m, he.Adapter{A: mat(rank, d, 0.02), B: mat(d, rank, 0.02), Scale: 2}); err != nil {
			return err
		}
	}
	n := iters(o, 20, 100)
	spec := func(name, original string, n int, unit, note string) benchsuite.Spec {
		return benchsuite.Spec{Group: "he", Name: name, Original: original, N: n, Unit: unit, Note: note, MaxTime: 40 * time.Second}
	}
	tokens := 2 * p.Slots()
	x := make([][]float64, tokens)
	for t := range x {
		x[t] = vec(rng, 1, 1)
	}
	cts, err := client.EncryptFeatures(ctx, x, 0, 1)
	if err != nil {
		return err
	}
	if _, err := r.Measure(ctx, spec("encrypt", "he_encrypt", n, "ciphertext", fmt.Sprintf("%d values (one feature of %d tokens), public key", tokens, tokens)),
		func(ctx context.Context) error { _, err := client.EncryptFeatures(ctx, x, 0, 1); return err }); err != nil {
		return err
	}
	if _, err := r.Measure(ctx, spec("decrypt", "he_decrypt", n, "ciphertext", "decrypt and decode"),
		func(context.Context) error { _, err := client.DecryptFeature(cts[0], tokens); return err }); err != nil {
		return err
	}
	lx := make([][]float64, 8)
	for t := range lx {
		lx[t] = vec(rng, d, 1)
	}
	in, err := client.EncryptLoRAInput(ctx, lx, he.PackingLatency, shape)
	if err != nil {
		return err
	}
	if _, err := r.Measure(ctx, spec("lora_delta (1 adapter, latency packing)", "he_lora_delta", iters(o, 5, 20),
		fmt.Sprintf("%d ciphertext(s), %d tokens", len(in.Ciphertexts), len(lx)), fmt.Sprintf("B·A·x on ciphertexts, rank %d, d=%d, 1 worker", rank, d)),
		func(ctx context.Context) error { _, err := ev.Delta(ctx, "q_proj", in); return err }); err != nil {
		return err
	}
	if _, err := r.Measure(ctx, spec("lora_forward (4 adapters)", "he_lora_forward", iters(o, 3, 10),
		fmt.Sprintf("%d tokens through q, k, v, o", len(lx)), "DeltaMany, 1 worker"),
		func(ctx context.Context) error {
			_, err := ev.DeltaMany(ctx, []string{"q_proj", "k_proj", "v_proj", "o_proj"}, in)
			return err
		}); err != nil {
		return err
	}
	if err := ev.RegisterModel("bench-mlp", mlp, he.ProfileFull, 0); err != nil {
		return err
	}
	w := mlp.Width(2)
	prompt := make([][]float64, p.Slots()/w)
	for t := range prompt {
		prompt[t] = vec(rng, 64, 1)
	}
	mIn, err := client.EncryptModelInput(ctx, prompt, w)
	if err != nil {
		return err
	}
	if _, err := r.Measure(ctx, spec("private_inference (2-layer MLP)", "he_private_inference", iters(o, 3, 10),
		fmt.Sprintf("prompt of %d tokens × 64 features in one ciphertext", len(prompt)), "64→64 (x²)→10 on ciphertexts, 1 worker"),
		func(ctx context.Context) error { _, err := ev.Infer(ctx, "bench-mlp", mIn); return err }); err != nil {
		return err
	}
	raw, err := he.MarshalCiphertext(cts[0])
	if err != nil {
		return err
	}
	if _, err := r.Measure(ctx, spec("serialize_binary", "he_serialize_binary", n, fmt.Sprintf("%d-byte ciphertext", len(raw)), ""),
		func(context.Context) error { _, err := he.MarshalCiphertext(cts[0]); return err }); err != nil {
		return err
	}
	if _, err := r.Measure(ctx, spec("deserialize_binary", "he_deserialize_binary", n, fmt.Sprintf("%d-byte ciphertext", len(raw)), "validated"),
		func(context.Context) error { _, err := he.UnmarshalCiphertext(p, raw, 0); return err }); err != nil {
		return err
	}
	b64, err := he.EncodeCiphertextBase64(cts[0])
	if err != nil {
		return err
	}
	if _, err := r.Measure(ctx, spec("serialize_base64", "he_serialize_base64", n, fmt.Sprintf("%d-character text", len(b64)), ""),
		func(context.Context) error { _, err := he.EncodeCiphertextBase64(cts[0]); return err }); err != nil {
		return err
	}
	if _, err = r.Measure(ctx, spec("deserialize_base64", "", n, fmt.Sprintf("%d-character text", len(b64)), "validated"),
		func(context.Context) error { _, err := he.DecodeCiphertextBase64(p, b64, 0); return err }); err != nil {
		return err
	}
	return benchHEAPI(ctx, r, o, ck, evk, shape, mlp, mat(rank, d, 0.02), mat(d, rank, 0.02), lx)
}

// benchHEAPI times the HE routes end to end through the Go SDK against
// tensafe serve in process: the client encrypts, the server computes on
// ciphertexts only, the client decrypts. Each result is checked against
// the plaintext computation.
func benchHEAPI(ctx context.Context, r *benchsuite.Runner, o suiteOptions, ck *he.ClientKeys, evk *he.EvaluationKeys,
	shape he.LoRAShape, mlp *he.MLP, a, b [][]float64, x [][]float64) error {
	bt, err := startBenchTenant(ctx, "tensafe-bench-he-", "bench-he")
	if err != nil {
		return err
	}
	defer bt.close()
	c := bt.svc
	if _, err := r.Measure(ctx, benchsuite.Spec{Group: "he", Name: "register evaluation keys (API)", N: 1, Warmup: -1,
		Unit: fmt.Sprintf("%.1f MiB of keys", float64(evk.Size())/(1<<20)), Note: "upload, validate, seal under the tenant KEK, store"},
		func(ctx context.Context) error { _, err := c.RegisterHEKeys(ctx, evk); return err }); err != nil {
		return err
	}
	const scale = 2
	if _, err := c.RegisterHEAdapter(ctx, "q_proj", he.Adapter{A: a, B: b, Scale: scale}); err != nil {
		return err
	}
	info, err := c.RegisterHEModel(ctx, "bench-mlp", mlp, he.ProfileFull, 0)
	if err != nil {
		return err
	}
	s := c.HE(ck)
	n := iters(o, 3, 10)
	if _, err := r.Measure(ctx, benchsuite.Spec{Group: "he", Name: "lora_delta (API, end to end)", N: n,
		Unit: fmt.Sprintf("%d tokens, d=%d, rank %d", len(x), shape.DIn, shape.Rank),
		Note: "encrypt, POST, evaluate on ciphertexts, decrypt; checked against the plaintext delta", MaxTime: 60 * time.Second},
		func(ctx context.Context) error {
			got, err := s.Deltas(ctx, []string{"q_proj"}, shape, x, he.PackingLatency)
			if err != nil {
				return err
			}
			return closeTo(got[0], loraDelta(a, b, scale, x), 1e-2)
		}); err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(5, 6))
	px := make([][]float64, 16)
	for i := range px {
		px[i] = vec(rng, 64, 1)
	}
	want := make([][]float64, len(px))
	for i, row := range px {
		want[i] = mlp.ForwardFrom(0, row)
	}
	_, err = r.Measure(ctx, benchsuite.Spec{Group: "he", Name: "private_inference (API, end to end)", N: n,
		Unit: fmt.Sprintf("%d tokens × 64 features", len(px)), Note: "encrypt, POST, 64→64 (x²)→10 on ciphertexts, decrypt; checked against plaintext",
		MaxTime: 60 * time.Second},
		func(ctx context.Context) error {
			got, err := s.Infer(ctx, "bench-mlp", info, px, mlp)
			if err != nil {
				return err
			}
			return closeTo(got, want, 1e-2)
		})
	return err
}

// loraDelta is scale·B(Ax) for each row of x, in plaintext.
func loraDelta(a, b [][]float64, scale float64, x [][]float64) [][]float64 {
	out := make([][]float64, len(x))
	for t, row := range x {
		ax := make([]float64, len(a))
		for i := range a {
			for j, v := range a[i] {
				ax[i] += v * row[j]
			}
		}
		out[t] = make([]float64, len(b))
		for i := range b {
			for j, v := range b[i] {
				out[t][i] += scale * v * ax[j]
			}
		}
	}
	return out
}

// closeTo checks that got and want agree to within tol (max abs error).
func closeTo(got, want [][]float64, tol float64) error {
	if len(got) != len(want) {
		return fmt.Errorf("HE result has %d rows, want %d", len(got), len(want))
	}
	for i := range want {
		if len(got[i]) != len(want[i]) {
			return fmt.Errorf("HE result row %d has %d values, want %d", i, len(got[i]), len(want[i]))
		}
		for j := range want[i] {
			if d := math.Abs(got[i][j] - want[i][j]); !(d <= tol) {
				return fmt.Errorf("HE result [%d][%d] = %g, plaintext %g (error %g > %g)", i, j, got[i][j], want[i][j], d, tol)
			}
		}
	}
	return nil
}

func vec(r *rand.Rand, n int, std float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = r.NormFloat64() * std
	}
	return v
}
