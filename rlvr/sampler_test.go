package rlvr

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
	"slices"
	"testing"
)

// TestPoissonSampleSeeded: a seeded draw is a function of (seed, step),
// matches its definition (SHA-256 of domain ‖ seed ‖ step ‖ i), and
// differs between steps and seeds.
func TestPoissonSampleSeeded(t *testing.T) {
	seed := []byte("test seed")
	a, err := PoissonSample(0.3, 200, seed, 7)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := PoissonSample(0.3, 200, seed, 7)
	c, _ := PoissonSample(0.3, 200, seed, 8)
	d, _ := PoissonSample(0.3, 200, []byte("other seed"), 7)
	if !slices.Equal(a, b) || slices.Equal(a, c) || slices.Equal(a, d) {
		t.Errorf("seeded draws: same (seed, step) %v/%v, other step equal %v, other seed equal %v",
			a, b, slices.Equal(a, c), slices.Equal(a, d))
	}
	// The definition, spelled out independently.
	var want []int
	for i := range 200 {
		msg := append([]byte("tensafe-rlvr-poisson/v1"), seed...)
		msg = binary.BigEndian.AppendUint64(msg, 7)
		msg = binary.BigEndian.AppendUint64(msg, uint64(i))
		h := sha256.Sum256(msg)
		if u := float64(binary.BigEndian.Uint64(h[:8])>>11) / (1 << 53); u < 0.3 {
			want = append(want, i)
		}
	}
	if !slices.Equal(a, want) {
		t.Errorf("seeded draw %v, want %v", a, want)
	}
	if !slices.IsSorted(a) {
		t.Errorf("indices not increasing: %v", a)
	}
}

// TestPoissonSampleRates: rate 0 draws nothing, rate 1 everything, and
// the number drawn, for the seeded and the crypto/rand sampler, is
// Binomial(n, q): within 5 standard deviations of n·q, over many steps,
// with each index drawn about q of the time.
func TestPoissonSampleRates(t *testing.T) {
	for _, seed := range [][]byte{nil, []byte("s")} {
		if got, _ := PoissonSample(0, 50, seed, 0); len(got) != 0 {
			t.Errorf("rate 0 drew %v", got)
		}
		if got, _ := PoissonSample(1, 50, seed, 0); len(got) != 50 {
			t.Errorf("rate 1 drew %d of 50", len(got))
		}
		const n, q, steps = 40, 0.25, 400
		total := 0
		hits := make([]int, n)
		for s := range steps {
			got, err := PoissonSample(q, n, seed, s)
			if err != nil {
				t.Fatal(err)
			}
			total += len(got)
			for _, i := range got {
				hits[i]++
			}
		}
		mean, sd := float64(n*steps)*q, math.Sqrt(float64(n*steps)*q*(1-q))
		if math.Abs(float64(total)-mean) > 5*sd {
			t.Errorf("seed %q: drew %d over %d steps, expected %.0f ± %.0f", seed, total, steps, mean, sd)
		}
		perSD := math.Sqrt(steps * q * (1 - q))
		for i, h := range hits {
			if math.Abs(float64(h)-steps*q) > 6*perSD {
				t.Errorf("seed %q: prompt %d drawn %d times in %d steps, expected %.0f", seed, i, h, steps, steps*q)
			}
		}
	}
	// Two crypto/rand draws of 256 prompts at q = 1/2 are equal with
	// probability 2^-256.
	a, _ := PoissonSample(0.5, 256, nil, 0)
	b, _ := PoissonSample(0.5, 256, nil, 0)
	if slices.Equal(a, b) {
		t.Error("two unseeded draws are identical")
	}
	for _, c := range []struct {
		rate    float64
		n, step int
	}{{-0.1, 1, 0}, {1.5, 1, 0}, {math.NaN(), 1, 0}, {0.5, -1, 0}, {0.5, 1, -1}} {
		if _, err := PoissonSample(c.rate, c.n, nil, c.step); err == nil {
			t.Errorf("PoissonSample(%v, %d, nil, %d) accepted", c.rate, c.n, c.step)
		}
	}
}
