package audit

import (
	"context"
	"fmt"
)

// Store is where a Log keeps its entries and checkpoints. FileStore is the
// embedded implementation; a SQL implementation comes with the server.
//
// A Store must guarantee:
//
//   - Durability: when Append or AppendCheckpoint returns nil, the data
//     survives a crash of the process and of the machine (fsync or a
//     committed transaction).
//   - Order: Scan yields entries in the order they were appended, and
//     Checkpoints returns checkpoints in the order they were appended. A
//     Store never reorders, rewrites or drops data; it stores what it is
//     given, so that Verify sees exactly what was written (a SQL store keys
//     rows by seq and must not let an UPDATE or DELETE through its API).
//   - Atomicity per call: after a crash, either all entries of an Append
//     are present or the store reports the partial write it finds (for the
//     file store, a *TornTailError); it never silently loses a
//     suffix it acknowledged, nor silently drops a partial one.
//   - A single writer: a Log owns its Store; two Logs appending to one
//     store is refused (FileStore takes an exclusive lock).
//
// A Store does not check hashes; Verify does, so that a dishonest or broken
// store is caught by the same code as a tampered file.
type Store interface {
	// Append durably appends entries, which have consecutive seqs
	// continuing the stored ones.
	Append(ctx context.Context, entries []Entry) error
	// Scan calls fn for each stored entry, in storage order, from position
	// from (0-based) on. It stops at the first error fn returns and returns
	// it. An entry that cannot be decoded stops the scan with a
	// *CorruptError; a partial write after the last complete entry ends it
	// with a *TornTailError, after fn has seen every complete entry.
	Scan(ctx context.Context, from uint64, fn func(pos uint64, e Entry) error) error
	// AppendCheckpoint durably appends a signed checkpoint note.
	AppendCheckpoint(ctx context.Context, note []byte) error
	// Checkpoints returns the stored checkpoint notes in order. A partial
	// write after the last one is reported as a *TornTailError.
	Checkpoints(ctx context.Context) ([][]byte, error)
	// Close releases the store.
	Close() error
}

// TornTailError reports a partial write at the end of a stored file: bytes
// after the last complete record, as a crash in the middle of an append
// leaves them. The bytes are never dropped silently: opening the file for
// writing fails until RepairTornTail moves them aside.
type TornTailError struct {
	File   string // the file
	Offset int64  // where the partial record starts
	Length int64  // how many bytes it has
	Pos    uint64 // the position the partial record would have had: for entries, its seq
}

func (e *TornTailError) Error() string {
	return fmt.Sprintf("audit: %s: torn tail: %d bytes of a partial record at offset %d, where record %d would be (a crash in the middle of an append?)",
		e.File, e.Length, e.Offset, e.Pos)
}

// CorruptError reports a stored record that cannot be decoded.
type CorruptError struct {
	File   string
	Pos    uint64 // position of the record (for entries, the seq it should have)
	Offset int64  // byte offset of the record
	Err    error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("audit: %s: record %d at offset %d cannot be decoded: %v", e.File, e.Pos, e.Offset, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }
