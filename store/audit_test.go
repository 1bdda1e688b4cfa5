package store

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/seal"
)

const testOrigin = "tensafe.test/audit"

func auditKey(t testing.TB) *seal.SigningKey {
	t.Helper()
	k, err := seal.GenerateSigningKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func auditRecord(i int) audit.Record {
	return audit.Record{
		TenantID:  fmt.Sprintf("t%d", i%3),
		Actor:     "key:k1",
		Operation: "training.optim_step",
		Resource:  fmt.Sprintf("training_client/c%d", i%4),
		Outcome:   audit.OutcomeSuccess,
		Details:   map[string]string{"step": fmt.Sprint(i)},
	}
}

func openLog(t testing.TB, s Store, name string, key *seal.SigningKey) *audit.Log {
	t.Helper()
	as, err := s.AuditStore(ctx, name)
	if err != nil {
		t.Fatalf("AuditStore(%s): %v", name, err)
	}
	l, err := audit.Open(ctx, as, audit.Options{Origin: testOrigin, Signer: key, CheckpointEvery: 16, CheckpointInterval: -1})
	if err != nil {
		as.Close()
		t.Fatalf("audit.Open over %s: %v", name, err)
	}
	return l
}

// verifyStored verifies the log name in s with a store of its own.
func verifyStored(t *testing.T, s Store, name string, key *seal.SigningKey) (*audit.VerifyResult, error) {
	t.Helper()
	as, err := s.AuditStore(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	defer as.Close()
	return audit.Verify(ctx, as, audit.VerifyOptions{Key: key.Public()})
}

// TestAuditStoreLog runs package audit's Log over the SQL store: concurrent
// appends, checkpoints, verification, reopening and continuing the chain.
func TestAuditStoreLog(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		s := mustOpen(t, b)
		key := auditKey(t)
		l := openLog(t, s, "main", key)

		// One writer per log.
		_, err := s.AuditStore(ctx, "main")
		wantErr(t, "second AuditStore", err, ErrInUse)

		const workers, each = 8, 10
		var wg sync.WaitGroup
		errs := make(chan error, workers*each)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; i < each; i++ {
					if _, err := l.Append(ctx, auditRecord(w*each+i)); err != nil {
						errs <- err
					}
				}
			}(w)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		res, err := l.Verify(ctx, 0, 0)
		if err != nil || res.Size != workers*each+1 || res.Checkpoints == 0 || !res.SignaturesChecked {
			t.Fatalf("Verify = %+v, %v", res, err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		res, err = verifyStored(t, s, "main", key)
		if err != nil || res.Size != workers*each+1 || res.Latest == nil || res.Latest.Size != workers*each+1 {
			t.Fatalf("Verify after Close = %+v, %v", res, err)
		}

		// Reopen: the chain continues.
		l = openLog(t, s, "main", key)
		e, err := l.Append(ctx, auditRecord(1000))
		if err != nil || e.Seq != workers*each+1 {
			t.Fatalf("first append after reopen: seq %d, %v", e.Seq, err)
		}
		// Another log in the same database is independent.
		l2 := openLog(t, s, "other", key)
		if e, err := l2.Append(ctx, auditRecord(1)); err != nil || e.Seq != 1 {
			t.Fatalf("other log: seq %d, %v", e.Seq, err)
		}
		if err := l2.Close(); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}

		// Restart the database: all of it is there.
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = mustOpen(t, b)
		res, err = verifyStored(t, s, "main", key)
		if err != nil || res.Size != workers*each+2 {
			t.Fatalf("Verify after restart = %+v, %v", res, err)
		}
		// Scan from the middle reports positions from there.
		as, _ := s.AuditStore(ctx, "main")
		defer as.Close()
		var seen []uint64
		err = as.Scan(ctx, 40, func(pos uint64, e audit.Entry) error {
			if pos != e.Seq {
				return fmt.Errorf("pos %d holds seq %d", pos, e.Seq)
			}
			seen = append(seen, pos)
			return nil
		})
		if err != nil || len(seen) != workers*each+2-40 || seen[0] != 40 {
			t.Fatalf("Scan(40): %d entries from %v, %v", len(seen), seen[:min(1, len(seen))], err)
		}
		stop := errors.New("stop")
		n := 0
		if err := as.Scan(ctx, 0, func(uint64, audit.Entry) error { n++; return stop }); err != stop || n != 1 {
			t.Fatalf("Scan did not stop at fn's error: %v after %d", err, n)
		}
	})
}

// TestAuditStoreRefuses: appends that do not continue the log are refused
// and leave it unchanged; the tables refuse UPDATE and DELETE.
func TestAuditStoreRefuses(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		s := mustOpen(t, b)
		key := auditKey(t)
		l := openLog(t, s, "main", key)
		for i := 0; i < 5; i++ {
			if _, err := l.Append(ctx, auditRecord(i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		as, err := s.AuditStore(ctx, "main")
		if err != nil {
			t.Fatal(err)
		}
		var last audit.Entry
		as.Scan(ctx, 0, func(_ uint64, e audit.Entry) error { last = e; return nil })
		next := last
		next.Seq++
		gap := last
		gap.Seq += 2
		for name, batch := range map[string][]audit.Entry{
			"rewrite":     {last},
			"gap":         {gap},
			"not in line": {next, next},
			"gap inside":  {next, gap, gap},
		} {
			if err := as.Append(ctx, batch); err == nil {
				t.Fatalf("Append %s succeeded", name)
			}
		}
		if err := as.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := as.Checkpoints(ctx); !errors.Is(err, ErrClosed) {
			t.Fatalf("Checkpoints after Close: %v", err)
		}
		if res, err := verifyStored(t, s, "main", key); err != nil || res.Size != 6 {
			t.Fatalf("after refused appends: %+v, %v", res, err)
		}
		for _, q := range []string{
			"UPDATE audit_entries SET entry = 'x' WHERE seq = 1",
			"DELETE FROM audit_entries WHERE seq = 5",
			"UPDATE audit_checkpoints SET note = note",
			"DELETE FROM audit_checkpoints",
		} {
			err := b.tryExec(q)
			if err == nil || !strings.Contains(err.Error(), "append-only") {
				t.Fatalf("%s: %v, want the append-only trigger's refusal", q, err)
			}
		}
		if b.name == "postgres" {
			if err := b.tryExec("TRUNCATE audit_entries"); err == nil || !strings.Contains(err.Error(), "append-only") {
				t.Fatalf("TRUNCATE: %v", err)
			}
		}
		if res, err := verifyStored(t, s, "main", key); err != nil || res.Size != 6 {
			t.Fatalf("after refused SQL: %+v, %v", res, err)
		}
	})
}

// TestAuditStoreTamper: whoever drops the triggers and edits rows is
// caught by audit.Verify, naming the first bad seq.
func TestAuditStoreTamper(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		s := mustOpen(t, b)
		key := auditKey(t)
		l := openLog(t, s, "main", key)
		for i := 0; i < 40; i++ {
			if _, err := l.Append(ctx, auditRecord(i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if b.name == "sqlite" {
			b.exec(t, "DROP TRIGGER audit_entries_no_update")
			b.exec(t, "DROP TRIGGER audit_entries_no_delete")
		} else {
			b.exec(t, "DROP TRIGGER audit_entries_append_only ON audit_entries")
		}
		// An edited entry: its content no longer hashes to entry_hash.
		b.exec(t, "UPDATE audit_entries SET entry = REPLACE(entry, '\"key:k1\"', '\"key:k2\"') WHERE seq = 7")
		_, err := verifyStored(t, s, "main", key)
		var ve *audit.VerifyError
		if !errors.As(err, &ve) || ve.Seq != 7 || ve.Fault != audit.FaultHash {
			t.Fatalf("edited entry: %v, want FaultHash at 7", err)
		}
		b.exec(t, "UPDATE audit_entries SET entry = REPLACE(entry, '\"key:k2\"', '\"key:k1\"') WHERE seq = 7")
		if _, err := verifyStored(t, s, "main", key); err != nil {
			t.Fatalf("restored entry: %v", err)
		}
		// A deleted entry: the next one is out of place.
		b.exec(t, "DELETE FROM audit_entries WHERE seq = 12")
		_, err = verifyStored(t, s, "main", key)
		if !errors.As(err, &ve) || ve.Seq != 12 || ve.Fault != audit.FaultSeq {
			t.Fatalf("deleted entry: %v, want FaultSeq at 12", err)
		}
		// Undecodable JSON stops the scan at its position.
		b.exec(t, "UPDATE audit_entries SET entry = '{' WHERE seq = 3")
		_, err = verifyStored(t, s, "main", key)
		if !errors.As(err, &ve) || ve.Seq != 3 || ve.Fault != audit.FaultDecode {
			t.Fatalf("corrupt entry: %v, want FaultDecode at 3", err)
		}
		as, _ := s.AuditStore(ctx, "main")
		err = as.Scan(ctx, 0, func(uint64, audit.Entry) error { return nil })
		var ce *audit.CorruptError
		if !errors.As(err, &ce) || ce.Pos != 3 {
			t.Fatalf("Scan over a corrupt entry: %v, want a CorruptError at 3", err)
		}
		// The log refuses to open for appending.
		if _, err := audit.Open(ctx, as, audit.Options{Origin: testOrigin, Signer: key}); err == nil {
			t.Fatal("audit.Open accepted a tampered log")
		}
		as.Close()
	})
}

// TestAuditCheckpointGap: a deleted checkpoint row is reported, not
// skipped.
func TestAuditCheckpointGap(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		s := mustOpen(t, b)
		key := auditKey(t)
		l := openLog(t, s, "main", key)
		for i := 0; i < 40; i++ {
			if _, err := l.Append(ctx, auditRecord(i)); err != nil {
				t.Fatal(err)
			}
		}
		l.Close()
		if b.name == "sqlite" {
			b.exec(t, "DROP TRIGGER audit_checkpoints_no_delete")
		} else {
			b.exec(t, "DROP TRIGGER audit_checkpoints_append_only ON audit_checkpoints")
		}
		b.exec(t, "DELETE FROM audit_checkpoints WHERE idx = 1")
		as, _ := s.AuditStore(ctx, "main")
		defer as.Close()
		notes, err := as.Checkpoints(ctx)
		var ce *audit.CorruptError
		if !errors.As(err, &ce) || ce.Pos != 1 || len(notes) != 1 {
			t.Fatalf("Checkpoints with a gap: %d notes, %v", len(notes), err)
		}
	})
}

func TestAuditStoreClosedDB(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		s := b.open(t)
		as, err := s.AuditStore(ctx, "main")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err == nil || !strings.Contains(err.Error(), "audit store") {
			t.Fatalf("Close with an open audit store: %v", err)
		}
		as.Close()
		_, err = s.AuditStore(ctx, "main")
		wantErr(t, "AuditStore after Close", err, ErrClosed)
	})
}
