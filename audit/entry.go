package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// FormatVersion is the version of the entry format, the canonical encoding
// and the file layout specified in docs/AUDIT_LOG.md. It is the "v" field of
// every stored entry.
const FormatVersion = 1

// canonicalLabel starts every canonical entry encoding, so that an entry
// hash can never be mistaken for the hash of anything else.
const canonicalLabel = "tensafe.audit.entry.v1\x00"

// Genesis entry constants: entry 0 of every log.
const (
	GenesisOperation = "audit.genesis"
	GenesisActor     = "tensafe/audit"
)

// HashSize is the size of an entry hash and of a Merkle tree hash.
const HashSize = sha256.Size

// Hash is a SHA-256 value: an entry hash, a leaf hash or a tree root.
type Hash [HashSize]byte

// String returns the lowercase hex of h.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is all zeros (the genesis prev_hash).
func (h Hash) IsZero() bool { return h == Hash{} }

// ParseHash decodes 64 lowercase hex digits.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 2*HashSize {
		return h, fmt.Errorf("hash is %d characters, want %d hex digits", len(s), 2*HashSize)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return h, fmt.Errorf("hash has a character other than lowercase hex at %d", i)
		}
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("hash: %w", err)
	}
	return h, nil
}

// Outcome is how an audited operation ended.
type Outcome string

// Outcomes.
const (
	OutcomeSuccess Outcome = "success"
	OutcomeFailure Outcome = "failure"
	OutcomeDenied  Outcome = "denied" // refused by authorization, budget or policy
)

func (o Outcome) valid() bool {
	return o == OutcomeSuccess || o == OutcomeFailure || o == OutcomeDenied
}

// Record is what a caller asks to be logged. The log assigns seq, time and
// the hashes.
//
// Every field is plain metadata. Details is for identifiers and small facts
// (a model name, a step count, an artifact id, a content hash
// "sha256:<hex>", an epsilon spent); it must never hold secrets or training
// data. Log.Append enforces this as well as a filter can (see
// Record.Validate): keys that name secret material or data are refused, and
// so are values that look like keys, tokens or PEM blocks, and values longer
// than MaxDetailValueLen.
type Record struct {
	TenantID  string            // the tenant whose data or budget was touched; "" for service-wide operations
	Actor     string            // who asked: an API key id, a user, "system"
	Operation string            // what: lowercase dotted name, e.g. "training.optim_step"
	Resource  string            // which object: a session, an artifact id, a key id
	Outcome   Outcome           // success, failure or denied
	Details   map[string]string // small metadata, never secrets or data
}

// Entry is one record of the log, as stored.
type Entry struct {
	Seq  uint64    // position in the log; 0 is the genesis entry
	Time time.Time // when the log accepted the record (UTC, never earlier than the previous entry's)
	Record
	PrevHash  Hash // EntryHash of entry Seq-1; all zeros for the genesis entry
	EntryHash Hash // SHA-256 over the canonical encoding of this entry, PrevHash included
}

// Limits on entry fields. They bound a stored line and keep details to
// metadata.
const (
	MaxTenantIDLen     = 128
	MaxActorLen        = 256
	MaxOperationLen    = 128
	MaxResourceLen     = 1024
	MaxDetails         = 32
	MaxDetailKeyLen    = 64
	MaxDetailValueLen  = 512
	maxEncodedEntryLen = 1 << 20 // a line longer than this is corrupt
)

// Times outside [minTime, maxTime) cannot be encoded (the canonical form
// stores Unix nanoseconds in an int64).
var (
	minTime = time.Unix(0, 0).UTC()
	maxTime = time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC)
)

// Canonical returns the canonical encoding of e (docs/AUDIT_LOG.md §2), the
// bytes that EntryHash is computed over. EntryHash itself is not part of
// it.
func (e *Entry) Canonical() []byte {
	n := len(canonicalLabel) + 8 + 8 + 4*5 + len(e.TenantID) + len(e.Actor) + len(e.Operation) +
		len(e.Resource) + len(e.Outcome) + 4 + HashSize
	for k, v := range e.Details {
		n += 8 + len(k) + len(v)
	}
	b := make([]byte, 0, n)
	b = append(b, canonicalLabel...)
	b = binary.BigEndian.AppendUint64(b, e.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time.UnixNano()))
	b = appendString(b, e.TenantID)
	b = appendString(b, e.Actor)
	b = appendString(b, e.Operation)
	b = appendString(b, e.Resource)
	b = appendString(b, string(e.Outcome))
	b = binary.BigEndian.AppendUint32(b, uint32(len(e.Details)))
	keys := make([]string, 0, len(e.Details))
	for k := range e.Details {
		keys = append(keys, k)
	}
	slices.Sort(keys) // bytewise order of the UTF-8 keys
	for _, k := range keys {
		b = appendString(b, k)
		b = appendString(b, e.Details[k])
	}
	return append(b, e.PrevHash[:]...)
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// ComputeHash returns SHA-256 over the canonical encoding of e: the value
// EntryHash must have.
func (e *Entry) ComputeHash() Hash {
	return sha256.Sum256(e.Canonical())
}

// LeafHash returns the RFC 6962 Merkle leaf hash of the entry,
// SHA-256(0x00 || EntryHash).
func (e *Entry) LeafHash() Hash { return leafHash(e.EntryHash) }

func leafHash(entryHash Hash) Hash {
	var b [1 + HashSize]byte
	copy(b[1:], entryHash[:])
	return sha256.Sum256(b[:])
}

// IsGenesis reports whether e has the shape of a genesis entry.
func (e *Entry) IsGenesis() bool {
	return e.Seq == 0 && e.Operation == GenesisOperation && e.PrevHash.IsZero()
}

// Origin returns the log origin recorded in a genesis entry.
func (e *Entry) Origin() string { return e.Details["origin"] }

func newGenesis(origin string, t time.Time) Entry {
	e := Entry{
		Seq:  0,
		Time: t,
		Record: Record{
			Actor:     GenesisActor,
			Operation: GenesisOperation,
			Resource:  origin,
			Outcome:   OutcomeSuccess,
			Details:   map[string]string{"format": "tensafe-audit/v1", "origin": origin},
		},
	}
	e.EntryHash = e.ComputeHash()
	return e
}

// entryJSON is the stored form of an entry (docs/AUDIT_LOG.md §3). Field
// order is fixed by the struct; details keys are written sorted.
type entryJSON struct {
	V         int               `json:"v"`
	Seq       uint64            `json:"seq"`
	Time      string            `json:"time"`
	TenantID  string            `json:"tenant_id"`
	Actor     string            `json:"actor"`
	Operation string            `json:"operation"`
	Resource  string            `json:"resource"`
	Outcome   string            `json:"outcome"`
	Details   map[string]string `json:"details"`
	PrevHash  string            `json:"prev_hash"`
	EntryHash string            `json:"entry_hash"`
}

// MarshalJSON returns the stored form of e: one JSON object, no newline.
func (e Entry) MarshalJSON() ([]byte, error) {
	if e.Time.Before(minTime) || !e.Time.Before(maxTime) {
		return nil, fmt.Errorf("audit: encode entry %d: time is outside [1970, 2262)", e.Seq)
	}
	d := e.Details
	if d == nil {
		d = map[string]string{}
	}
	return json.Marshal(entryJSON{
		V:         FormatVersion,
		Seq:       e.Seq,
		Time:      formatTime(e.Time),
		TenantID:  e.TenantID,
		Actor:     e.Actor,
		Operation: e.Operation,
		Resource:  e.Resource,
		Outcome:   string(e.Outcome),
		Details:   d,
		PrevHash:  e.PrevHash.String(),
		EntryHash: e.EntryHash.String(),
	})
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// UnmarshalJSON decodes the stored form, strictly: unknown fields, an
// unknown version, a non-canonical time, malformed hashes and fields that
// break the structural rules of Record are errors. It does not check
// EntryHash; Verify does.
func (e *Entry) UnmarshalJSON(b []byte) error {
	d, err := DecodeEntry(b)
	if err != nil {
		return err
	}
	*e = d
	return nil
}

// DecodeEntry decodes one stored entry (one JSON object; surrounding white
// space allowed). The result is structurally valid; whether its hashes are
// right is for Verify to say.
func DecodeEntry(b []byte) (Entry, error) {
	if len(b) > maxEncodedEntryLen {
		return Entry{}, fmt.Errorf("audit: decode entry: %d bytes, more than the %d allowed", len(b), maxEncodedEntryLen)
	}
	var w entryJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return Entry{}, fmt.Errorf("audit: decode entry: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Entry{}, errors.New("audit: decode entry: data after the JSON object")
	}
	if w.V != FormatVersion {
		return Entry{}, fmt.Errorf("audit: decode entry: field v: version %d, want %d", w.V, FormatVersion)
	}
	t, err := time.Parse(time.RFC3339Nano, w.Time)
	if err != nil {
		return Entry{}, fmt.Errorf("audit: decode entry: field time: %w", err)
	}
	if formatTime(t) != w.Time {
		return Entry{}, errors.New("audit: decode entry: field time: not in canonical form (UTC, \"Z\", RFC 3339 with trailing zeros of the fraction removed)")
	}
	if t.Before(minTime) || !t.Before(maxTime) {
		return Entry{}, errors.New("audit: decode entry: field time: outside [1970, 2262)")
	}
	e := Entry{
		Seq:  w.Seq,
		Time: t.UTC(),
		Record: Record{
			TenantID:  w.TenantID,
			Actor:     w.Actor,
			Operation: w.Operation,
			Resource:  w.Resource,
			Outcome:   Outcome(w.Outcome),
		},
	}
	if len(w.Details) > 0 {
		e.Details = w.Details
	}
	if e.PrevHash, err = ParseHash(w.PrevHash); err != nil {
		return Entry{}, fmt.Errorf("audit: decode entry: field prev_hash: %w", err)
	}
	if e.EntryHash, err = ParseHash(w.EntryHash); err != nil {
		return Entry{}, fmt.Errorf("audit: decode entry: field entry_hash: %w", err)
	}
	if err := e.Record.checkStructure(); err != nil {
		return Entry{}, fmt.Errorf("audit: decode entry: %w", err)
	}
	return e, nil
}
