package store

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchBackends opens a fresh SQLite store and, when
// TENSAFE_TEST_POSTGRES_URL is set, a fresh PostgreSQL schema.
func benchBackends(b *testing.B, fn func(b *testing.B, s Store)) {
	b.Run("sqlite", func(b *testing.B) {
		s, err := Open(ctx, filepath.Join(b.TempDir(), "bench.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		fn(b, s)
	})
	b.Run("postgres", func(b *testing.B) {
		if os.Getenv(postgresURLEnv) == "" {
			b.Skip(postgresURLEnv + " is unset")
		}
		be := postgresBackend(b)
		s, err := be.tryOpen()
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		fn(b, s)
	})
}

// reportPercentiles adds p50/p95/p99 latency metrics.
func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	for _, p := range []float64{50, 95, 99} {
		i := int(float64(len(lat)-1) * p / 100)
		b.ReportMetric(float64(lat[i].Microseconds()), fmt.Sprintf("p%.0f-µs", p))
	}
}

func benchSeed(b *testing.B, s Store) (token string) {
	if _, err := s.CreateTenant(ctx, Tenant{ID: "t1", Name: "bench"}); err != nil {
		b.Fatal(err)
	}
	if _, err := s.CreateClient(ctx, TrainingClient{ID: "c1", TenantID: "t1", BaseModel: "tensafe-tiny", Config: []byte(`{}`), BudgetState: make([]byte, 512)}); err != nil {
		b.Fatal(err)
	}
	token, prefix, hash, err := NewAPIToken()
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.CreateAPIKey(ctx, APIKey{ID: "k1", TenantID: "t1", Role: RoleTrainer, Prefix: prefix, Hash: hash}); err != nil {
		b.Fatal(err)
	}
	return token
}

// BenchmarkGetClientParallel: concurrent status reads (the hot path of
// GET endpoints): Authenticate + GetClient per request.
func BenchmarkGetClientParallel(b *testing.B) {
	benchBackends(b, func(b *testing.B, s Store) {
		token := benchSeed(b, s)
		var mu sync.Mutex
		var lat []time.Duration
		b.SetParallelism(8) // 8 × GOMAXPROCS goroutines
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			var mine []time.Duration
			for pb.Next() {
				t0 := time.Now()
				if _, err := Authenticate(ctx, s, token); err != nil {
					b.Error(err)
					return
				}
				if _, err := s.GetClient(ctx, "t1", "c1"); err != nil {
					b.Error(err)
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
		reportPercentiles(b, lat)
	})
}

// BenchmarkOperationLifecycle: create, run and finish one operation (three
// committed transactions), from 8 concurrent writers.
func BenchmarkOperationLifecycle(b *testing.B) {
	benchBackends(b, func(b *testing.B, s Store) {
		benchSeed(b, s)
		var n atomic.Int64
		b.SetParallelism(4)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				id := fmt.Sprintf("o%d", n.Add(1))
				op, err := s.CreateOperation(ctx, Operation{ID: id, TenantID: "t1", ClientID: "c1", Kind: KindForwardBackward, IdempotencyKey: id})
				if err != nil {
					b.Error(err)
					return
				}
				op.State = OpRunning
				if op, err = s.UpdateOperation(ctx, op); err != nil {
					b.Error(err)
					return
				}
				op.State, op.Result = OpSucceeded, []byte(`{"loss":1.25}`)
				if _, err = s.UpdateOperation(ctx, op); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkAuditAppend: audit.Log appends over the SQL store from 16
// concurrent goroutines (group commit: one transaction per batch).
func BenchmarkAuditAppend(b *testing.B) {
	benchBackends(b, func(b *testing.B, s Store) {
		l := openLog(b, s, "bench", auditKey(b))
		defer l.Close()
		var i atomic.Int64
		b.SetParallelism(8)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := l.Append(ctx, auditRecord(int(i.Add(1)))); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
