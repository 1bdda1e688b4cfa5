package tokenizer

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Tokenizer turns text into token ids and back.
//
// There are two implementations: [BPE] for Hugging Face tokenizer.json files
// and [Byte] for the built-in model tensafe-tiny.
type Tokenizer interface {
	// Encode returns the ids of text. With addSpecial, the tokens the
	// tokenizer wraps a sequence in (Llama 3's BOS, tensafe-tiny's <bos>)
	// are added. Special tokens written in the text (for example
	// "<|im_start|>") are recognised and become their ids, as in the
	// reference implementation, whatever addSpecial says.
	Encode(text string, addSpecial bool) ([]int, error)
	// Decode returns the text of ids. With skipSpecial, special tokens are
	// left out. Bytes that do not form valid UTF-8 (a generation cut in the
	// middle of a character) become U+FFFD. An id outside the vocabulary is
	// an error wrapping ErrUnknownID.
	Decode(ids []int, skipSpecial bool) (string, error)
	// VocabSize is one more than the largest id the tokenizer knows; a
	// model's embedding table needs at least this many rows.
	VocabSize() int
	// SpecialID returns the id of the added or special token whose text is
	// name, such as "<|endoftext|>" or "<eos>".
	SpecialID(name string) (int, bool)
	// BOS returns the beginning-of-sequence id, if the tokenizer has one.
	BOS() (int, bool)
	// EOS returns the ids that end a generated sequence, possibly none.
	EOS() []int
	// PAD returns the padding id, if the tokenizer names one.
	PAD() (int, bool)
}

var (
	// ErrUnsupported marks a tokenizer.json feature this package does not
	// implement; the error names the field and its value.
	ErrUnsupported = errors.New("not supported")
	// ErrInvalid marks a malformed or inconsistent tokenizer file.
	ErrInvalid = errors.New("invalid tokenizer file")
	// ErrTooLarge marks a file over MaxFileSize.
	ErrTooLarge = errors.New("file too large")
	// ErrUnknownID marks an id outside the vocabulary passed to Decode.
	ErrUnknownID = errors.New("id not in vocabulary")
	// ErrInvalidUTF8 marks text passed to BPE.Encode that is not UTF-8.
	ErrInvalidUTF8 = errors.New("text is not valid UTF-8")
)

// MaxFileSize bounds the tokenizer.json files Load and LoadDir read (the
// largest common ones, Gemma's, are about 33 MB).
const MaxFileSize = 64 << 20

// maxConfigSize bounds tokenizer_config.json and generation_config.json.
const maxConfigSize = 4 << 20

// Load reads a Hugging Face tokenizer.json. Only that file is read, so the
// tokenizer knows its end-of-sequence ids only if LoadDir is used instead.
func Load(path string) (Tokenizer, error) {
	data, err := readFile(path, MaxFileSize)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: load: %w", err)
	}
	t, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	return t, nil
}

// LoadDir reads the tokenizer of a Hugging Face model folder: tokenizer.json,
// and when present tokenizer_config.json (bos_token, eos_token, pad_token)
// and generation_config.json (eos_token_id, pad_token_id).
func LoadDir(dir string) (Tokenizer, error) {
	data, err := readFile(filepath.Join(dir, "tokenizer.json"), MaxFileSize)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: load dir: %w", err)
	}
	var tokCfg, genCfg []byte
	for _, f := range []struct {
		name string
		dst  *[]byte
	}{{"tokenizer_config.json", &tokCfg}, {"generation_config.json", &genCfg}} {
		b, err := readFile(filepath.Join(dir, f.name), maxConfigSize)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("tokenizer: load dir: %w", err)
		default:
			*f.dst = b
		}
	}
	t, err := ParseWithConfig(data, tokCfg, genCfg)
	if err != nil {
		return nil, fmt.Errorf("%w (folder %s)", err, dir)
	}
	return t, nil
}

// readFile reads at most limit bytes of path, failing with ErrTooLarge
// beyond.
func readFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > limit {
		return nil, fmt.Errorf("read %s: %w (%d bytes, limit %d)", path, ErrTooLarge, fi.Size(), limit)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("read %s: %w (limit %d bytes)", path, ErrTooLarge, limit)
	}
	return data, nil
}
