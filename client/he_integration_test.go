package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tensafe/tensafe/client"
	"github.com/tensafe/tensafe/he"
)

// The HE tests share one key pair: key generation with the Galois keys of a
// d = 4096 adapter is the slow part.
var (
	heOnce  sync.Once
	heCK    *he.ClientKeys
	heEVK   *he.EvaluationKeys
	heErr   error
	heShape = he.LoRAShape{DIn: 4096, DOut: 4096, Rank: 16}
	heSmall = he.LoRAShape{DIn: 64, DOut: 48, Rank: 4}
	// heTiny keeps feature-major requests small (24 ciphertexts, 9 MiB)
	// where the test is about something else.
	heTiny = he.LoRAShape{DIn: 24, DOut: 16, Rank: 2}
	heMLP  = func() *he.MLP {
		r := rand.New(rand.NewPCG(3, 4))
		return &he.MLP{Layers: []he.Layer{
			{W: gaussMat(r, 24, 20, 0.2), Bias: gaussVec(r, 24, 0.1), Act: he.Activation{Kind: he.ActSquare}},
			{W: gaussMat(r, 10, 24, 0.2), Bias: gaussVec(r, 10, 0.1), Act: he.Activation{Kind: he.ActNone}},
		}}
	}()
)

func heKeys(t testing.TB) (*he.ClientKeys, *he.EvaluationKeys) {
	t.Helper()
	heOnce.Do(func() {
		p, err := he.Preset(he.DefaultPreset)
		if err != nil {
			heErr = err
			return
		}
		heCK, heEVK, heErr = he.GenerateKeys(context.Background(), p, he.Capabilities{
			LoRA: []he.LoRAShape{heShape}, MLPWidths: []int{heMLP.Width(2)}})
	})
	if heErr != nil {
		t.Fatal(heErr)
	}
	return heCK, heEVK
}

func gaussMat(r *rand.Rand, rows, cols int, std float64) [][]float64 {
	m := make([][]float64, rows)
	for i := range m {
		m[i] = gaussVec(r, cols, std)
	}
	return m
}

func gaussVec(r *rand.Rand, n int, std float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = r.NormFloat64() * std
	}
	return v
}

func uniformMat(r *rand.Rand, rows, cols int) [][]float64 {
	m := make([][]float64, rows)
	for i := range m {
		m[i] = make([]float64, cols)
		for j := range m[i] {
			m[i][j] = 2*r.Float64() - 1
		}
	}
	return m
}

func maxDiff(t *testing.T, got, want [][]float64) float64 {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d rows, want %d", len(got), len(want))
	}
	var m float64
	for i := range got {
		if len(got[i]) != len(want[i]) {
			t.Fatalf("row %d: %d columns, want %d", i, len(got[i]), len(want[i]))
		}
		for j := range got[i] {
			m = math.Max(m, math.Abs(got[i][j]-want[i][j]))
		}
	}
	return m
}

// TestHEDeltasOverAPI: the Go SDK generates keys, registers the evaluation
// keys and adapters, encrypts activations, and decrypts deltas computed by
// the server: equal to the plaintext scale·B(Ax) within 1e-4 at d = 4096,
// r = 16 (interleaved packing, chosen by batch size) and in the
// feature-major packing (d = 64: a feature-major input of d = 4096 is 4096
// ciphertexts, 1.5 GiB, beyond an HTTP body; the package he test streams it).
func TestHEDeltasOverAPI(t *testing.T) {
	ck, evk := heKeys(t)
	e := newEnv(t)
	c := e.client(t, e.trainerA)
	ctx := e.ctx
	info, err := c.RegisterHEKeys(ctx, evk)
	if err != nil {
		t.Fatal(err)
	}
	if info.ID != ck.ID() || info.State != he.KeyActive {
		t.Fatalf("registered %+v, want %s active", info, ck.ID())
	}
	r := rand.New(rand.NewPCG(40, 96))
	big := he.Adapter{A: gaussMat(r, 16, 4096, 0.02), B: gaussMat(r, 4096, 16, 0.02), Scale: 2}
	reg, err := c.RegisterHEAdapter(ctx, "layers.0.self_attn.q_proj", big)
	if err != nil {
		t.Fatal(err)
	}
	if reg.Shape != heShape || !slices.Contains(reg.Packings, he.PackingLatency) {
		t.Fatalf("registered adapter %+v", reg)
	}
	small := he.Adapter{A: gaussMat(r, 4, 64, 0.02), B: gaussMat(r, 48, 4, 0.02), Scale: 2}
	small2 := he.Adapter{A: gaussMat(r, 4, 64, 0.02), B: gaussMat(r, 48, 4, 0.02), Scale: 0.5}
	for m, a := range map[string]he.Adapter{"small.q": small, "small.v": small2} {
		if _, err := c.RegisterHEAdapter(ctx, m, a); err != nil {
			t.Fatal(err)
		}
	}
	s := c.HE(ck)
	for _, tc := range []struct {
		name    string
		modules []string
		ads     []he.Adapter
		shape   he.LoRAShape
		tokens  int
		packing he.Packing
		want    he.Packing

		maxBytes int
	}{
		// 600 KiB per request: one 512 KiB ciphertext (2 tokens) each, so
		// the SDK splits the 4 tokens into 2 requests.
		{"d4096_r16_auto", []string{"layers.0.self_attn.q_proj"}, []he.Adapter{big}, heShape, 4, client.PackingAuto, he.PackingLatency, 600 << 10},
		{"feature_major_two_modules", []string{"small.q", "small.v"}, []he.Adapter{small, small2}, heSmall, 300, client.PackingAuto, he.PackingThroughput, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.MaxRequestBytes = tc.maxBytes
			if got := s.ChoosePacking(tc.shape, tc.tokens); got != tc.want {
				t.Fatalf("ChoosePacking = %s, want %s", got, tc.want)
			}
			x := uniformMat(r, tc.tokens, tc.shape.DIn)
			start := time.Now()
			got, err := s.Deltas(ctx, tc.modules, tc.shape, x, tc.packing)
			if err != nil {
				t.Fatal(err)
			}
			for k, ad := range tc.ads {
				want := make([][]float64, len(x))
				for i := range x {
					want[i] = ad.Apply(x[i])
				}
				d := maxDiff(t, got[k], want)
				t.Logf("%s %s: %d tokens, max |delta - plaintext| = %.2e (%v)", tc.want, tc.modules[k], tc.tokens, d, time.Since(start))
				if d > 1e-4 {
					t.Fatalf("%s: error %g > 1e-4", tc.modules[k], d)
				}
			}
		})
	}

	// Audit: one entry per call, metadata only.
	page, err := c.AuditLogs(ctx, -1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	ops := map[string]int{}
	for _, en := range page.Entries {
		ops[en.Operation]++
		b, _ := json.Marshal(en)
		if len(b) > 4096 {
			t.Errorf("audit entry %s is %d bytes: more than metadata", en.Operation, len(b))
		}
	}
	if ops["he.register_keys"] != 1 || ops["he.register_adapter"] != 3 || ops["he.deltas"] != 3 {
		t.Fatalf("audit operations %v", ops)
	}
}

// TestHEInferenceOverAPI: a 2-layer HE-friendly MLP (x² activation), all
// layers under HE (full) and the first only (encrypted_input, hybrid with
// one layer; the client finishing in plaintext), equals the plaintext
// forward within 1e-3.
func TestHEInferenceOverAPI(t *testing.T) {
	ck, evk := heKeys(t)
	e := newEnv(t)
	c := e.client(t, e.trainerA)
	ctx := e.ctx
	if _, err := c.RegisterHEKeys(ctx, evk); err != nil {
		t.Fatal(err)
	}
	s := c.HE(ck)
	x := uniformMat(rand.New(rand.NewPCG(5, 6)), 7, 20)
	for _, p := range []he.Profile{he.ProfileFull, he.ProfileEncryptedInput, he.ProfileHybrid} {
		hybrid := 0
		if p == he.ProfileHybrid {
			hybrid = 1
		}
		info, err := c.RegisterHEModel(ctx, "mlp-"+string(p), heMLP, p, hybrid)
		if err != nil {
			t.Fatal(err)
		}
		models, err := c.HEModels(ctx)
		if err != nil || !slices.ContainsFunc(models, func(m he.ModelEntry) bool { return m.Name == "mlp-"+string(p) && m.Model == info }) {
			t.Fatalf("models %+v, %v", models, err)
		}
		got, err := s.Infer(ctx, "mlp-"+string(p), info, x, heMLP)
		if err != nil {
			t.Fatal(err)
		}
		want := make([][]float64, len(x))
		for i := range x {
			want[i] = heMLP.Forward(x[i])
		}
		d := maxDiff(t, got, want)
		t.Logf("profile %s (%d of %d layers under HE): max error %.2e", p, info.HELayers, info.Layers, d)
		if d > 1e-3 {
			t.Fatalf("profile %s: error %g > 1e-3", p, d)
		}
	}
}

// TestHETenantIsolation: another tenant's key, adapter and model answer 404
// exactly like missing ones; a viewer may not register.
func TestHETenantIsolation(t *testing.T) {
	ck, evk := heKeys(t)
	e := newEnv(t)
	ctx := e.ctx
	a, b := e.client(t, e.trainerA), e.client(t, e.trainerB)
	if _, err := a.RegisterHEKeys(ctx, evk); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	if _, err := a.RegisterHEAdapter(ctx, "small.q", he.Adapter{A: gaussMat(r, 2, 24, 0.02), B: gaussMat(r, 16, 2, 0.02), Scale: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.HEKey(ctx, ck.ID()); !client.IsNotFound(err) {
		t.Fatalf("tenant B reading A's key: %v, want not found", err)
	}
	if ks, err := b.HEKeys(ctx); err != nil || len(ks) != 0 {
		t.Fatalf("tenant B's keys: %v %v", ks, err)
	}
	// B under A's key id.
	if _, err := b.HE(ck).Deltas(ctx, []string{"small.q"}, heTiny, uniformMat(r, 2, 24), he.PackingThroughput); !client.IsNotFound(err) {
		t.Fatalf("tenant B using A's key: %v, want not found", err)
	}
	// B with its own key, asking for A's adapter.
	p, _ := he.Preset(he.DefaultPreset)
	ckB, evkB, err := he.GenerateKeys(ctx, p, he.Capabilities{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.RegisterHEKeys(ctx, evkB); err != nil {
		t.Fatal(err)
	}
	if _, err := b.HE(ckB).Deltas(ctx, []string{"small.q"}, heTiny, uniformMat(r, 2, 24), he.PackingThroughput); !client.IsNotFound(err) {
		t.Fatalf("tenant B asking for A's adapter: %v, want not found", err)
	}
	// A's own call works; a viewer of A may not register.
	if _, err := a.HE(ck).Deltas(ctx, []string{"small.q"}, heTiny, uniformMat(r, 2, 24), he.PackingThroughput); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client(t, e.viewerA).RegisterHEKeys(ctx, evk); !client.IsPermissionDenied(err) {
		t.Fatalf("viewer registering keys: %v, want permission denied", err)
	}
	// Registering the same key twice is a conflict; a new key retires the old.
	if _, err := a.RegisterHEKeys(ctx, evk); err == nil || !strings.Contains(err.Error(), "already registered") {
		t.Fatalf("registering a key twice: %v", err)
	}
	ck2, evk2, err := he.GenerateKeys(ctx, p, he.Capabilities{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.RegisterHEKeys(ctx, evk2); err != nil {
		t.Fatal(err)
	}
	if k, err := a.HEKey(ctx, ck.ID()); err != nil || k.State != he.KeyRetired || k.Retired == nil {
		t.Fatalf("old key after rotation: %+v %v", k, err)
	}
	if _, err := a.HE(ck).Deltas(ctx, []string{"small.q"}, heTiny, uniformMat(r, 2, 24), he.PackingThroughput); !client.IsFailedPrecondition(err) {
		t.Fatalf("deltas under a retired key: %v, want failed precondition", err)
	}
	if _, err := a.HE(ck2).Deltas(ctx, []string{"small.q"}, heTiny, uniformMat(r, 2, 24), he.PackingThroughput); err != nil {
		t.Fatal(err)
	}

	// Listing and deleting: B sees none of A's adapters and deletes none;
	// the active key cannot be deleted, the retired one can.
	if as, err := a.HEAdapters(ctx); err != nil || len(as) != 1 || as[0].Module != "small.q" || as[0].Shape != heTiny {
		t.Fatalf("A's adapters %+v, %v", as, err)
	}
	if as, err := b.HEAdapters(ctx); err != nil || len(as) != 0 {
		t.Fatalf("B's adapters %+v, %v", as, err)
	}
	if err := b.DeleteHEAdapter(ctx, "small.q"); !client.IsNotFound(err) {
		t.Fatalf("B deleting A's adapter: %v", err)
	}
	if err := b.DeleteHEKey(ctx, ck.ID()); !client.IsNotFound(err) {
		t.Fatalf("B deleting A's key: %v", err)
	}
	if err := a.DeleteHEKey(ctx, ck2.ID()); !client.IsFailedPrecondition(err) {
		t.Fatalf("deleting the active key: %v", err)
	}
	if err := a.DeleteHEKey(ctx, ck.ID()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.HEKey(ctx, ck.ID()); !client.IsNotFound(err) {
		t.Fatalf("deleted key: %v", err)
	}
	if err := a.DeleteHEAdapter(ctx, "small.q"); err != nil {
		t.Fatal(err)
	}
	// A module name with a slash travels escaped.
	if _, err := a.RegisterHEAdapter(ctx, "model/layers.0.q", he.Adapter{A: gaussMat(r, 2, 24, 0.02), B: gaussMat(r, 16, 2, 0.02), Scale: 1}); err != nil {
		t.Fatal(err)
	}
	if err := a.DeleteHEAdapter(ctx, "model/layers.0.q"); err != nil {
		t.Fatal(err)
	}
	if as, err := a.HEAdapters(ctx); err != nil || len(as) != 0 {
		t.Fatalf("adapters after deletion %+v, %v", as, err)
	}
	if _, err := a.HE(ck2).Deltas(ctx, []string{"small.q"}, heTiny, uniformMat(r, 2, 24), he.PackingThroughput); !client.IsNotFound(err) {
		t.Fatalf("deltas of a deleted adapter: %v", err)
	}
}

// TestHEMalformedRequests: a malformed bundle or body answers 400 naming the
// field, and nothing is computed.
func TestHEMalformedRequests(t *testing.T) {
	ck, evk := heKeys(t)
	e := newEnv(t)
	ctx := e.ctx
	c := e.client(t, e.trainerA)
	if _, err := c.RegisterHEKeys(ctx, evk); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(2, 2))
	if _, err := c.RegisterHEAdapter(ctx, "small.q", he.Adapter{A: gaussMat(r, 2, 24, 0.02), B: gaussMat(r, 16, 2, 0.02), Scale: 1}); err != nil {
		t.Fatal(err)
	}
	hc := he.NewClient(ck)
	in, err := hc.EncryptLoRAInput(ctx, uniformMat(r, 3, 24), he.PackingThroughput, heTiny)
	if err != nil {
		t.Fatal(err)
	}
	good, err := he.NewBundle(he.KindLoRAInput, in, he.CompressionNone)
	if err != nil {
		t.Fatal(err)
	}
	clone := func() he.Bundle {
		b := *good
		b.Ciphertexts = make([][]byte, len(good.Ciphertexts))
		for i, ct := range good.Ciphertexts {
			b.Ciphertexts[i] = bytes.Clone(ct)
		}
		return b
	}
	for _, tc := range []struct {
		name  string
		edit  func(*he.DeltaRequest)
		field string
	}{
		{"content hash", func(q *he.DeltaRequest) { q.Input.ContentHash = "sha256:" + strings.Repeat("0", 64) }, "input.content_hash"},
		{"kind", func(q *he.DeltaRequest) { q.Input.Kind = he.KindModelInput }, "input.kind"},
		{"truncated ciphertext", func(q *he.DeltaRequest) { q.Input.Ciphertexts[1] = q.Input.Ciphertexts[1][:100] }, "input.ciphertexts[1]"},
		{"ciphertext count", func(q *he.DeltaRequest) { q.Input.Ciphertexts = q.Input.Ciphertexts[:10] }, "input.ciphertexts"},
		{"layout", func(q *he.DeltaRequest) { q.Input.Layout.Width = 64 }, "input.layout"},
		{"params", func(q *he.DeltaRequest) { q.Input.Params = he.PresetN14 }, "input.params"},
		{"key id", func(q *he.DeltaRequest) { q.KeyID = "hek_nothex" }, "key_id"},
		{"modules", func(q *he.DeltaRequest) { q.Modules = nil }, "modules"},
		{"module twice", func(q *he.DeltaRequest) { q.Modules = []string{"small.q", "small.q"} }, "modules[1]"},
		{"compression", func(q *he.DeltaRequest) { q.Compression = "zstd" }, "compression"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := he.DeltaRequest{KeyID: ck.ID(), Modules: []string{"small.q"}, Input: clone()}
			tc.edit(&q)
			_, err := c.HEDeltas(ctx, q)
			var ae *client.APIError
			if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || ae.Field != tc.field {
				t.Fatalf("got %v, want 400 naming %s", err, tc.field)
			}
		})
	}
	// A JSON body with an unknown field names it. (The bodies here are
	// over 12 MiB: 24 feature-major ciphertexts in base64, beyond the
	// general api.MaxRequestBytes, within the HE routes' limit.)
	body, _ := json.Marshal(map[string]any{"key_id": ck.ID(), "modules": []string{"small.q"}, "input": good, "extra": 1})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.url+"/api/v1/he/deltas", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+e.trainerA)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Error struct{ Code, Field string }
	}
	json.NewDecoder(resp.Body).Decode(&env)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || env.Error.Field != "extra" {
		t.Fatalf("unknown JSON field: %d %+v", resp.StatusCode, env)
	}
	// The same request without the extra field, in JSON, succeeds and
	// answers JSON.
	body, _ = json.Marshal(he.DeltaRequest{KeyID: ck.ID(), Modules: []string{"small.q"}, Input: *good})
	req, _ = http.NewRequestWithContext(ctx, http.MethodPost, e.url+"/api/v1/he/deltas", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+e.trainerA)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var dr he.DeltaResponse
	err = json.NewDecoder(resp.Body).Decode(&dr)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || len(dr.Deltas) != 1 || len(body) < 8<<20 {
		t.Fatalf("JSON request of %d bytes: status %d, %v", len(body), resp.StatusCode, err)
	}
	// Registering an adapter with a ragged B names the row.
	_, err = c.RegisterHEAdapter(ctx, "bad", he.Adapter{A: gaussMat(r, 4, 64, 0.02), B: append(gaussMat(r, 47, 4, 0.02), []float64{1}), Scale: 1})
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Field != "b[47]" {
		t.Fatalf("ragged B: %v", err)
	}
	// Evaluation keys that are not a key bundle.
	body, _ = json.Marshal(he.RegisterKeysRequest{EvaluationKeys: []byte("not a key bundle")})
	req, _ = http.NewRequestWithContext(ctx, http.MethodPost, e.url+"/api/v1/he/keys", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+e.trainerA)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&env)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || env.Error.Field != "evaluation_keys" {
		t.Fatalf("bad evaluation keys: %d %+v", resp.StatusCode, env)
	}
}

// TestHEAdapterFromTraining: an HE adapter taken from a training client's
// current LoRA and one taken from the checkpoint saved right after give the
// same encrypted deltas (non-zero: B has been trained), and the sources are
// checked (another tenant's client is not found, a bad module is named).
func TestHEAdapterFromTraining(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx
	c := e.client(t, e.trainerA)
	p, _ := he.Preset(he.DefaultPreset)
	ck, evk, err := he.GenerateKeys(ctx, p, he.Capabilities{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.RegisterHEKeys(ctx, evk); err != nil {
		t.Fatal(err)
	}
	tc, err := c.CreateTrainingClient(ctx, tinyConfig(1, 8))
	if err != nil {
		t.Fatal(err)
	}
	m, _ := tc.DPMetrics(ctx)
	for range 2 {
		m = step(t, tc, m)
	}
	f, err := tc.SaveState(ctx, "for-he")
	sv := result(t, f, err)
	if _, err := c.RegisterHEAdapter(ctx, "empty", he.Adapter{}); !client.IsInvalidArgument(err) {
		t.Fatalf("an empty adapter: %v, want invalid argument", err)
	}
	reg := func(module string, src he.AdapterSource) (*he.RegisterAdapterResponse, error) {
		return c.RegisterHEAdapterFrom(ctx, module, src)
	}
	a1, err := reg("live.q", he.AdapterSource{TrainingClientID: tc.ID, Layer: 0, Module: "q_proj"})
	if err != nil {
		t.Fatal(err)
	}
	a2, err := reg("saved.q", he.AdapterSource{ArtifactID: sv.ArtifactID, Layer: 0, Module: "q_proj"})
	if err != nil {
		t.Fatal(err)
	}
	if a1.Shape != a2.Shape || a1.Shape.Rank != 2 {
		t.Fatalf("shapes %+v and %+v", a1.Shape, a2.Shape)
	}
	x := uniformMat(rand.New(rand.NewPCG(8, 9)), 5, a1.Shape.DIn)
	got, err := c.HE(ck).Deltas(ctx, []string{"live.q", "saved.q"}, a1.Shape, x, client.PackingAuto)
	if err != nil {
		t.Fatal(err)
	}
	var norm float64
	for _, row := range got[0] {
		for _, v := range row {
			norm = math.Max(norm, math.Abs(v))
		}
	}
	if d := maxDiff(t, got[0], got[1]); d > 1e-5 || norm < 1e-4 {
		t.Fatalf("live vs saved adapter: max difference %g, max |delta| %g", d, norm)
	}
	for _, tc2 := range []struct {
		src   he.AdapterSource
		field string
		code  string
	}{
		{he.AdapterSource{TrainingClientID: tc.ID, ArtifactID: sv.ArtifactID, Module: "q_proj"}, "source", "invalid_argument"},
		{he.AdapterSource{TrainingClientID: tc.ID, Module: "x_proj"}, "source.module", "invalid_argument"},
		{he.AdapterSource{TrainingClientID: tc.ID, Layer: 99, Module: "q_proj"}, "source", "invalid_argument"},
		{he.AdapterSource{TrainingClientID: "tc-missing", Module: "q_proj"}, "", "not_found"},
	} {
		_, err := reg("bad", tc2.src)
		var ae *client.APIError
		if !errors.As(err, &ae) || ae.Code != tc2.code || ae.Field != tc2.field {
			t.Fatalf("source %+v: %v, want %s naming %q", tc2.src, err, tc2.code, tc2.field)
		}
	}
	// Tenant B cannot take A's adapter.
	b := e.client(t, e.trainerB)
	if _, err := b.RegisterHEKeys(ctx, evk); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(he.RegisterAdapterRequest{Module: "stolen", Source: &he.AdapterSource{ArtifactID: sv.ArtifactID, Module: "q_proj"}})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.url+"/api/v1/he/adapters", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+e.trainerB)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("tenant B taking A's checkpoint: %d, want 404", resp.StatusCode)
	}
}

// BenchmarkHEDeltaOverAPI: one interleaved request of 2 tokens at d = 4096,
// r = 16 through the SDK and a real server: encrypt, CBOR, the server's key
// and adapter loading and evaluation, decrypt.
func BenchmarkHEDeltaOverAPI(b *testing.B) {
	ck, evk := heKeys(b)
	e := newEnv(b)
	c := e.client(b, e.trainerA)
	if _, err := c.RegisterHEKeys(e.ctx, evk); err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	if _, err := c.RegisterHEAdapter(e.ctx, "q", he.Adapter{A: gaussMat(r, 16, 4096, 0.02), B: gaussMat(r, 4096, 16, 0.02), Scale: 2}); err != nil {
		b.Fatal(err)
	}
	s := c.HE(ck)
	x := uniformMat(r, 2, 4096)
	for b.Loop() {
		if _, err := s.Deltas(e.ctx, []string{"q"}, heShape, x, he.PackingLatency); err != nil {
			b.Fatal(err)
		}
	}
}
