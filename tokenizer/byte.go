package tokenizer

import "fmt"

// The vocabulary of the byte tokenizer of tensafe-tiny: ids 0..255 are the
// bytes, then three special tokens.
const (
	ByteBOS       = 256 // <bos>, put before the text by Encode(text, true)
	ByteEOS       = 257 // <eos>, ends a generated sequence
	BytePAD       = 258 // <pad>, fills batches
	ByteVocabSize = 259
)

var byteSpecials = [...]string{"<bos>", "<eos>", "<pad>"}

// Byte is the tokenizer of the built-in model tensafe-tiny: every byte of
// the text is one id, so any text (any language, emoji, binary noise) is
// encoded with no unknown token and no vocabulary file. Special tokens are
// never read from the text: "<eos>" written in a prompt is five bytes.
type Byte struct{}

var _ Tokenizer = Byte{}

// NewByte returns the byte tokenizer.
func NewByte() Byte { return Byte{} }

// Encode implements Tokenizer. Any string, even one that is not UTF-8, is
// encoded byte for byte; addSpecial puts <bos> first.
func (Byte) Encode(text string, addSpecial bool) ([]int, error) {
	ids := make([]int, 0, len(text)+1)
	if addSpecial {
		ids = append(ids, ByteBOS)
	}
	for i := 0; i < len(text); i++ {
		ids = append(ids, int(text[i]))
	}
	return ids, nil
}

// Decode implements Tokenizer. Special tokens are written as "<bos>",
// "<eos>" and "<pad>" unless skipSpecial; bytes that are not valid UTF-8
// become U+FFFD.
func (Byte) Decode(ids []int, skipSpecial bool) (string, error) {
	buf := make([]byte, 0, len(ids))
	out := make([]byte, 0, len(ids))
	for i, id := range ids {
		switch {
		case 0 <= id && id < 256:
			buf = append(buf, byte(id))
		case 256 <= id && id < ByteVocabSize:
			if skipSpecial {
				continue
			}
			out = appendLossyUTF8(out, buf)
			buf = buf[:0]
			out = append(out, byteSpecials[id-256]...)
		default:
			return "", fmt.Errorf("tokenizer: decode: ids[%d] = %d: %w (vocabulary size %d)", i, id, ErrUnknownID, ByteVocabSize)
		}
	}
	return string(appendLossyUTF8(out, buf)), nil
}

// VocabSize implements Tokenizer: 259.
func (Byte) VocabSize() int { return ByteVocabSize }

// SpecialID implements Tokenizer for "<bos>", "<eos>" and "<pad>".
func (Byte) SpecialID(name string) (int, bool) {
	for i, s := range byteSpecials {
		if s == name {
			return 256 + i, true
		}
	}
	return 0, false
}

// BOS implements Tokenizer.
func (Byte) BOS() (int, bool) { return ByteBOS, true }

// EOS implements Tokenizer.
func (Byte) EOS() []int { return []int{ByteEOS} }

// PAD implements Tokenizer.
func (Byte) PAD() (int, bool) { return BytePAD, true }
