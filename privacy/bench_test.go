package privacy

import (
	"testing"
)

// BenchmarkRecordStep: per-step accounting (target < 1 µs amortized).
func BenchmarkRecordStep(b *testing.B) {
	bud, _ := NewBudget(BudgetConfig{TargetEpsilon: 8, Delta: 1e-5})
	b.ReportAllocs()
	for b.Loop() {
		if err := bud.RecordStep(0.04, 1.5); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCanStepRecordStep: the service's per-step pair, check then record,
// for RDP (the check after each record is a fresh ε computation).
func BenchmarkCanStepRecordStep(b *testing.B) {
	bud, _ := NewBudget(BudgetConfig{TargetEpsilon: 1e9, Delta: 1e-5})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := bud.CanStep(0.04, 1.5); err != nil {
			b.Fatal(err)
		}
		if err := bud.RecordStep(0.04, 1.5); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEpsilonQueryRDP: an ε query on a budget whose (q, σ) RDP vector
// is cached (target < 20 µs).
func BenchmarkEpsilonQueryRDP(b *testing.B) {
	bud, _ := NewBudget(BudgetConfig{TargetEpsilon: 8, Delta: 1e-5})
	for range 2250 {
		_ = bud.RecordStep(0.04, 1.5)
	}
	_, _ = bud.Spent()
	b.ReportAllocs()
	for b.Loop() {
		bud.mu.Lock()
		bud.spent = nil // force the computation, keep the vector cache
		bud.mu.Unlock()
		if _, err := bud.Spent(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRDPVector: one (q, σ) pair's RDP over the 155 default orders,
// computed once per pair and then cached.
func BenchmarkRDPVector(b *testing.B) {
	orders := DefaultOrders()
	for b.Loop() {
		rdpVector(0.04, 1.5, orders)
	}
}

// BenchmarkEpsilonQueryPRV: Opacus's test case, 2250 steps at q = 0.04,
// σ = 1.5, δ = 1e-5 (a grid of about 400k points).
func BenchmarkEpsilonQueryPRV(b *testing.B) {
	h := []Run{{0.04, 1.5, 2250}}
	for b.Loop() {
		if _, err := Epsilon(h, 1e-5, Options{Accountant: AccountantPRV}); err != nil {
			b.Fatal(err)
		}
	}
}
