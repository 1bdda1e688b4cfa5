package service

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/keys"
	"github.com/tensafe/tensafe/store"
)

// countingKeys counts a Provider's DEK draws and unwraps.
type countingKeys struct {
	keys.Provider
	news, unwraps atomic.Int64
}

func (c *countingKeys) NewDEK(ctx context.Context, tenant string) ([]byte, keys.WrappedKey, error) {
	c.news.Add(1)
	return c.Provider.NewDEK(ctx, tenant)
}

func (c *countingKeys) Unwrap(ctx context.Context, tenant string, w keys.WrappedKey) ([]byte, error) {
	c.unwraps.Add(1)
	return c.Provider.Unwrap(ctx, tenant, w)
}

// restarted returns a new service on the fixture's store, log and keys (a
// restarted process), configured by mod.
func restarted(t *testing.T, f *fixture, mod func(*Config)) *Service {
	t.Helper()
	cfg := Config{Store: f.st, Audit: f.log, Keys: f.svc.keys, ArtifactDir: f.svc.dir, MaxConcurrent: 2}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func TestRecordSealing(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ck := &countingKeys{Provider: f.svc.keys}
	rs := newRecordSealer(ck)
	b := binding{purpose: purposeBudget, tenant: f.tenA, client: "tc_1", step: 7}
	msg := []byte(`{"accountant state":1}`)
	rec, err := rs.seal(ctx, b, msg)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(rec, []byte(recordMagic)) || bytes.Contains(rec, msg) {
		t.Fatalf("record %q", rec)
	}
	got, err := newRecordSealer(f.svc.keys).open(ctx, b, rec)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("open = %q, %v", got, err)
	}
	// Bound to tenant, client, operation, step and purpose.
	for name, other := range map[string]binding{
		"tenant":  {purpose: purposeBudget, tenant: f.tenB, client: "tc_1", step: 7},
		"client":  {purpose: purposeBudget, tenant: f.tenA, client: "tc_2", step: 7},
		"step":    {purpose: purposeBudget, tenant: f.tenA, client: "tc_1", step: 6},
		"op":      {purpose: purposeBudget, tenant: f.tenA, client: "tc_1", op: "op_1", step: 7},
		"purpose": {purpose: purposeResult, tenant: f.tenA, client: "tc_1", step: 7},
	} {
		if _, err := rs.open(ctx, other, rec); err == nil {
			t.Errorf("the record opened under another %s", name)
		} else if name != "tenant" && !errors.Is(err, ErrIntegrity) {
			t.Errorf("%s: %v is not ErrIntegrity", name, err)
		}
	}
	// Any altered byte fails; all but the KEK version (an unknown version
	// is the keyring's error) are ErrIntegrity.
	for i := range rec {
		bad := bytes.Clone(rec)
		bad[i] ^= 0x01
		_, err := newRecordSealer(f.svc.keys).open(ctx, b, bad)
		if err == nil {
			t.Fatalf("byte %d altered: opened", i)
		}
		if (i < 5 || i > 8) && !errors.Is(err, ErrIntegrity) {
			t.Fatalf("byte %d altered: %v", i, err)
		}
	}
	for _, bad := range [][]byte{nil, rec[:10], rec[:len(rec)-1], []byte(`{"plaintext":true}`)} {
		if _, err := rs.open(ctx, b, bad); !errors.Is(err, ErrIntegrity) {
			t.Fatalf("open(%q) = %v", bad, err)
		}
	}
	// One DEK per client, unwrapped once per process.
	for i := range 50 {
		if _, err := rs.seal(ctx, binding{purpose: purposeResult, tenant: f.tenA, client: "tc_1", op: "op_" + string(rune('a'+i%26))}, msg); err != nil {
			t.Fatal(err)
		}
	}
	if n := ck.news.Load(); n != 1 {
		t.Fatalf("%d DEKs drawn for one client", n)
	}
	fresh := newRecordSealer(ck)
	ck.unwraps.Store(0)
	for range 50 {
		if _, err := fresh.open(ctx, b, rec); err != nil {
			t.Fatal(err)
		}
	}
	if n := ck.unwraps.Load(); n != 1 {
		t.Fatalf("%d unwraps for 50 opens of one DEK's records", n)
	}
}

// TestResultsSealedAtRest: the store holds results sealed; the service
// returns them in clear; a result moved to another operation's row does not
// open.
func TestResultsSealedAtRest(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s, ten := f.svc, f.tenA
	tc, err := s.CreateTrainingClient(ctx, ten, tinyConfig(1, 8, 2, 100))
	if err != nil {
		t.Fatal(err)
	}
	fu, err := s.ForwardBackward(ctx, ten, tc.ID, api.ForwardBackwardRequest{Batch: textBatch("secret text", "more")})
	var fb api.ForwardBackwardResult
	got := await(t, s, ten, fu, err, &fb)
	if len(fb.PerExampleLoss) != 2 || !strings.Contains(string(got.Result), "per_example_loss") {
		t.Fatalf("result in clear through the service: %s", got.Result)
	}
	sf, err := s.Sample(ctx, ten, tc.ID, api.SampleRequest{Prompt: "ab", MaxTokens: 4})
	var sr api.SampleResult
	await(t, s, ten, sf, err, &sr)
	for _, id := range []string{fu.ID, sf.ID} {
		raw, err := f.st.GetOperation(ctx, ten, id)
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]string
		if err := json.Unmarshal(raw.Result, &v); err != nil || len(v) != 1 || v[resultKey] == "" {
			t.Fatalf("stored result of %s is not sealed: %s", id, raw.Result)
		}
		for _, leak := range []string{"per_example_loss", "logprobs", "sequences", "loss"} {
			if strings.Contains(string(raw.Result), leak) {
				t.Fatalf("stored result of %s shows %q", id, leak)
			}
		}
	}
	// The sealed result of one operation, planted in another's row.
	raw, _ := f.st.GetOperation(ctx, ten, fu.ID)
	if _, err := f.st.CreateOperation(ctx, store.Operation{ID: "op_planted", TenantID: ten, ClientID: tc.ID, Kind: store.KindForwardBackward,
		State: store.OpSucceeded, Result: raw.Result}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetOperation(ctx, ten, "op_planted"); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("a moved result: %v", err)
	}
	// A plaintext result written behind the service's back is refused.
	if _, err := f.st.CreateOperation(ctx, store.Operation{ID: "op_plain", TenantID: ten, ClientID: tc.ID, Kind: store.KindForwardBackward,
		State: store.OpSucceeded, Result: json.RawMessage(`{"loss":0}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetOperation(ctx, ten, "op_plain"); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("a plaintext result: %v", err)
	}
	// A restarted process opens the results (the DEK is unwrapped again).
	s2 := restarted(t, f, nil)
	f2, err := s2.GetOperation(ctx, ten, fu.ID)
	if err != nil || !bytes.Equal(f2.Result, got.Result) {
		t.Fatalf("after restart: %s, %v", f2.Result, err)
	}
}

// TestBudgetStateIntegrity: the accountant state is sealed; a reset
// (plaintext fresh state) or a rollback (an older sealed state of the
// client) written behind the service's back refuses the client after a
// restart, audited once; the genuine state put back works again.
func TestBudgetStateIntegrity(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s, ten := f.svc, f.tenA
	tc, err := s.CreateTrainingClient(ctx, ten, tinyConfig(1, 8, 2, 100))
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := s.st.GetClient(ctx, ten, tc.ID) // the service's view: in clear
	if err != nil {
		t.Fatal(err)
	}
	var step1 store.TrainingClient
	for i := range 3 {
		fu, err := s.ForwardBackward(ctx, ten, tc.ID, api.ForwardBackwardRequest{Batch: textBatch("ab", "cd")})
		await(t, s, ten, fu, err, nil)
		ou, err := s.OptimStep(ctx, ten, tc.ID)
		await(t, s, ten, ou, err, nil)
		if i == 0 {
			if step1, err = f.st.GetClient(ctx, ten, tc.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	want, err := s.DPMetrics(ctx, ten, tc.ID)
	if err != nil {
		t.Fatal(err)
	}
	good, err := f.st.GetClient(ctx, ten, tc.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(good.BudgetState, []byte(recordMagic)) || bytes.Equal(good.BudgetState, fresh.BudgetState) {
		t.Fatal("the stored accountant state is not sealed")
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// write puts a state in the row behind the service's back.
	write := func(step int64, state []byte) {
		t.Helper()
		cur, err := f.st.GetClient(ctx, ten, tc.ID)
		if err != nil {
			t.Fatal(err)
		}
		cur.Step, cur.BudgetState = step, state
		if _, err := f.st.UpdateClient(ctx, cur); err != nil {
			t.Fatal(err)
		}
	}
	withAudit := func(c *Config) { c.Packages.AuditStore = f.as }
	refused := func(s *Service, reason string) {
		t.Helper()
		for range 2 {
			_, err := s.DPMetrics(ctx, ten, tc.ID)
			if !errors.Is(err, ErrIntegrity) || !errors.Is(err, ErrFailedPrecondition) || !strings.Contains(err.Error(), reason) {
				t.Fatalf("%s: DPMetrics = %v", reason, err)
			}
			if _, err := s.OptimStep(ctx, ten, tc.ID); !errors.Is(err, ErrIntegrity) {
				t.Fatalf("%s: OptimStep = %v", reason, err)
			}
			if reason != "rollback" {
				if _, err := s.GetTrainingClient(ctx, ten, tc.ID); !errors.Is(err, ErrIntegrity) {
					t.Fatalf("%s: GetTrainingClient = %v", reason, err)
				}
			}
		}
	}
	// ε reset: a fresh state in clear.
	write(0, fresh.BudgetState)
	refused(restarted(t, f, withAudit), "authentication")
	// The genuine state of another step number.
	write(2, good.BudgetState)
	refused(restarted(t, f, withAudit), "authentication")
	// Rollback: the client's own state after step 1, with its step.
	write(step1.Step, step1.BudgetState)
	refused(restarted(t, f, withAudit), "rollback")
	// Without a readable audit store the rollback is not detected.
	if m, err := restarted(t, f, nil).DPMetrics(ctx, ten, tc.ID); err != nil || m.Steps != 1 {
		t.Fatalf("rollback without an audit store: %+v, %v", m, err)
	}
	// The genuine state back: the client works again.
	write(good.Step, good.BudgetState)
	if m, err := restarted(t, f, withAudit).DPMetrics(ctx, ten, tc.ID); err != nil || m != want {
		t.Fatalf("genuine state: %+v, %v; want %+v", m, err, want)
	}
	var failures []audit.Entry
	if err := auditScan(f, func(e audit.Entry) {
		if e.Operation == OpIntegrityFailure {
			failures = append(failures, e)
		}
	}); err != nil {
		t.Fatal(err)
	}
	// Once per process and client: three refusing processes.
	if len(failures) != 3 || failures[2].Details["reason"] != "rollback" || failures[0].Resource != tc.ID ||
		failures[0].TenantID != ten || failures[0].Outcome != audit.OutcomeFailure {
		t.Fatalf("integrity audit entries: %+v", failures)
	}
}

// TestRetentionIndexedAndOperations: with a TTL an artifact records its
// expiry when written; with an operation TTL a sweep deletes the finished
// operations (and their results) older than it, never an unfinished one.
func TestRetentionIndexedAndOperations(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s := restarted(t, f, func(c *Config) { c.ArtifactTTL, c.OperationTTL = time.Hour, 2*time.Hour })
	ten := f.tenA
	sv := savedArtifact(t, s, ten)
	raw, err := f.st.GetArtifact(ctx, ten, sv.ArtifactID)
	if err != nil {
		t.Fatal(err)
	}
	if raw.ExpiresAt == nil || !raw.ExpiresAt.Equal(raw.CreatedAt.Add(time.Hour)) {
		t.Fatalf("artifact expiry %v, created %v", raw.ExpiresAt, raw.CreatedAt)
	}
	// Found by the indexed query.
	if l, err := f.st.ListExpiredArtifacts(ctx, raw.CreatedAt.Add(time.Hour)); err != nil || len(l) != 1 || l[0].ID != sv.ArtifactID {
		t.Fatalf("ListExpiredArtifacts = %+v, %v", l, err)
	}
	ops, err := f.st.ListOperationsByState(ctx, store.OpSucceeded)
	if err != nil || len(ops) < 2 {
		t.Fatalf("succeeded operations: %d, %v", len(ops), err)
	}
	queued, err := f.st.CreateOperation(ctx, store.Operation{ID: "op_queued", TenantID: ten, Kind: store.KindSample})
	if err != nil {
		t.Fatal(err)
	}
	// An hour on: the artifact goes, the operations stay.
	if n, err := s.EnforceRetention(ctx, raw.CreatedAt.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("sweep at the artifact's expiry: %d, %v", n, err)
	}
	if _, err := s.GetOperation(ctx, ten, ops[0].ID); err != nil {
		t.Fatalf("operation within its TTL: %v", err)
	}
	// Past the operation TTL: the finished operations go.
	if _, err := s.EnforceRetention(ctx, time.Now().Add(2*time.Hour+time.Minute)); err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		if _, err := s.GetOperation(ctx, ten, op.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("expired operation %s: %v", op.ID, err)
		}
	}
	if _, err := s.GetOperation(ctx, ten, queued.ID); err != nil {
		t.Fatalf("queued operation deleted: %v", err)
	}
	var sweeps []audit.Entry
	auditScan(f, func(e audit.Entry) {
		if e.Operation == OpRetentionSweep {
			sweeps = append(sweeps, e)
		}
	})
	if len(sweeps) != 2 || sweeps[1].Details["operations_deleted_count"] == "0" || sweeps[1].Details["operation_ttl_seconds"] != "7200" {
		t.Fatalf("sweep entries %+v", sweeps)
	}
}

// TestRecordFormat opens a sealed record by docs/STORE.md §8 alone, with
// crypto/cipher and the keyring, as an independent reader would.
func TestRecordFormat(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	rs := newRecordSealer(f.svc.keys)
	b := binding{purpose: purposeResult, tenant: f.tenA, client: "tc_x", op: "op_y"}
	msg := []byte(`{"loss":1.5}`)
	rec, err := rs.seal(ctx, b, msg)
	if err != nil {
		t.Fatal(err)
	}
	// magic "TSR" 0x01 | purpose | u32 KEK version | u8 n | wrapped DEK (n) | nonce (12) | ciphertext ‖ tag
	if string(rec[:4]) != "TSR\x01" || rec[4] != 1 || rec[9] != 40 {
		t.Fatalf("header % x", rec[:10])
	}
	n := int(rec[9])
	ver := uint32(rec[5])<<24 | uint32(rec[6])<<16 | uint32(rec[7])<<8 | uint32(rec[8])
	dek, err := f.svc.keys.Unwrap(ctx, f.tenA, keys.WrappedKey{KeyID: "kek:" + f.tenA, KEKVersion: ver, Wrapped: rec[10 : 10+n]})
	if err != nil {
		t.Fatal(err)
	}
	aead, err := newGCM(dek)
	if err != nil {
		t.Fatal(err)
	}
	var aad []byte
	aad = append(aad, "tensafe.record.v1\x00"...)
	aad = append(aad, rec[:10+n]...)
	for _, s := range []string{f.tenA, "tc_x", "op_y"} {
		aad = append(aad, byte(len(s)>>24), byte(len(s)>>16), byte(len(s)>>8), byte(len(s)))
		aad = append(aad, s...)
	}
	aad = append(aad, 0, 0, 0, 0, 0, 0, 0, 0) // step 0
	pt, err := aead.Open(nil, rec[10+n:10+n+12], rec[10+n+12:], aad)
	if err != nil || !bytes.Equal(pt, msg) {
		t.Fatalf("independent open: %q, %v", pt, err)
	}
	// The stored result is the JSON object {"sealed_record": base64(record)}.
	stored, err := rs.sealResult(ctx, store.Operation{ID: "op_y", TenantID: f.tenA, ClientID: "tc_x", Result: msg})
	if err != nil || !strings.HasPrefix(string(stored), `{"sealed_record":"VFNSAQ`) {
		t.Fatalf("stored form %s, %v", stored, err)
	}
}

// FuzzOpenRecord: whatever the stored bytes, opening fails cleanly (never
// panics) unless they are a record sealed for the binding.
func FuzzOpenRecord(f *testing.F) {
	fx := newFixture(f)
	ctx := context.Background()
	rs := newRecordSealer(fx.svc.keys)
	b := binding{purpose: purposeResult, tenant: fx.tenA, client: "tc_f", op: "op_f"}
	rec, err := rs.seal(ctx, b, []byte(`{"x":1}`))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(rec)
	f.Add([]byte("TSR\x01"))
	f.Add([]byte(`{"sealed_record":"VFNSAQ=="}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		pt, err := rs.open(ctx, b, data)
		if err == nil && !bytes.Equal(data, rec) {
			t.Fatalf("forged record opened: %q", pt)
		}
		op := store.Operation{ID: "op_f", TenantID: fx.tenA, ClientID: "tc_f", Result: data}
		if pt, err := rs.openResult(ctx, op); err == nil && len(data) > 0 && !bytes.Contains(data, []byte("VFNSAQ")) {
			t.Fatalf("openResult accepted %q: %q", data, pt)
		}
	})
}

// BenchmarkResultSealing measures sealing and opening one operation's
// result (warm DEK caches: the cost per operation of a running client), by
// result size.
func BenchmarkResultSealing(b *testing.B) {
	fx := newFixture(b)
	ctx := context.Background()
	rs := newRecordSealer(fx.svc.keys)
	// float64 values in the result: a forward_backward's losses and norms
	// (batch 8), a sample's log-probabilities (4×64), a forward's (8×512).
	for _, n := range []int{24, 256, 4096} {
		vals := make([]float64, n)
		for i := range vals {
			vals[i] = -1.2345678901234567 * float64(i+1)
		}
		res, _ := json.Marshal(map[string]any{"per_example_loss": vals})
		op := store.Operation{ID: "op_bench", TenantID: fx.tenA, ClientID: "tc_bench", Result: res}
		name := fmt.Sprintf("%dB", len(res))
		b.Run("seal/"+name, func(b *testing.B) {
			b.SetBytes(int64(len(res)))
			for b.Loop() {
				if _, err := rs.sealResult(ctx, op); err != nil {
					b.Fatal(err)
				}
			}
		})
		sealed, err := rs.sealResult(ctx, op)
		if err != nil {
			b.Fatal(err)
		}
		so := op
		so.Result = sealed
		b.Run("open/"+name, func(b *testing.B) {
			b.SetBytes(int64(len(res)))
			for b.Loop() {
				if _, err := rs.openResult(ctx, so); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("seal_cold_dek", func(b *testing.B) {
		for b.Loop() {
			if _, err := newRecordSealer(fx.svc.keys).seal(ctx, binding{purpose: purposeResult, tenant: fx.tenA, client: "c", op: "o"}, []byte("{}")); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkTrainStepSealing is BenchmarkTrainStep with the store sealed
// (as served) and in clear (the store under the seal): the difference is
// what sealing results and accountant states costs a training step.
func BenchmarkTrainStepSealing(b *testing.B) {
	for _, sealed := range []bool{true, false} {
		b.Run(map[bool]string{true: "sealed", false: "clear"}[sealed], func(b *testing.B) {
			f := newFixture(b)
			ctx := context.Background()
			s, ten := f.svc, f.tenA
			if !sealed {
				s.st = s.st.(*sealedStore).Store
			}
			tc, err := s.CreateTrainingClient(ctx, ten, tinyConfig(1, 1000, 4, 1_000_000))
			if err != nil {
				b.Fatal(err)
			}
			batch := textBatch("the quick brown", "fox jumps over", "the lazy dog ok", "privacy first!!")
			step := func() {
				fu, err := s.ForwardBackward(ctx, ten, tc.ID, api.ForwardBackwardRequest{Batch: batch})
				await(b, s, ten, fu, err, nil)
				ou, err := s.OptimStep(ctx, ten, tc.ID)
				await(b, s, ten, ou, err, nil)
			}
			step() // compile graphs
			for b.Loop() {
				step()
			}
		})
	}
}

// TestResealAfterRotation: after a KEK rotation the accountant states
// under the old version are re-sealed under the new one (for a loaded
// client and for one only in the store), so that retiring the old version
// refuses no client; without it the retirement would.
func TestResealAfterRotation(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	kr := f.svc.keys.(*keys.Keyring)
	s := f.svc
	version := func(tenant, id string) uint32 {
		t.Helper()
		c, err := f.st.GetClient(ctx, tenant, id)
		if err != nil {
			t.Fatal(err)
		}
		w, ok := recordKEK(tenant, c.BudgetState)
		if !ok {
			t.Fatal("state not sealed")
		}
		return w.KEKVersion
	}
	trained := func(tenant string) (string, api.DPMetrics) {
		tc, err := s.CreateTrainingClient(ctx, tenant, tinyConfig(1, 8, 2, 100))
		if err != nil {
			t.Fatal(err)
		}
		ou, err := s.OptimStep(ctx, tenant, tc.ID)
		await(t, s, tenant, ou, err, nil)
		m, err := s.DPMetrics(ctx, tenant, tc.ID)
		if err != nil {
			t.Fatal(err)
		}
		return tc.ID, m
	}
	a, ma := trained(f.tenA)
	b, _ := trained(f.tenB)
	for _, ten := range []string{f.tenA, f.tenB} {
		if _, err := kr.Rotate(ctx, ten); err != nil {
			t.Fatal(err)
		}
	}
	if version(f.tenA, a) != 1 {
		t.Fatal("state not under version 1 before the rotation")
	}
	// A loaded client (tenant A; B's is re-sealed too, then put back).
	bOld, _ := f.st.GetClient(ctx, f.tenB, b)
	if n, err := s.ResealStaleStates(ctx); err != nil || n != 2 {
		t.Fatalf("ResealStaleStates = %d, %v; want 2", n, err)
	}
	if version(f.tenA, a) != 2 || version(f.tenB, b) != 2 {
		t.Fatal("states not re-sealed under version 2")
	}
	if n, err := s.ResealStaleStates(ctx); err != nil || n != 0 {
		t.Fatalf("second ResealStaleStates = %d, %v", n, err)
	}
	// A client only in the store: a restarted process, another rotation.
	s.Close(ctx)
	if _, err := kr.Rotate(ctx, f.tenA); err != nil {
		t.Fatal(err)
	}
	s2 := restarted(t, f, nil)
	// Only A's state is stale (version 2 of 3); B's is current.
	if n, err := s2.ResealStaleStates(ctx); err != nil || n != 1 {
		t.Fatalf("restarted ResealStaleStates = %d, %v; want 1", n, err)
	}
	if version(f.tenA, a) != 3 {
		t.Fatalf("state under version %d, want 3", version(f.tenA, a))
	}
	for _, v := range []uint32{1, 2} {
		if err := kr.Retire(ctx, f.tenA, v); err != nil {
			t.Fatal(err)
		}
	}
	if m, err := restarted(t, f, nil).DPMetrics(ctx, f.tenA, a); err != nil || m != ma {
		t.Fatalf("after retiring the old versions: %+v, %v; want %+v", m, err, ma)
	}
	// Tenant B's state put back under version 1, which is then retired:
	// the client is refused — what the re-sealing prevents.
	cur, _ := f.st.GetClient(ctx, f.tenB, b)
	bOld.Version = cur.Version
	if _, err := f.st.UpdateClient(ctx, bOld); err != nil {
		t.Fatal(err)
	}
	if err := kr.Retire(ctx, f.tenB, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := restarted(t, f, nil).DPMetrics(ctx, f.tenB, b); err == nil {
		t.Fatal("a state under a retired KEK version opened")
	}
}

// TestAuditedStepsAfterComposedLoad: after a load_state that kept or
// composed histories, the audit log's step count is the accountant's
// (accountant_steps), not the adapter's step, so an older stored state with
// at least the adapter's step count but fewer accountant steps is still a
// rollback. Entries from before accountant_steps existed count their step.
func TestAuditedStepsAfterComposedLoad(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s := restarted(t, f, func(c *Config) { c.Packages.AuditStore = f.as })
	appendRec := func(client, op string, det map[string]string) {
		t.Helper()
		if _, err := f.log.Append(ctx, audit.Record{TenantID: f.tenA, Actor: "test", Operation: "training." + op,
			Resource: client, Outcome: audit.OutcomeSuccess, Details: det}); err != nil {
			t.Fatal(err)
		}
	}
	appendRec("c_new", store.KindLoadState, map[string]string{"step": "2", "accountant_steps": "7"})
	appendRec("c_new", store.KindOptimStep, nil)
	appendRec("c_old", store.KindLoadState, map[string]string{"step": "3"})
	appendRec("c_old", store.KindOptimStep, nil)
	appendRec("c_old", store.KindOptimStep, nil)
	for _, c := range []struct {
		client string
		want   int64
	}{{"c_new", 8}, {"c_old", 5}} {
		n, ok, err := s.auditedSteps(ctx, f.tenA, c.client)
		if err != nil || !ok || n != c.want {
			t.Fatalf("%s: auditedSteps = %d, %v, %v; want %d", c.client, n, ok, err, c.want)
		}
	}
	if err := s.checkRollback(ctx, f.tenA, "c_new", 3); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("a state of 3 accountant steps after a load of 7: %v", err)
	}
}
