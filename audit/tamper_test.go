package audit

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tensafe/tensafe/seal"
)

// The tamper tests build a log of 21 entries (genesis + 20) with
// checkpoints at sizes 5, 10, 15, 20 and 21 (on Close), alter the files as
// an attacker with write access would, and check what Verify names.

const tamperEntries = 20

func decodeLine(t *testing.T, line []byte) Entry {
	t.Helper()
	e, err := DecodeEntry(bytes.TrimSuffix(line, []byte("\n")))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func encodeLine(t *testing.T, e Entry) []byte {
	t.Helper()
	b, err := e.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// rechain recomputes prev_hash and entry_hash of lines[from:], as an
// attacker rewriting the log from some point on would.
func rechain(t *testing.T, lines [][]byte, from int) {
	t.Helper()
	prev := decodeLine(t, lines[from-1])
	for i := from; i < len(lines); i++ {
		e := decodeLine(t, lines[i])
		e.PrevHash = prev.EntryHash
		e.EntryHash = e.ComputeHash()
		lines[i] = encodeLine(t, e)
		prev = e
	}
}

func TestTamperedEntries(t *testing.T) {
	key := newKey(t)
	tests := []struct {
		name   string
		tamper func(t *testing.T, lines [][]byte) [][]byte
		seq    uint64
		fault  Fault
	}{
		{"modify", func(t *testing.T, l [][]byte) [][]byte {
			l[7] = bytes.Replace(l[7], []byte(`"outcome":"success"`), []byte(`"outcome":"denied"`), 1)
			return l
		}, 7, FaultHash},
		{"modify and rehash", func(t *testing.T, l [][]byte) [][]byte {
			e := decodeLine(t, l[7])
			e.TenantID = "tenant-evil"
			e.EntryHash = e.ComputeHash()
			l[7] = encodeLine(t, e)
			return l
		}, 8, FaultLink},
		{"modify the time", func(t *testing.T, l [][]byte) [][]byte {
			e := decodeLine(t, l[7])
			e.Time = e.Time.Add(-1e9)
			l[7] = encodeLine(t, e)
			return l
		}, 7, FaultHash},
		{"date before the previous entry", func(t *testing.T, l [][]byte) [][]byte {
			e := decodeLine(t, l[7])
			e.Time = decodeLine(t, l[6]).Time.Add(-1)
			e.EntryHash = e.ComputeHash()
			l[7] = encodeLine(t, e)
			rechain(t, l, 8)
			return l
		}, 7, FaultTime},
		{"delete", func(t *testing.T, l [][]byte) [][]byte {
			return append(l[:7:7], l[8:]...)
		}, 7, FaultSeq},
		{"delete the last", func(t *testing.T, l [][]byte) [][]byte {
			return l[:len(l)-1]
		}, 20, FaultTruncated},
		{"delete and renumber", func(t *testing.T, l [][]byte) [][]byte {
			l = append(l[:7:7], l[8:]...)
			for i := 7; i < len(l); i++ {
				e := decodeLine(t, l[i])
				e.Seq = uint64(i)
				e.EntryHash = e.ComputeHash()
				l[i] = encodeLine(t, e)
			}
			return l
		}, 7, FaultLink},
		{"insert a copy", func(t *testing.T, l [][]byte) [][]byte {
			return append(l[:7:7], append([][]byte{l[3]}, l[7:]...)...)
		}, 7, FaultSeq},
		{"insert a forged entry", func(t *testing.T, l [][]byte) [][]byte {
			prev := decodeLine(t, l[6])
			e := Entry{Seq: 7, Time: prev.Time, Record: testRecord(1), PrevHash: prev.EntryHash}
			e.EntryHash = e.ComputeHash()
			return append(l[:7:7], append([][]byte{encodeLine(t, e)}, l[7:]...)...)
		}, 8, FaultSeq},
		{"reorder", func(t *testing.T, l [][]byte) [][]byte {
			l[7], l[8] = l[8], l[7]
			return l
		}, 7, FaultSeq},
		{"reorder and renumber", func(t *testing.T, l [][]byte) [][]byte {
			a, b := decodeLine(t, l[7]), decodeLine(t, l[8])
			a.Seq, b.Seq = 8, 7
			a.EntryHash, b.EntryHash = a.ComputeHash(), b.ComputeHash()
			l[7], l[8] = encodeLine(t, b), encodeLine(t, a)
			return l
		}, 7, FaultLink},
		{"rewrite the chain", func(t *testing.T, l [][]byte) [][]byte {
			e := decodeLine(t, l[12])
			e.Outcome = OutcomeFailure
			l[12] = encodeLine(t, e)
			rechain(t, l, 12)
			return l
		}, 10, FaultRewritten}, // the last checkpoint that still matches covers [0, 10)
		{"truncate below a checkpoint", func(t *testing.T, l [][]byte) [][]byte {
			return l[:17]
		}, 17, FaultTruncated},
		{"garbage line", func(t *testing.T, l [][]byte) [][]byte {
			l[5] = []byte("{not json}\n")
			return l
		}, 5, FaultDecode},
		{"torn tail", func(t *testing.T, l [][]byte) [][]byte {
			return append(l, l[3][:40])
		}, 21, FaultTornTail},
		{"genesis modified", func(t *testing.T, l [][]byte) [][]byte {
			l[0] = bytes.Replace(l[0], []byte(testOrigin), []byte("evil.test/audit"), 2)
			return l
		}, 0, FaultHash},
		{"genesis deleted", func(t *testing.T, l [][]byte) [][]byte {
			return l[1:]
		}, 0, FaultSeq},
		{"genesis replaced", func(t *testing.T, l [][]byte) [][]byte {
			e := decodeLine(t, l[0])
			e.Operation = "training.step"
			e.EntryHash = e.ComputeHash()
			l[0] = encodeLine(t, e)
			return l
		}, 0, FaultGenesis},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := buildLog(t, key, tamperEntries, 5)
			path := filepath.Join(dir, EntriesFile)
			if _, err := verifyDir(t, dir, VerifyOptions{Key: key.Public()}); err != nil {
				t.Fatalf("before tampering: %v", err)
			}
			writeLines(t, path, tc.tamper(t, readLines(t, path)))
			_, err := verifyDir(t, dir, VerifyOptions{Key: key.Public()})
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("Verify = %v, want a *VerifyError", err)
			}
			if ve.Seq != tc.seq || ve.Fault != tc.fault {
				t.Fatalf("Verify names seq %d (%s), want seq %d (%s): %v", ve.Seq, ve.Fault, tc.seq, tc.fault, err)
			}
			if !strings.Contains(err.Error(), "first bad seq") {
				t.Fatalf("error %q does not say \"first bad seq\"", err)
			}
		})
	}
}

// TestVerifyRange checks that From and To bound the entries checked in
// full, while the checkpoints still cover the whole log.
func TestVerifyRange(t *testing.T) {
	key := newKey(t)
	dir := buildLog(t, key, tamperEntries, 5)
	path := filepath.Join(dir, EntriesFile)
	lines := readLines(t, path)
	lines[15] = bytes.Replace(lines[15], []byte(`"outcome":"success"`), []byte(`"outcome":"denied"`), 1)
	writeLines(t, path, lines)

	if _, err := verifyDir(t, dir, VerifyOptions{Key: key.Public(), From: 3, To: 15}); err != nil {
		t.Fatalf("Verify [3, 15) of a log altered at 15: %v", err)
	}
	_, err := verifyDir(t, dir, VerifyOptions{Key: key.Public(), From: 12})
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Seq != 15 {
		t.Fatalf("Verify from 12 = %v, want seq 15", err)
	}
	if _, err := verifyDir(t, dir, VerifyOptions{Key: key.Public(), From: 30}); err == nil || !strings.Contains(err.Error(), "beyond") {
		t.Fatalf("Verify from beyond the end = %v", err)
	}
}

func TestTamperedCheckpoints(t *testing.T) {
	key := newKey(t)
	other := newKey(t)
	resign := func(t *testing.T, note []byte, k *seal.SigningKey, mod func(c *Checkpoint)) []byte {
		sc, err := ParseCheckpoint(note)
		if err != nil {
			t.Fatal(err)
		}
		c := sc.Checkpoint
		if mod != nil {
			mod(&c)
		}
		n, err := SignCheckpoint(c, k)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	line := mustLine
	tests := []struct {
		name    string
		tamper  func(t *testing.T, cps [][]byte, notes [][]byte) [][]byte
		trusted int // index of the original checkpoint given as trusted, or -1
		index   int
		want    error
	}{
		{"signed by another key", func(t *testing.T, cps, notes [][]byte) [][]byte {
			cps[2] = line(t, resign(t, notes[2], other, nil))
			return cps
		}, -1, 2, ErrForgedCheckpoint},
		{"size altered", func(t *testing.T, cps, notes [][]byte) [][]byte {
			cps[1] = line(t, bytes.Replace(notes[1], []byte("\n10\n"), []byte("\n11\n"), 1))
			return cps
		}, -1, 1, ErrForgedCheckpoint},
		{"another origin", func(t *testing.T, cps, notes [][]byte) [][]byte {
			cps[1] = line(t, resign(t, notes[1], key, func(c *Checkpoint) { c.Origin = "evil.test/audit" }))
			return cps
		}, -1, 1, ErrForgedCheckpoint},
		{"reordered", func(t *testing.T, cps, notes [][]byte) [][]byte {
			cps[1], cps[2] = cps[2], cps[1]
			return cps
		}, -1, 2, ErrStaleCheckpoint},
		{"replayed older checkpoint", func(t *testing.T, cps, notes [][]byte) [][]byte {
			return append(cps, cps[0])
		}, -1, 5, ErrStaleCheckpoint},
		{"time moved back", func(t *testing.T, cps, notes [][]byte) [][]byte {
			cps[3] = line(t, resign(t, notes[3], key, func(c *Checkpoint) {
				sc, _ := ParseCheckpoint(notes[1])
				c.Time = sc.Time.Add(-1)
			}))
			return cps
		}, -1, 3, ErrStaleCheckpoint},
		{"rolled back below a trusted checkpoint", func(t *testing.T, cps, notes [][]byte) [][]byte {
			return cps[:2]
		}, 4, -1, ErrStaleCheckpoint},
		{"malformed", func(t *testing.T, cps, notes [][]byte) [][]byte {
			cps[0] = line(t, []byte("not a checkpoint\n"))
			return cps
		}, -1, 0, ErrMalformedCheckpoint},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := buildLog(t, key, tamperEntries, 5)
			path := filepath.Join(dir, CheckpointsFile)
			fs, _ := OpenFileStore(dir, FileOptions{ReadOnly: true})
			notes, err := fs.Checkpoints(context.Background())
			if err != nil || len(notes) != 5 {
				t.Fatalf("Checkpoints: %d, %v; want 5", len(notes), err)
			}
			opts := VerifyOptions{Key: key.Public()}
			if tc.trusted >= 0 {
				opts.Trusted = notes[tc.trusted]
			}
			writeLines(t, path, tc.tamper(t, readLines(t, path), notes))
			_, err = verifyDir(t, dir, opts)
			var ce *CheckpointError
			if !errors.As(err, &ce) || !errors.Is(err, tc.want) || ce.Index != tc.index {
				t.Fatalf("Verify = %v, want a *CheckpointError #%d wrapping %v", err, tc.index, tc.want)
			}
		})
	}
}

// TestRewriteAndDropCheckpoints shows what checkpoints kept outside the
// log's storage add: an attacker who rewrites the chain and deletes the
// checkpoints that no longer match leaves a log that verifies on its own,
// but not against a checkpoint a witness kept.
func TestRewriteAndDropCheckpoints(t *testing.T) {
	key := newKey(t)
	dir := buildLog(t, key, tamperEntries, 5)
	fs, _ := OpenFileStore(dir, FileOptions{ReadOnly: true})
	notes, _ := fs.Checkpoints(context.Background())
	witnessed := notes[len(notes)-1]

	ep := filepath.Join(dir, EntriesFile)
	lines := readLines(t, ep)
	e := decodeLine(t, lines[12])
	e.Outcome = OutcomeFailure
	lines[12] = encodeLine(t, e)
	rechain(t, lines, 12)
	writeLines(t, ep, lines)
	cp := filepath.Join(dir, CheckpointsFile)
	writeLines(t, cp, readLines(t, cp)[:2]) // keep sizes 5 and 10

	if _, err := verifyDir(t, dir, VerifyOptions{Key: key.Public()}); err != nil {
		t.Fatalf("without outside knowledge the rewritten log verifies, as expected; got %v", err)
	}
	_, err := verifyDir(t, dir, VerifyOptions{Key: key.Public(), Trusted: witnessed})
	if !errors.Is(err, ErrStaleCheckpoint) {
		t.Fatalf("Verify against the witnessed checkpoint = %v, want ErrStaleCheckpoint", err)
	}
	// Even with the checkpoint file intact up to the witnessed size, the
	// rewritten entries do not match it.
	writeLines(t, cp, [][]byte{readLines(t, cp)[0], mustLine(t, witnessed)})
	_, err = verifyDir(t, dir, VerifyOptions{Key: key.Public(), Trusted: witnessed})
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Fault != FaultRewritten || ve.Seq != 5 {
		t.Fatalf("Verify = %v, want FaultRewritten from seq 5", err)
	}
}

func mustLine(t *testing.T, note []byte) []byte {
	b, err := jsonMarshalLine(checkpointLine{Note: string(note)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVerifyWithoutKey(t *testing.T) {
	key := newKey(t)
	dir := buildLog(t, key, 6, 5)
	res, err := verifyDir(t, dir, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.SignaturesChecked || res.Checkpoints != 2 {
		t.Fatalf("result %+v: want 2 checkpoints with signatures unchecked", res)
	}
	// With the wrong key, every checkpoint is forged.
	_, err = verifyDir(t, dir, VerifyOptions{Key: newKey(t).Public()})
	if !errors.Is(err, ErrForgedCheckpoint) {
		t.Fatalf("Verify with another key = %v, want ErrForgedCheckpoint", err)
	}
}
