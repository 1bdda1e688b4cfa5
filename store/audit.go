package store

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"strings"
	"sync"

	"github.com/tensafe/tensafe/audit"
)

// AuditStore keeps one audit log (package audit) in the database: entries
// in audit_entries keyed by (log, seq), each stored in its canonical JSON
// form (docs/AUDIT_LOG.md §3), and signed checkpoint notes in
// audit_checkpoints keyed by (log, idx). It implements audit.Store:
//
//   - Durability and atomicity: each Append and AppendCheckpoint is one
//     committed transaction (SQLite with synchronous=FULL), so all of its
//     entries are stored or none; there are no torn tails.
//   - Order: Append refuses seqs that do not continue the stored ones;
//     Scan reads in seq order.
//   - Append-only: the API has no update or delete, and database triggers
//     refuse UPDATE, DELETE (and, on PostgreSQL, TRUNCATE) on both tables.
//     Whoever can drop the triggers can still edit rows; audit.Verify, the
//     signed checkpoints and a Witness are what catch that.
//   - One writer: see Store.AuditStore.
//
// Scan reports positions counted from its starting row, so that a row
// deleted behind the triggers' back shows up in audit.Verify as an entry
// out of place (FaultSeq). CorruptError.Offset is the row's seq key.
type AuditStore struct {
	s    *db
	name string
	w    interface { // where appends go: the pool (SQLite) or the locked connection (PostgreSQL)
		BeginTx(context.Context, *sql.TxOptions) (*sql.Tx, error)
	}
	release func() error

	mu     sync.Mutex
	closed bool
}

var _ audit.Store = (*AuditStore)(nil)

// auditPage is how many rows Scan reads per query; the connection is not
// held while fn runs.
const auditPage = 512

// auditInsertChunk is how many rows one INSERT statement carries.
const auditInsertChunk = 128

// AuditStore implements Store.
func (s *db) AuditStore(ctx context.Context, name string) (*AuditStore, error) {
	if err := checkID("name", name); err != nil {
		return nil, fmt.Errorf("store: audit store: %w", err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, fmt.Errorf("store: audit store %q: %w", name, ErrClosed)
	}
	if s.audits[name] {
		s.mu.Unlock()
		return nil, fmt.Errorf("store: audit store %q: %w: already open in this process", name, ErrInUse)
	}
	s.audits[name] = true
	s.mu.Unlock()
	a := &AuditStore{s: s, name: name, w: s.w}
	if s.d.lockAudit != nil {
		conn, release, err := s.d.lockAudit(ctx, s.w, name)
		if err != nil {
			s.forgetAudit(name)
			return nil, fmt.Errorf("store: audit store %q: %w", name, err)
		}
		a.w, a.release = conn, release
	}
	return a, nil
}

func (s *db) forgetAudit(name string) {
	s.mu.Lock()
	delete(s.audits, name)
	s.mu.Unlock()
}

// Name returns the log's name.
func (a *AuditStore) Name() string { return a.name }

func (a *AuditStore) where() string {
	return fmt.Sprintf("%s:audit_entries[log=%s]", a.s.d.name, a.name)
}

func (a *AuditStore) check() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return ErrClosed
	}
	return nil
}

// writeTx runs fn in a transaction on the writer.
func (a *AuditStore) writeTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := a.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// Append implements audit.Store: one transaction, after checking that the
// entries' seqs are consecutive and continue the stored ones.
func (a *AuditStore) Append(ctx context.Context, entries []audit.Entry) error {
	if err := a.check(); err != nil {
		return fmt.Errorf("store: audit %s: append: %w", a.name, err)
	}
	if len(entries) == 0 {
		return nil
	}
	enc := make([]string, len(entries))
	for i := range entries {
		if entries[i].Seq > math.MaxInt64 {
			return fmt.Errorf("store: audit %s: append: seq %d does not fit a database integer", a.name, entries[i].Seq)
		}
		if i > 0 && entries[i].Seq != entries[i-1].Seq+1 {
			return fmt.Errorf("store: audit %s: append: seq %d follows %d: seqs must be consecutive", a.name, entries[i].Seq, entries[i-1].Seq)
		}
		b, err := entries[i].MarshalJSON()
		if err != nil {
			return fmt.Errorf("store: audit %s: append: %w", a.name, err)
		}
		enc[i] = string(b)
	}
	err := a.writeTx(ctx, func(tx *sql.Tx) error {
		var last sql.NullInt64
		if err := tx.QueryRowContext(ctx, a.s.q("SELECT MAX(seq) FROM audit_entries WHERE log = ?"), a.name).Scan(&last); err != nil {
			return err
		}
		next := uint64(0)
		if last.Valid {
			next = uint64(last.Int64) + 1
		}
		if entries[0].Seq != next {
			return fmt.Errorf("seq %d does not continue the log, whose next seq is %d", entries[0].Seq, next)
		}
		for start := 0; start < len(entries); start += auditInsertChunk {
			end := min(start+auditInsertChunk, len(entries))
			args := make([]any, 0, 3*(end-start))
			for i := start; i < end; i++ {
				args = append(args, a.name, int64(entries[i].Seq), enc[i])
			}
			query := "INSERT INTO audit_entries (log, seq, entry) VALUES " +
				strings.TrimSuffix(strings.Repeat("(?, ?, ?), ", end-start), ", ")
			if _, err := tx.ExecContext(ctx, a.s.q(query), args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: audit %s: append seqs %d..%d: %w", a.name, entries[0].Seq, entries[len(entries)-1].Seq, err)
	}
	return nil
}

// AppendCheckpoint implements audit.Store.
func (a *AuditStore) AppendCheckpoint(ctx context.Context, note []byte) error {
	if err := a.check(); err != nil {
		return fmt.Errorf("store: audit %s: append checkpoint: %w", a.name, err)
	}
	err := a.writeTx(ctx, func(tx *sql.Tx) error {
		var last sql.NullInt64
		if err := tx.QueryRowContext(ctx, a.s.q("SELECT MAX(idx) FROM audit_checkpoints WHERE log = ?"), a.name).Scan(&last); err != nil {
			return err
		}
		next := int64(0)
		if last.Valid {
			next = last.Int64 + 1
		}
		_, err := tx.ExecContext(ctx, a.s.q("INSERT INTO audit_checkpoints (log, idx, note) VALUES (?, ?, ?)"),
			a.name, next, append([]byte(nil), note...))
		return err
	})
	if err != nil {
		return fmt.Errorf("store: audit %s: append checkpoint: %w", a.name, err)
	}
	return nil
}

type auditRow struct {
	seq   int64
	entry string
}

// Scan implements audit.Store. Rows are read a page at a time, and fn runs
// with no database connection held.
func (a *AuditStore) Scan(ctx context.Context, from uint64, fn func(pos uint64, e audit.Entry) error) error {
	if err := a.check(); err != nil {
		return fmt.Errorf("store: audit %s: scan: %w", a.name, err)
	}
	if from > math.MaxInt64 {
		return nil
	}
	pos := from
	cursor := int64(from) // next seq key to read
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("store: audit %s: scan: %w", a.name, err)
		}
		page, err := a.page(ctx, cursor)
		if err != nil {
			return fmt.Errorf("store: audit %s: scan: %w", a.name, err)
		}
		for _, r := range page {
			e, err := audit.DecodeEntry([]byte(r.entry))
			if err != nil {
				return &audit.CorruptError{File: a.where(), Pos: pos, Offset: r.seq, Err: err}
			}
			if err := fn(pos, e); err != nil {
				return err
			}
			pos++
		}
		if len(page) < auditPage {
			return nil
		}
		cursor = page[len(page)-1].seq + 1
	}
}

func (a *AuditStore) page(ctx context.Context, cursor int64) ([]auditRow, error) {
	rows, err := a.s.r.QueryContext(ctx, a.s.q("SELECT seq, entry FROM audit_entries WHERE log = ? AND seq >= ? ORDER BY seq LIMIT ?"),
		a.name, cursor, auditPage)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	page := make([]auditRow, 0, auditPage)
	for rows.Next() {
		var r auditRow
		if err := rows.Scan(&r.seq, &r.entry); err != nil {
			return nil, err
		}
		page = append(page, r)
	}
	return page, rows.Err()
}

// Checkpoints implements audit.Store. A missing row among the checkpoints
// (deleted behind the triggers' back) is reported as an
// *audit.CorruptError, not skipped.
func (a *AuditStore) Checkpoints(ctx context.Context) ([][]byte, error) {
	if err := a.check(); err != nil {
		return nil, fmt.Errorf("store: audit %s: checkpoints: %w", a.name, err)
	}
	rows, err := a.s.r.QueryContext(ctx, a.s.q("SELECT idx, note FROM audit_checkpoints WHERE log = ? ORDER BY idx"), a.name)
	if err != nil {
		return nil, fmt.Errorf("store: audit %s: checkpoints: %w", a.name, err)
	}
	defer rows.Close()
	var notes [][]byte
	for rows.Next() {
		var idx int64
		var note []byte
		if err := rows.Scan(&idx, &note); err != nil {
			return nil, fmt.Errorf("store: audit %s: checkpoints: %w", a.name, err)
		}
		if idx != int64(len(notes)) {
			return notes, &audit.CorruptError{
				File: fmt.Sprintf("%s:audit_checkpoints[log=%s]", a.s.d.name, a.name), Pos: uint64(len(notes)), Offset: idx,
				Err: fmt.Errorf("checkpoint %d is missing (the next stored one is %d)", len(notes), idx)}
		}
		notes = append(notes, append([]byte(nil), note...))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: audit %s: checkpoints: %w", a.name, err)
	}
	return notes, nil
}

// Close implements audit.Store: it releases the writer lock. The database
// stays open.
func (a *AuditStore) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	a.mu.Unlock()
	var err error
	if a.release != nil {
		err = a.release()
	}
	a.s.forgetAudit(a.name)
	if err != nil {
		return fmt.Errorf("store: audit %s: close: %w", a.name, err)
	}
	return nil
}
