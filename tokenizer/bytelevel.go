package tokenizer

import "unicode/utf8"

// The byte-level alphabet of GPT-2: every byte maps to one printable rune, so
// that a BPE vocabulary of strings can cover arbitrary bytes. Printable
// Latin-1 bytes map to themselves; the others (controls, space, a few
// Latin-1 marks) map to U+0100 upwards, in byte order.

// byteRune[b] is the rune that stands for byte b.
var byteRune = func() (t [256]rune) {
	n := 0
	for b := 0; b < 256; b++ {
		if ('!' <= b && b <= '~') || (0xA1 <= b && b <= 0xAC) || (0xAE <= b && b <= 0xFF) {
			t[b] = rune(b)
		} else {
			t[b] = rune(256 + n)
			n++
		}
	}
	return t
}()

// maxByteRune bounds the runes of the byte-level alphabet (256 + 68).
const maxByteRune = 324

// runeByte[r] is byte+1 for a rune r of the byte-level alphabet, 0 otherwise.
var runeByte = func() (t [maxByteRune]int16) {
	for b, r := range byteRune {
		t[r] = int16(b) + 1
	}
	return t
}()

// byteLevelString maps the bytes of s to the byte-level alphabet.
func appendByteLevel(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		dst = utf8.AppendRune(dst, byteRune[s[i]])
	}
	return dst
}

// byteLevelDecode returns the bytes a vocabulary string stands for, as the
// ByteLevel decoder of Hugging Face tokenizers does: if every rune belongs
// to the byte-level alphabet the token decodes to those bytes, otherwise
// (an added token such as "\n\n" or "<|im_start|>" written in plain text)
// to its own UTF-8 bytes.
func byteLevelDecode(tok string) []byte {
	out := make([]byte, 0, len(tok))
	for _, r := range tok {
		if r < 0 || r >= maxByteRune || runeByte[r] == 0 {
			return []byte(tok)
		}
		out = append(out, byte(runeByte[r]-1))
	}
	return out
}

// appendLossyUTF8 appends b to dst, replacing each maximal subpart of an
// ill-formed sequence with U+FFFD. This is the substitution practice of the
// Unicode standard (§3.9), used by Rust's String::from_utf8_lossy and the
// WHATWG TextDecoder, so decoded text matches the reference implementations
// even when generation stops in the middle of a multi-byte character. Go's
// own conversions differ: they replace every invalid byte.
func appendLossyUTF8(dst, b []byte) []byte {
	for len(b) > 0 {
		if b[0] < utf8.RuneSelf {
			dst = append(dst, b[0])
			b = b[1:]
			continue
		}
		r, size := utf8.DecodeRune(b)
		if r != utf8.RuneError || size > 1 {
			dst = append(dst, b[:size]...)
			b = b[size:]
			continue
		}
		dst = append(dst, "\uFFFD"...)
		b = b[maximalSubpart(b):]
	}
	return dst
}

// maximalSubpart returns the length (at least 1) of the longest prefix of b
// that starts a well-formed UTF-8 sequence without completing one. b must
// not start with a complete, valid sequence.
func maximalSubpart(b []byte) int {
	var need int
	lo, hi := byte(0x80), byte(0xBF)
	switch c := b[0]; {
	case 0xC2 <= c && c <= 0xDF:
		need = 2
	case c == 0xE0:
		need, lo = 3, 0xA0
	case 0xE1 <= c && c <= 0xEC, c == 0xEE, c == 0xEF:
		need = 3
	case c == 0xED:
		need, hi = 3, 0x9F
	case c == 0xF0:
		need, lo = 4, 0x90
	case 0xF1 <= c && c <= 0xF3:
		need = 4
	case c == 0xF4:
		need, hi = 4, 0x8F
	default:
		return 1
	}
	n := 1
	if n < len(b) && lo <= b[n] && b[n] <= hi {
		n++
		for n < need && n < len(b) && 0x80 <= b[n] && b[n] <= 0xBF {
			n++
		}
	}
	return n
}
