package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"strings"
)

// ContentHashPrefix starts every content hash string: "sha256:" followed by
// 64 lowercase hex digits of SHA-256 over the plaintext.
const ContentHashPrefix = "sha256:"

// segmentNonce is the 12-byte GCM nonce of segment i:
// nonce prefix (7 bytes) || u32be(i) || last (0x00 or 0x01).
func segmentNonce(prefix *[noncePrefixSize]byte, i uint32, last bool) [12]byte {
	var n [12]byte
	copy(n[:], prefix[:])
	binary.BigEndian.PutUint32(n[noncePrefixSize:], i)
	if last {
		n[11] = 1
	}
	return n
}

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// Writer encrypts a stream into an envelope. Data written is buffered one
// segment at a time; Close writes the final segment. Memory use is two
// segment buffers (128 KiB) whatever the length of the stream.
//
// The content hash is computed in line with encryption. (Hashing in a
// goroutine of its own, overlapped with encryption, was measured slower on
// the 2-core development machine; a server runs many streams at once.)
type Writer struct {
	dst     io.Writer
	aead    cipher.AEAD
	prefix  [noncePrefixSize]byte
	buf     []byte // plaintext of the segment being filled
	out     []byte // ciphertext of one segment
	counter uint32
	hash    hash.Hash
	n       int64
	sum     string
	err     error // sticky
	closed  bool
}

// NewWriter writes an envelope header for ref to dst and returns a Writer
// whose plaintext is encrypted under dek, bound to b. dek must be a fresh
// DEKSize-byte key for this artifact; ref records how it was wrapped.
// Closing the Writer does not close dst.
func NewWriter(dst io.Writer, dek []byte, ref KeyRef, b Binding) (*Writer, error) {
	if err := b.check(); err != nil {
		return nil, fmt.Errorf("seal: new writer: %w", err)
	}
	if err := ref.check(); err != nil {
		return nil, fmt.Errorf("seal: new writer: %w", err)
	}
	h, err := newHeader(ref)
	if err != nil {
		return nil, fmt.Errorf("seal: new writer: %w", err)
	}
	return newWriter(dst, dek, h, b)
}

// newWriter writes h and returns the Writer; h's salt and nonce prefix are
// fixed by the caller (tests use it for known-answer vectors).
func newWriter(dst io.Writer, dek []byte, h *Header, b Binding) (*Writer, error) {
	k, err := deriveKeys(dek, h.salt[:], b)
	if err != nil {
		return nil, fmt.Errorf("seal: new writer: %w", err)
	}
	defer clear(k.payload[:])
	defer clear(k.header[:])
	h.mac = h.computeMAC(k)
	aead, err := newGCM(k.payload[:])
	if err != nil {
		return nil, fmt.Errorf("seal: new writer: %w", err)
	}
	if _, err := dst.Write(h.encode()); err != nil {
		return nil, fmt.Errorf("seal: write envelope header: %w", err)
	}
	w := &Writer{dst: dst, aead: aead, prefix: h.noncePrefix, hash: sha256.New()}
	w.buf = make([]byte, 0, SegmentSize+1) // +1: ReadFrom's lookahead byte
	w.out = make([]byte, 0, SegmentSize+tagSize)
	return w, nil
}

// Write encrypts p. A full segment is written out only once more data
// follows it, since the final segment is sealed differently.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.closed {
		return 0, errors.New("seal: write to closed envelope writer")
	}
	written := 0
	for len(p) > 0 {
		if len(w.buf) == SegmentSize {
			if err := w.flush(false); err != nil {
				return written, err
			}
		}
		if len(w.buf) == 0 && len(p) > SegmentSize {
			// A whole segment with more data after it: seal it straight
			// from p, without copying it into the buffer.
			if err := w.seal(p[:SegmentSize], false); err != nil {
				return written, err
			}
			p = p[SegmentSize:]
			written += SegmentSize
			w.n += SegmentSize
			continue
		}
		n := copy(w.buf[len(w.buf):SegmentSize], p)
		w.buf = w.buf[:len(w.buf)+n]
		p = p[n:]
		written += n
		w.n += int64(n)
	}
	return written, nil
}

// ReadFrom encrypts everything r yields until io.EOF, reading straight
// into the segment buffer; io.Copy uses it when r has no WriteTo.
func (w *Writer) ReadFrom(r io.Reader) (int64, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.closed {
		return 0, errors.New("seal: write to closed envelope writer")
	}
	var total int64
	for {
		// Read up to one byte past a full segment: that byte proves the
		// segment is not the final one.
		n, err := r.Read(w.buf[len(w.buf) : SegmentSize+1])
		w.buf = w.buf[:len(w.buf)+n]
		total += int64(n)
		w.n += int64(n)
		if len(w.buf) == SegmentSize+1 {
			if serr := w.seal(w.buf[:SegmentSize], false); serr != nil {
				return total, serr
			}
			w.buf[0] = w.buf[SegmentSize]
			w.buf = w.buf[:1]
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// flush seals and writes the buffered segment.
func (w *Writer) flush(last bool) error {
	if err := w.seal(w.buf, last); err != nil {
		return err
	}
	w.buf = w.buf[:0]
	return nil
}

// seal hashes, seals and writes one segment.
func (w *Writer) seal(seg []byte, last bool) error {
	if !last && w.counter == math.MaxUint32 {
		w.err = fmt.Errorf("%w: more than %d segments", ErrTooLarge, uint64(math.MaxUint32)+1)
		return w.err
	}
	w.hash.Write(seg)
	if last {
		w.sum = ContentHashPrefix + hex.EncodeToString(w.hash.Sum(nil))
	}
	nonce := segmentNonce(&w.prefix, w.counter, last)
	w.out = w.aead.Seal(w.out[:0], nonce[:], seg, nil)
	if _, err := w.dst.Write(w.out); err != nil {
		w.err = fmt.Errorf("seal: write segment %d: %w", w.counter, err)
		return w.err
	}
	if !last {
		w.counter++
	}
	return nil
}

// Close seals and writes the final segment. It does not close the
// underlying writer. After Close, ContentHash returns the plaintext's hash.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	if w.err != nil {
		return w.err
	}
	err := w.flush(true)
	clear(w.buf[:cap(w.buf)])
	return err
}

// ContentHash returns "sha256:<hex>" of the plaintext written, once Close
// has succeeded; "" before.
func (w *Writer) ContentHash() string { return w.sum }

// Size returns the number of plaintext bytes written.
func (w *Writer) Size() int64 { return w.n }

// CheckContentHash reports whether s is a well-formed content hash.
func CheckContentHash(s string) error {
	hexPart, ok := strings.CutPrefix(s, ContentHashPrefix)
	if !ok {
		return fmt.Errorf("content hash %q does not start with %q", s, ContentHashPrefix)
	}
	if len(hexPart) != 2*sha256.Size || strings.ToLower(hexPart) != hexPart {
		return fmt.Errorf("content hash %q is not %q followed by 64 lowercase hex digits", s, ContentHashPrefix)
	}
	if _, err := hex.DecodeString(hexPart); err != nil {
		return fmt.Errorf("content hash %q is not %q followed by 64 lowercase hex digits", s, ContentHashPrefix)
	}
	return nil
}

// Reader decrypts an envelope. It releases the plaintext of a segment only
// after that segment has authenticated, and the plaintext of the final
// segment only after the whole plaintext has matched the expected content
// hash. Every error is sticky. Memory use is two segment buffers.
type Reader struct {
	src      io.Reader
	aead     cipher.AEAD
	prefix   [noncePrefixSize]byte
	ct       []byte // SegmentSize+tagSize+1: a segment and one byte of lookahead
	carry    bool   // ct[0] holds the lookahead byte of the previous read
	pbuf     []byte // plaintext of the current segment
	plain    []byte // its unread part
	counter  uint32
	hash     hash.Hash
	wantHash string
	sum      string
	done     bool
	err      error
}

// NewReader authenticates the header h (read from src with ReadHeader)
// under dek and binding b, and returns a Reader of the plaintext that
// follows in src. wantHash is the expected content hash ("sha256:<hex>");
// at the end of the stream the Reader fails with ErrContentHash, before
// releasing the final segment, when the plaintext does not match it.
func NewReader(src io.Reader, h *Header, dek []byte, b Binding, wantHash string) (*Reader, error) {
	if err := b.check(); err != nil {
		return nil, fmt.Errorf("seal: open envelope: %w", err)
	}
	if err := CheckContentHash(wantHash); err != nil {
		return nil, fmt.Errorf("seal: open envelope: expected %w", err)
	}
	k, err := deriveKeys(dek, h.salt[:], b)
	if err != nil {
		return nil, fmt.Errorf("seal: open envelope: %w", err)
	}
	defer clear(k.payload[:])
	defer clear(k.header[:])
	if err := h.authenticate(k); err != nil {
		return nil, fmt.Errorf("seal: open envelope: %w", err)
	}
	aead, err := newGCM(k.payload[:])
	if err != nil {
		return nil, fmt.Errorf("seal: open envelope: %w", err)
	}
	r := &Reader{src: src, aead: aead, prefix: h.noncePrefix, hash: sha256.New(), wantHash: wantHash}
	r.ct = make([]byte, SegmentSize+tagSize+1)
	r.pbuf = make([]byte, 0, SegmentSize)
	return r, nil
}

// next authenticates and decrypts the next segment into r.plain.
func (r *Reader) next() error {
	have := 0
	if r.carry {
		have = 1
	}
	n, err := io.ReadFull(r.src, r.ct[have:])
	n += have
	switch {
	case err == nil:
		// A full segment and one more byte: not the final segment.
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
	default:
		return fmt.Errorf("seal: read segment %d: %w", r.counter, err)
	}
	last := n <= SegmentSize+tagSize
	ct := r.ct[:min(n, SegmentSize+tagSize)]
	if last && n < tagSize {
		if n == 0 && r.counter == 0 {
			return fmt.Errorf("%w: no segments after the header", ErrTruncated)
		}
		if n == 0 {
			return fmt.Errorf("%w: stream ends after segment %d, which is not the final segment", ErrTruncated, r.counter-1)
		}
		return fmt.Errorf("%w: segment %d is shorter than its tag", ErrTruncated, r.counter)
	}
	// Decrypt out of place: a failed Open clears its output, and the
	// ciphertext is needed again below.
	nonce := segmentNonce(&r.prefix, r.counter, last)
	plain, oerr := r.aead.Open(r.pbuf[:0], nonce[:], ct, nil)
	if oerr != nil {
		// Tell truncation and appended data apart from tampering: the
		// same bytes sealed with the other flag authenticate.
		nonce = segmentNonce(&r.prefix, r.counter, !last)
		if _, err2 := r.aead.Open(r.pbuf[:0], nonce[:], ct, nil); err2 == nil {
			clear(r.pbuf[:cap(r.pbuf)])
			if last {
				return fmt.Errorf("%w: stream ends after segment %d, which is not the final segment", ErrTruncated, r.counter)
			}
			return fmt.Errorf("%w: segment %d is final but more bytes follow", ErrTrailingData, r.counter)
		}
		return fmt.Errorf("seal: segment %d: %w", r.counter, ErrSegmentAuth)
	}
	if !last {
		if r.counter == math.MaxUint32 {
			return fmt.Errorf("seal: segment %d: %w", r.counter, ErrTooLarge)
		}
		r.hash.Write(plain)
		r.ct[0] = r.ct[SegmentSize+tagSize]
		r.carry = true
		r.counter++
	} else {
		r.hash.Write(plain)
		r.sum = ContentHashPrefix + hex.EncodeToString(r.hash.Sum(nil))
		if subtle.ConstantTimeCompare([]byte(r.sum), []byte(r.wantHash)) != 1 {
			clear(plain)
			return fmt.Errorf("%w: plaintext does not hash to the expected %s", ErrContentHash, r.wantHash)
		}
		r.done = true
	}
	r.plain = plain
	return nil
}

// Read reads authenticated plaintext. It returns io.EOF only after the
// final segment has authenticated and the content hash has matched.
func (r *Reader) Read(p []byte) (int, error) {
	for len(r.plain) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.done {
			return 0, io.EOF
		}
		if err := r.next(); err != nil {
			r.err = err
			return 0, err
		}
		if len(r.plain) == 0 && r.done {
			return 0, io.EOF
		}
	}
	n := copy(p, r.plain)
	r.plain = r.plain[n:]
	return n, nil
}

// WriteTo writes the whole authenticated plaintext to w, one segment at a
// time without an extra copy; io.Copy uses it.
func (r *Reader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if len(r.plain) > 0 {
			n, err := w.Write(r.plain)
			total += int64(n)
			r.plain = r.plain[n:]
			if err != nil {
				return total, err
			}
		}
		if r.err != nil {
			return total, r.err
		}
		if r.done {
			return total, nil
		}
		if err := r.next(); err != nil {
			r.err = err
			return total, err
		}
	}
}

// ContentHash returns the verified content hash once the Reader has
// reached io.EOF; "" before.
func (r *Reader) ContentHash() string {
	if !r.done {
		return ""
	}
	return r.sum
}
