package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tensafe/tensafe/seal"
)

// CheckpointContext is the seal signature context of checkpoint
// signatures, so that a checkpoint signature can never be taken for a
// signature over anything else the same key signs.
const CheckpointContext = "tensafe/audit-checkpoint/v1"

// keyHashLabel identifies the signature type in the 4-byte key hash of a
// signature line (docs/AUDIT_LOG.md §5): hybrid Ed25519 + ML-DSA-65 is not
// a type registered with C2SP signed-note, so it uses the 0xff escape and
// this label.
const keyHashLabel = "tensafe-hybrid-ed25519-mldsa65-v1"

// Limits on checkpoint notes.
const (
	maxNoteLen       = 128 << 10
	maxOriginLen     = 256
	maxSignatureLine = 16
)

// Checkpoint errors. Errors from ParseCheckpoint, OpenCheckpoint and
// Witness.Update wrap one of them.
var (
	// ErrMalformedCheckpoint: the note is not a well-formed checkpoint.
	ErrMalformedCheckpoint = errors.New("audit: malformed checkpoint")
	// ErrForgedCheckpoint: no valid signature by the expected key, or a
	// checkpoint for another origin.
	ErrForgedCheckpoint = errors.New("audit: checkpoint signature does not verify")
	// ErrStaleCheckpoint: the checkpoint is older than the latest known one
	// for its origin (a smaller tree, or an earlier time).
	ErrStaleCheckpoint = errors.New("audit: stale checkpoint")
	// ErrInconsistentCheckpoint: the checkpoint's tree does not extend the
	// latest known tree (a fork), or does not match the log.
	ErrInconsistentCheckpoint = errors.New("audit: inconsistent checkpoint")
)

// Checkpoint is a commitment to the log's first Size entries: the Merkle
// root over their entry hashes, at a time, for a log origin.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   Hash
	Time   time.Time
}

// Body returns the note body (docs/AUDIT_LOG.md §5), the signed text:
//
//	<origin>
//	<size, decimal>
//	<root, standard base64>
//	time <RFC 3339 UTC>
//
// each line ending in a newline; the first three lines are those of a C2SP
// tlog-checkpoint, the time line is an extension line.
func (c *Checkpoint) Body() []byte {
	var b bytes.Buffer
	b.WriteString(c.Origin)
	b.WriteByte('\n')
	b.WriteString(strconv.FormatUint(c.Size, 10))
	b.WriteByte('\n')
	b.WriteString(base64.StdEncoding.EncodeToString(c.Root[:]))
	b.WriteByte('\n')
	b.WriteString("time ")
	b.WriteString(formatTime(c.Time))
	b.WriteByte('\n')
	return b.Bytes()
}

// String returns a one-line description.
func (c *Checkpoint) String() string {
	return fmt.Sprintf("%s size %d root %s at %s", c.Origin, c.Size, c.Root, formatTime(c.Time))
}

// SignedCheckpoint is a parsed checkpoint note with its signature lines.
type SignedCheckpoint struct {
	Checkpoint
	Signatures []NoteSignature
	Note       []byte // the note as parsed
}

// NoteSignature is one signature line of a note.
type NoteSignature struct {
	Name    string  // key name
	KeyHash [4]byte // key hash (docs/AUDIT_LOG.md §5)
	Sig     []byte
}

// keyHash returns the 4-byte signed-note key hash of key under name.
func keyHash(name string, key *seal.VerifyingKey) [4]byte {
	pub, _ := key.MarshalBinary()
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{'\n', 0xff})
	h.Write([]byte(keyHashLabel))
	h.Write(pub)
	var kh [4]byte
	copy(kh[:], h.Sum(nil))
	return kh
}

// SignCheckpoint returns the signed note of c, signed by key under the key
// name c.Origin.
func SignCheckpoint(c Checkpoint, key *seal.SigningKey) ([]byte, error) {
	if err := checkOrigin(c.Origin); err != nil {
		return nil, fmt.Errorf("audit: sign checkpoint: %w", err)
	}
	if c.Time.Before(minTime) || !c.Time.Before(maxTime) {
		return nil, errors.New("audit: sign checkpoint: time is outside [1970, 2262)")
	}
	body := c.Body()
	sig, err := key.Sign(CheckpointContext, body)
	if err != nil {
		return nil, fmt.Errorf("audit: sign checkpoint: %w", err)
	}
	kh := keyHash(c.Origin, key.Public())
	var b bytes.Buffer
	b.Write(body)
	b.WriteString("\n\u2014 ")
	b.WriteString(c.Origin)
	b.WriteByte(' ')
	b.WriteString(base64.StdEncoding.EncodeToString(append(kh[:], sig...)))
	b.WriteByte('\n')
	return b.Bytes(), nil
}

func checkOrigin(o string) error {
	if o == "" {
		return errors.New("origin is empty")
	}
	if len(o) > maxOriginLen {
		return fmt.Errorf("origin is %d bytes, at most %d allowed", len(o), maxOriginLen)
	}
	for i := 0; i < len(o); i++ {
		if c := o[i]; c <= ' ' || c >= 0x7f || c == '+' {
			return fmt.Errorf("origin has a character that is not printable ASCII, or a space or '+', at %d", i)
		}
	}
	return nil
}

// ParseCheckpoint parses a checkpoint note without checking signatures.
// Errors wrap ErrMalformedCheckpoint.
func ParseCheckpoint(note []byte) (*SignedCheckpoint, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrMalformedCheckpoint, fmt.Sprintf(format, args...))
	}
	if len(note) > maxNoteLen {
		return nil, bad("note is %d bytes, at most %d allowed", len(note), maxNoteLen)
	}
	if !utf8.Valid(note) {
		return nil, bad("note is not valid UTF-8")
	}
	for _, c := range string(note) {
		if c < ' ' && c != '\n' || c == 0x7f {
			return nil, bad("note has a control character (U+%04X)", c)
		}
	}
	if !bytes.HasSuffix(note, []byte("\n")) {
		return nil, bad("note does not end in a newline")
	}
	split := bytes.LastIndex(note, []byte("\n\n"))
	if split < 0 {
		return nil, bad("no blank line between body and signatures")
	}
	body, sigs := note[:split+1], note[split+2:]
	lines := strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")
	if len(lines) != 4 {
		return nil, bad("body has %d lines, want 4 (origin, size, root, time)", len(lines))
	}
	sc := &SignedCheckpoint{Note: bytes.Clone(note)}
	if err := checkOrigin(lines[0]); err != nil {
		return nil, bad("origin line: %v", err)
	}
	sc.Origin = lines[0]
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil || strconv.FormatUint(size, 10) != lines[1] {
		return nil, bad("size line: not a decimal number without leading zeros")
	}
	sc.Size = size
	root, err := base64.StdEncoding.Strict().DecodeString(lines[2])
	if err != nil || len(root) != HashSize {
		return nil, bad("root line: not the standard base64 of %d bytes", HashSize)
	}
	sc.Root = Hash(root)
	ts, ok := strings.CutPrefix(lines[3], "time ")
	if !ok {
		return nil, bad("fourth line: want \"time <RFC 3339>\"")
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil || formatTime(t) != ts || t.Before(minTime) || !t.Before(maxTime) {
		return nil, bad("time line: not a canonical RFC 3339 UTC time in [1970, 2262)")
	}
	sc.Time = t.UTC()

	sigLines := strings.Split(strings.TrimSuffix(string(sigs), "\n"), "\n")
	if len(sigLines) == 0 || len(sigLines) == 1 && sigLines[0] == "" {
		return nil, bad("no signature lines")
	}
	if len(sigLines) > maxSignatureLine {
		return nil, bad("%d signature lines, at most %d allowed", len(sigLines), maxSignatureLine)
	}
	for i, l := range sigLines {
		rest, ok := strings.CutPrefix(l, "\u2014 ")
		if !ok {
			return nil, bad("signature line %d does not start with an em dash and a space", i+1)
		}
		name, b64, ok := strings.Cut(rest, " ")
		if !ok || checkOrigin(name) != nil || strings.Contains(b64, " ") {
			return nil, bad("signature line %d: want \"\u2014 <name> <base64>\"", i+1)
		}
		raw, err := base64.StdEncoding.Strict().DecodeString(b64)
		if err != nil || len(raw) < 5 {
			return nil, bad("signature line %d: signature is not standard base64 of a key hash and a signature", i+1)
		}
		ns := NoteSignature{Name: name, Sig: raw[4:]}
		copy(ns.KeyHash[:], raw[:4])
		sc.Signatures = append(sc.Signatures, ns)
	}
	return sc, nil
}

// OpenCheckpoint parses note and verifies that it is a checkpoint of
// origin signed by key (under the key name origin). Signature lines by
// other keys are ignored, as signed notes allow (cosignatures).
func OpenCheckpoint(note []byte, origin string, key *seal.VerifyingKey) (*Checkpoint, error) {
	sc, err := ParseCheckpoint(note)
	if err != nil {
		return nil, err
	}
	if sc.Origin != origin {
		return nil, fmt.Errorf("%w: checkpoint is for origin %q, want %q", ErrForgedCheckpoint, sc.Origin, origin)
	}
	if err := sc.verify(key); err != nil {
		return nil, err
	}
	return &sc.Checkpoint, nil
}

func (sc *SignedCheckpoint) verify(key *seal.VerifyingKey) error {
	kh := keyHash(sc.Origin, key)
	body := sc.Body()
	found := false
	for _, s := range sc.Signatures {
		if s.Name != sc.Origin || s.KeyHash != kh {
			continue
		}
		found = true
		if err := key.Verify(CheckpointContext, body, s.Sig); err == nil {
			return nil
		}
	}
	if !found {
		return fmt.Errorf("%w: no signature line by key %s for %q", ErrForgedCheckpoint, key.KeyID(), sc.Origin)
	}
	return fmt.Errorf("%w: signature by key %s does not verify", ErrForgedCheckpoint, key.KeyID())
}

// Witness keeps the latest checkpoint known for one origin and accepts a
// new one only when it is signed by the log's key and extends the latest:
// the same tree or a larger one proven consistent with it, no earlier in
// time. It is what a party outside the log runs to catch a log that forks
// or rolls back.
type Witness struct {
	origin string
	key    *seal.VerifyingKey
	latest *Checkpoint
}

// NewWitness returns a witness for origin's checkpoints signed by key.
// trusted, when not nil, is the latest checkpoint already known (and
// verified) for the origin.
func NewWitness(origin string, key *seal.VerifyingKey, trusted *Checkpoint) *Witness {
	w := &Witness{origin: origin, key: key}
	if trusted != nil {
		c := *trusted
		w.latest = &c
	}
	return w
}

// Latest returns the latest accepted checkpoint, or nil.
func (w *Witness) Latest() *Checkpoint {
	if w.latest == nil {
		return nil
	}
	c := *w.latest
	return &c
}

// Update verifies note and, if it is a valid signed checkpoint that extends
// the latest known one, makes it the latest. consistency is the RFC 6962
// consistency proof from the latest known tree size to the note's (ignored
// for the first checkpoint). Errors wrap ErrMalformedCheckpoint,
// ErrForgedCheckpoint, ErrStaleCheckpoint or ErrInconsistentCheckpoint,
// and leave the witness unchanged.
func (w *Witness) Update(note []byte, consistency []Hash) (*Checkpoint, error) {
	c, err := OpenCheckpoint(note, w.origin, w.key)
	if err != nil {
		return nil, err
	}
	if err := w.check(c, consistency); err != nil {
		return nil, err
	}
	w.latest = c
	out := *c
	return &out, nil
}

func (w *Witness) check(c *Checkpoint, consistency []Hash) error {
	l := w.latest
	if l == nil {
		return nil
	}
	switch {
	case c.Size < l.Size:
		return fmt.Errorf("%w: tree size %d is smaller than the latest known %d", ErrStaleCheckpoint, c.Size, l.Size)
	case c.Time.Before(l.Time):
		return fmt.Errorf("%w: time %s is earlier than the latest known %s", ErrStaleCheckpoint, formatTime(c.Time), formatTime(l.Time))
	case c.Size == l.Size && c.Root != l.Root:
		return fmt.Errorf("%w: tree size %d has root %s, but the latest known checkpoint of that size has %s (a fork)", ErrInconsistentCheckpoint, c.Size, c.Root, l.Root)
	case c.Size == l.Size:
		return nil
	}
	if err := VerifyConsistency(l.Size, c.Size, consistency, l.Root, c.Root); err != nil {
		return fmt.Errorf("%w: %w", ErrInconsistentCheckpoint, err)
	}
	return nil
}
