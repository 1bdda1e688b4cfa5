package audit

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTornTail simulates a crash in the middle of an append (a partial
// last line) and checks that it is reported on open and on verify, never
// dropped silently, and that an explicit repair keeps the bytes and puts
// the repair on the record.
func TestTornTail(t *testing.T) {
	key := newKey(t)
	dir := buildLog(t, key, 5, 100)
	path := filepath.Join(dir, EntriesFile)
	orig, _ := os.ReadFile(path)
	lines := readLines(t, path)
	partial := lines[2][:57] // a prefix of a line, as a torn write leaves it
	if err := os.WriteFile(path, append(bytes.Clone(orig), partial...), 0o600); err != nil {
		t.Fatal(err)
	}

	// Opening for writing refuses, naming where and what.
	_, err := OpenFileStore(dir, FileOptions{})
	var tt *TornTailError
	if !errors.As(err, &tt) {
		t.Fatalf("OpenFileStore = %v, want *TornTailError", err)
	}
	if tt.Offset != int64(len(orig)) || tt.Length != int64(len(partial)) || tt.Pos != 6 {
		t.Fatalf("torn tail %+v: want offset %d, length %d, record 6", tt, len(orig), len(partial))
	}
	// Verify reports it as the first bad seq.
	_, err = verifyDir(t, dir, VerifyOptions{Key: key.Public()})
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Fault != FaultTornTail || ve.Seq != 6 {
		t.Fatalf("Verify = %v, want FaultTornTail at seq 6", err)
	}
	// The file is untouched by both.
	if b, _ := os.ReadFile(path); !bytes.Equal(b, append(bytes.Clone(orig), partial...)) {
		t.Fatal("open or verify changed the file")
	}

	// Repair: the bytes move aside, the file ends at the last complete entry.
	repairs, err := RepairTornTail(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(repairs) != 1 || repairs[0].Length != int64(len(partial)) {
		t.Fatalf("repairs %+v", repairs)
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, orig) {
		t.Fatal("repair did not truncate to the last complete entry")
	}
	saved, _ := os.ReadFile(path + tornSuffix)
	if !bytes.Contains(saved, partial) {
		t.Fatal("the torn bytes were not saved aside")
	}
	// Record the repair, then the log verifies.
	fs, err := OpenFileStore(dir, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := Open(context.Background(), fs, Options{Origin: testOrigin, Signer: key})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.RecordRepair(context.Background(), "operator:alice", repairs); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var got Entry
	fs2, _ := OpenFileStore(dir, FileOptions{ReadOnly: true})
	fs2.Scan(context.Background(), 6, func(_ uint64, e Entry) error { got = e; return errStopScan })
	if got.Operation != RepairOperation || got.Details["length"] != "57" || !strings.HasPrefix(got.Details["moved_sha256"], "sha256:") {
		t.Fatalf("repair entry %+v", got)
	}
	if _, err := verifyDir(t, dir, VerifyOptions{Key: key.Public()}); err != nil {
		t.Fatal(err)
	}
}

func TestTornCheckpointTail(t *testing.T) {
	key := newKey(t)
	dir := buildLog(t, key, 5, 2)
	path := filepath.Join(dir, CheckpointsFile)
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"note":"tensafe.test/au`)
	f.Close()
	if _, err := OpenFileStore(dir, FileOptions{}); !errors.As(err, new(*TornTailError)) {
		t.Fatalf("OpenFileStore = %v, want *TornTailError", err)
	}
	_, err := verifyDir(t, dir, VerifyOptions{Key: key.Public()})
	if !errors.As(err, new(*TornTailError)) || !strings.Contains(err.Error(), "checkpoints") {
		t.Fatalf("Verify = %v, want the checkpoints' torn tail", err)
	}
	if _, err := RepairTornTail(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := verifyDir(t, dir, VerifyOptions{Key: key.Public()}); err != nil {
		t.Fatal(err)
	}
}

func TestFileStoreLongLine(t *testing.T) {
	dir := buildLog(t, nil, 2, 100)
	path := filepath.Join(dir, EntriesFile)
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.Write(bytes.Repeat([]byte("x"), maxEncodedEntryLen+10))
	f.Write([]byte("\n"))
	f.Close()
	_, err := verifyDir(t, dir, VerifyOptions{})
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Fault != FaultDecode || ve.Seq != 3 {
		t.Fatalf("Verify = %v, want FaultDecode at seq 3", err)
	}
}

func TestOpenEmptyWithCheckpointsRefused(t *testing.T) {
	key := newKey(t)
	dir := buildLog(t, key, 5, 2)
	// Delete every entry, keep the checkpoints: a truncated log, not a new one.
	if err := os.WriteFile(filepath.Join(dir, EntriesFile), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	fs, err := OpenFileStore(dir, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	_, err = Open(context.Background(), fs, Options{Origin: testOrigin, Signer: key})
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Seq != 0 {
		t.Fatalf("Open = %v, want a VerifyError at seq 0", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, EntriesFile)); len(b) != 0 {
		t.Fatal("Open wrote a new genesis over a truncated log")
	}
}
