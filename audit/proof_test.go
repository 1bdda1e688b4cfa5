package audit

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
)

func TestInclusionProofs(t *testing.T) {
	key := newKey(t)
	l, _ := newTestLog(t, key, 40, 16) // checkpoints at 16 and 32
	defer l.Close()
	ctx := context.Background()
	for _, seq := range []uint64{0, 1, 15, 16, 31, 32, 40} {
		p, err := l.InclusionProof(ctx, seq, 0)
		if err != nil {
			t.Fatal(err)
		}
		wantSize := uint64(41)
		switch {
		case seq < 16:
			wantSize = 32 // the latest checkpoint that covers seq
		case seq < 32:
			wantSize = 32
		}
		if p.TreeSize != wantSize {
			t.Fatalf("seq %d: proof against size %d, want %d", seq, p.TreeSize, wantSize)
		}
		if wantSize == 32 && p.Checkpoint == nil {
			t.Fatalf("seq %d: no checkpoint in the proof", seq)
		}
		key2 := key.Public()
		if p.Checkpoint == nil {
			key2 = nil
		}
		if err := p.Verify(key2); err != nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
		// O(log n): at most ceil(log2(size)) hashes.
		if len(p.Hashes) > 6 {
			t.Fatalf("seq %d: %d proof hashes for a tree of %d", seq, len(p.Hashes), p.TreeSize)
		}
		// JSON round trip.
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var q InclusionProof
		if err := json.Unmarshal(b, &q); err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
		if err := q.Verify(key2); err != nil {
			t.Fatalf("seq %d after JSON: %v", seq, err)
		}
	}

	p, err := l.InclusionProof(ctx, 20, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Tampering with any part of the proof is caught.
	tampers := map[string]func(q *InclusionProof){
		"entry content": func(q *InclusionProof) { q.Entry.Outcome = OutcomeDenied },
		"entry rehashed": func(q *InclusionProof) {
			q.Entry.Outcome = OutcomeDenied
			q.Entry.EntryHash = q.Entry.ComputeHash()
		},
		"path":      func(q *InclusionProof) { q.Hashes[1][5] ^= 1 },
		"seq":       func(q *InclusionProof) { q.Seq = 21 },
		"root":      func(q *InclusionProof) { q.Root[0] ^= 1 },
		"tree size": func(q *InclusionProof) { q.TreeSize = 33 },
		"no checkpoint": func(q *InclusionProof) {
			q.Checkpoint = nil
		},
	}
	for name, mod := range tampers {
		q := *p
		q.Hashes = append([]Hash(nil), p.Hashes...)
		mod(&q)
		if err := q.Verify(key.Public()); err == nil {
			t.Errorf("%s: tampered proof verified", name)
		}
	}
	// A checkpoint by another key is refused.
	q := *p
	other := newKey(t)
	sc, _ := ParseCheckpoint(p.Checkpoint)
	q.Checkpoint, _ = SignCheckpoint(sc.Checkpoint, other)
	if err := q.Verify(key.Public()); !errors.Is(err, ErrForgedCheckpoint) {
		t.Fatalf("proof with a forged checkpoint: %v", err)
	}
	if _, err := l.InclusionProof(ctx, 41, 0); err == nil {
		t.Fatal("proof of a seq beyond the log")
	}
}
