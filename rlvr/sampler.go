package rlvr

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// samplerDomain separates the seeded sampler's hashes from any other use
// of the seed.
const samplerDomain = "tensafe-rlvr-poisson/v1"

// PoissonSample draws one step's prompts by Poisson sampling: each of the
// n prompts is included independently with probability rate, and the
// indices of those drawn are returned in increasing order (possibly none).
// This is the sampling that DP-SGD's amplification by subsampling — and so
// the accountant's sampling rate q — assumes.
//
// With seed nil, the draws come from crypto/rand: nobody, the caller
// included, can predict or replay which prompts a step used. A non-nil
// seed makes the draw a function of (seed, step): prompt i is included when
// the first 8 bytes of SHA-256("tensafe-rlvr-poisson/v1" ‖ seed ‖ step ‖ i)
// (step and i as big-endian uint64), read as a big-endian integer whose top
// 53 bits u give u/2^53 < rate. A seeded draw is for tests only: whoever
// knows the seed knows which prompts each step used, which the privacy
// amplification of sampling assumes nobody does.
func PoissonSample(rate float64, n int, seed []byte, step int) ([]int, error) {
	if !(rate >= 0 && rate <= 1) {
		return nil, fmt.Errorf("rlvr: poisson sampling: rate must be in [0, 1], got %v", rate)
	}
	if n < 0 || step < 0 {
		return nil, fmt.Errorf("rlvr: poisson sampling: negative count %d or step %d", n, step)
	}
	words := make([]uint64, n)
	if seed == nil {
		buf := make([]byte, 8*n)
		if _, err := rand.Read(buf); err != nil {
			return nil, fmt.Errorf("rlvr: poisson sampling: %w", err)
		}
		for i := range words {
			words[i] = binary.BigEndian.Uint64(buf[8*i:])
		}
	} else {
		msg := make([]byte, 0, len(samplerDomain)+len(seed)+16)
		msg = append(append(msg, samplerDomain...), seed...)
		msg = binary.BigEndian.AppendUint64(msg, uint64(step))
		prefix := len(msg)
		msg = append(msg, make([]byte, 8)...)
		for i := range words {
			binary.BigEndian.PutUint64(msg[prefix:], uint64(i))
			sum := sha256.Sum256(msg)
			words[i] = binary.BigEndian.Uint64(sum[:8])
		}
	}
	var out []int
	for i, w := range words {
		if float64(w>>11)/(1<<53) < rate {
			out = append(out, i)
		}
	}
	return out, nil
}
