package audit

import (
	"context"
	"errors"
	"testing"
)

func TestWitness(t *testing.T) {
	key := newKey(t)
	l, _ := newTestLog(t, key, 3, 1<<20)
	defer l.Close()
	ctx := context.Background()
	note := func() []byte {
		t.Helper()
		n, err := l.Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	n4 := note()
	w := NewWitness(testOrigin, key.Public(), nil)
	c4, err := w.Update(n4, nil)
	if err != nil {
		t.Fatalf("first checkpoint: %v", err)
	}
	for i := 0; i < 5; i++ {
		l.Append(ctx, testRecord(i))
	}
	n9 := note()
	p, err := l.ConsistencyProof(ctx, 4, 9)
	if err != nil {
		t.Fatal(err)
	}

	// A wrong consistency proof is refused and leaves the witness unchanged.
	bad := append([]Hash(nil), p...)
	bad[0][0] ^= 1
	if _, err := w.Update(n9, bad); !errors.Is(err, ErrInconsistentCheckpoint) {
		t.Fatalf("bad consistency proof: %v, want ErrInconsistentCheckpoint", err)
	}
	if w.Latest().Size != 4 {
		t.Fatal("a refused update changed the witness")
	}
	if _, err := w.Update(n9, p); err != nil {
		t.Fatalf("consistent extension: %v", err)
	}

	// Stale: the older checkpoint again.
	if _, err := w.Update(n4, nil); !errors.Is(err, ErrStaleCheckpoint) {
		t.Fatalf("replayed older checkpoint: %v, want ErrStaleCheckpoint", err)
	}
	// Forged: another key.
	forged, _ := SignCheckpoint(*c4, newKey(t))
	if _, err := w.Update(forged, nil); !errors.Is(err, ErrForgedCheckpoint) {
		t.Fatalf("checkpoint by another key: %v, want ErrForgedCheckpoint", err)
	}
	// A fork: a checkpoint of the same size with another root, signed by
	// the log's own key (an equivocating log).
	fork := Checkpoint{Origin: testOrigin, Size: 9, Root: Hash{1}, Time: w.Latest().Time}
	fn, _ := SignCheckpoint(fork, key)
	if _, err := w.Update(fn, nil); !errors.Is(err, ErrInconsistentCheckpoint) {
		t.Fatalf("forked checkpoint: %v, want ErrInconsistentCheckpoint", err)
	}
	// A larger tree that does not extend the known one (another history
	// signed by the same key) fails its consistency proof.
	l2, _ := newTestLog(t, key, 12, 1<<20)
	defer l2.Close()
	size2, root2 := l2.Head()
	other, _ := SignCheckpoint(Checkpoint{Origin: testOrigin, Size: size2, Root: root2, Time: w.Latest().Time.Add(1)}, key)
	p2, _ := l2.ConsistencyProof(ctx, 9, size2)
	if _, err := w.Update(other, p2); !errors.Is(err, ErrInconsistentCheckpoint) {
		t.Fatalf("checkpoint of another history: %v, want ErrInconsistentCheckpoint", err)
	}
	// Another origin.
	oc, _ := SignCheckpoint(Checkpoint{Origin: "other.test/audit", Size: 10, Root: Hash{}, Time: w.Latest().Time}, key)
	if _, err := w.Update(oc, nil); !errors.Is(err, ErrForgedCheckpoint) {
		t.Fatalf("checkpoint of another origin: %v, want ErrForgedCheckpoint", err)
	}
	if w.Latest().Size != 9 {
		t.Fatalf("witness moved to %d after refusals", w.Latest().Size)
	}
}
