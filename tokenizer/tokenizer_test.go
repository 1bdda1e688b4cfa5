package tokenizer

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

func TestByte(t *testing.T) {
	tok := NewByte()
	if tok.VocabSize() != 259 {
		t.Fatalf("VocabSize = %d", tok.VocabSize())
	}
	if id, ok := tok.BOS(); !ok || id != 256 {
		t.Errorf("BOS = %d, %v", id, ok)
	}
	if got := tok.EOS(); !slices.Equal(got, []int{257}) {
		t.Errorf("EOS = %v", got)
	}
	if id, ok := tok.PAD(); !ok || id != 258 {
		t.Errorf("PAD = %d, %v", id, ok)
	}
	for name, want := range map[string]int{"<bos>": 256, "<eos>": 257, "<pad>": 258} {
		if id, ok := tok.SpecialID(name); !ok || id != want {
			t.Errorf("SpecialID(%q) = %d, %v", name, id, ok)
		}
	}
	if _, ok := tok.SpecialID("<unk>"); ok {
		t.Error("SpecialID(<unk>) found")
	}
	tests := []struct {
		text    string
		special bool
		ids     []int
	}{
		{"", false, []int{}},
		{"", true, []int{256}},
		{"hi", true, []int{256, 'h', 'i'}},
		{"é", false, []int{0xC3, 0xA9}},
		{"<eos>", false, []int{'<', 'e', 'o', 's', '>'}}, // never read from text
		{"\xff\x00", false, []int{0xFF, 0}},
	}
	for _, tc := range tests {
		got, err := tok.Encode(tc.text, tc.special)
		if err != nil || !slices.Equal(got, tc.ids) {
			t.Errorf("Encode(%q, %v) = %v, %v; want %v", tc.text, tc.special, got, err, tc.ids)
		}
	}
	decodes := []struct {
		ids  []int
		skip bool
		text string
	}{
		{[]int{256, 'h', 'i', 257}, false, "<bos>hi<eos>"},
		{[]int{256, 'h', 'i', 257, 258}, true, "hi"},
		{[]int{0xF0, 0x9F, 0x98}, false, "\uFFFD"},                 // a cut emoji is one U+FFFD
		{[]int{0xF0, 0x9F, 257, 0x98}, false, "\uFFFD<eos>\uFFFD"}, // specials cut byte runs
		{[]int{0xC3, 0xA9}, false, "é"},
	}
	for _, tc := range decodes {
		got, err := tok.Decode(tc.ids, tc.skip)
		if err != nil || got != tc.text {
			t.Errorf("Decode(%v, %v) = %q, %v; want %q", tc.ids, tc.skip, got, err, tc.text)
		}
	}
	for _, bad := range [][]int{{-1}, {259}, {'a', 1 << 40}} {
		if _, err := tok.Decode(bad, false); !errors.Is(err, ErrUnknownID) {
			t.Errorf("Decode(%v) error = %v, want ErrUnknownID", bad, err)
		}
	}
}

func TestLossyUTF8(t *testing.T) {
	// Cases from the Unicode standard's table 3-8 and the WHATWG encoding
	// tests: one U+FFFD per maximal subpart.
	tests := []struct{ in, want string }{
		{"abc", "abc"},
		{"\xC3", "\uFFFD"},
		{"\xE2\x82", "\uFFFD"},
		{"\xE2\x82\xAC", "€"},
		{"\xF0\x9F\x98", "\uFFFD"},
		{"\xF0\x9F\x98\x80", "😀"},
		{"\x80\x80", "\uFFFD\uFFFD"},
		{"\xC0\xAF", "\uFFFD\uFFFD"},                                 // overlong
		{"\xE0\x80\xAF", "\uFFFD\uFFFD\uFFFD"},                       // overlong
		{"\xED\xA0\x80", "\uFFFD\uFFFD\uFFFD"},                       // surrogate
		{"\xF4\x90\x80\x80", "\uFFFD\uFFFD\uFFFD\uFFFD"},             // above U+10FFFF
		{"\x61\xF1\x80\x80\xE1\x80\xC2\x62", "a\uFFFD\uFFFD\uFFFDb"}, // Unicode 3.9, table 3-8
		{"\xF5", "\uFFFD"},
		{"\uFFFD", "\uFFFD"},
	}
	for _, tc := range tests {
		if got := string(appendLossyUTF8(nil, []byte(tc.in))); got != tc.want {
			t.Errorf("lossy(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestByteLevelAlphabet(t *testing.T) {
	seen := map[rune]bool{}
	for b, r := range byteRune {
		if seen[r] {
			t.Fatalf("rune %U used twice", r)
		}
		seen[r] = true
		if int(runeByte[r])-1 != b {
			t.Fatalf("runeByte[%U] = %d, want %d", r, runeByte[r]-1, b)
		}
	}
	// Known points of GPT-2's map.
	for b, r := range map[byte]rune{' ': 'Ġ', '\n': 'Ċ', '!': '!', 0: 'Ā', 0xAD: 'Ń', 0xFF: 'ÿ'} {
		if byteRune[b] != r {
			t.Errorf("byteRune[%#x] = %q, want %q", b, byteRune[b], r)
		}
	}
}

func TestSplitBehaviors(t *testing.T) {
	// The example of the Hugging Face tokenizers documentation for
	// SplitDelimiterBehavior.
	const s = "the-final--countdown"
	tests := []struct {
		b    behavior
		want []string
	}{
		{behaviorRemoved, []string{"the", "final", "countdown"}},
		{behaviorIsolated, []string{"the", "-", "final", "-", "-", "countdown"}},
		{behaviorMergedWithPrevious, []string{"the-", "final-", "-", "countdown"}},
		{behaviorMergedWithNext, []string{"the", "-final", "-", "-countdown"}},
		{behaviorContiguous, []string{"the", "-", "final", "--", "countdown"}},
	}
	for _, tc := range tests {
		segs := findSegments(nil, s, literalPattern("-"))
		if got := appendPieces(nil, s, segs, tc.b); !slices.Equal(got, tc.want) {
			t.Errorf("behavior %d: %q, want %q", tc.b, got, tc.want)
		}
	}
	// Digits, contiguous and individual.
	e := &encoder{}
	if got := (digitsStep{}).apply(e, nil, "a123b4"); !slices.Equal(got, []string{"a", "123", "b", "4"}) {
		t.Errorf("Digits = %q", got)
	}
	if got := (digitsStep{individual: true}).apply(e, nil, "a12٣"); !slices.Equal(got, []string{"a", "1", "2", "٣"}) {
		t.Errorf("Digits individual = %q", got)
	}
}

func TestKnownPatterns(t *testing.T) {
	// Hand-checked splits; the reference tests cover hundreds more.
	tests := []struct {
		p    knownPattern
		in   string
		want []string
	}{
		{patternGPT2, "Hello world  ok\n\n", []string{"Hello", " world", " ", " ok", "\n\n"}},
		{patternGPT2, "I'm 'S 123456", []string{"I", "'m", " '", "S", " 123456"}},
		{patternLlama3, "I'M 1234567 ab", []string{"I", "'M", " ", "123", "456", "7", " ab"}},
		{patternLlama3, "x  \n\n  y", []string{"x", "  \n\n", " ", " y"}},
		{patternLlama3, "\tfoo.bar()\n", []string{"\tfoo", ".bar", "()\n"}},
		{patternQwen2, "v12 ", []string{"v", "1", "2", " "}},
	}
	for _, tc := range tests {
		segs := findSegments(nil, tc.in, tc.p)
		if got := appendPieces(nil, tc.in, segs, behaviorIsolated); !slices.Equal(got, tc.want) {
			t.Errorf("%d %q: %q, want %q", tc.p, tc.in, got, tc.want)
		}
	}
}

// minimal is the smallest tokenizer.json this package accepts, to be
// modified by the error tests.
func minimal() map[string]any {
	vocab := map[string]any{}
	for b := 0; b < 256; b++ {
		vocab[string(byteRune[b])] = b
	}
	vocab["ab"] = 256
	return map[string]any{
		"version":        "1.0",
		"truncation":     nil,
		"padding":        nil,
		"added_tokens":   []any{map[string]any{"id": 257, "content": "<s>", "special": true}},
		"normalizer":     nil,
		"pre_tokenizer":  map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
		"post_processor": nil,
		"decoder":        map[string]any{"type": "ByteLevel"},
		"model":          map[string]any{"type": "BPE", "vocab": vocab, "merges": []any{"a b"}},
	}
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := jsonMarshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseMinimal(t *testing.T) {
	tok, err := Parse(mustJSON(t, minimal()))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := tok.Encode("ab<s>a", true)
	if err != nil || !slices.Equal(ids, []int{256, 257, 'a'}) { // minimal gives byte b the id b
		t.Errorf("Encode = %v, %v", ids, err)
	}
	if tok.VocabSize() != 258 {
		t.Errorf("VocabSize = %d", tok.VocabSize())
	}
	if _, ok := tok.BOS(); ok {
		t.Error("BOS without a template or config")
	}
	if !tok.IsSpecial(257) || tok.IsSpecial(256) {
		t.Error("IsSpecial")
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(m map[string]any)
		target error
		say    string // the error must name this
	}{
		{"unknown top-level field", func(m map[string]any) { m["extra"] = 1 }, ErrUnsupported, `"extra"`},
		{"WordPiece model", func(m map[string]any) { m["model"].(map[string]any)["type"] = "WordPiece" }, ErrUnsupported, `model.type "WordPiece"`},
		{"Unigram model", func(m map[string]any) { m["model"].(map[string]any)["type"] = "Unigram" }, ErrUnsupported, `"Unigram"`},
		{"dropout", func(m map[string]any) { m["model"].(map[string]any)["dropout"] = 0.1 }, ErrUnsupported, "model.dropout"},
		{"byte_fallback", func(m map[string]any) { m["model"].(map[string]any)["byte_fallback"] = true }, ErrUnsupported, "byte_fallback"},
		{"subword prefix", func(m map[string]any) { m["model"].(map[string]any)["continuing_subword_prefix"] = "##" }, ErrUnsupported, "continuing_subword_prefix"},
		{"Lowercase normalizer", func(m map[string]any) { m["normalizer"] = map[string]any{"type": "Lowercase"} }, ErrUnsupported, `normalizer.type "Lowercase"`},
		{"nested normalizer", func(m map[string]any) {
			m["normalizer"] = map[string]any{"type": "Sequence", "normalizers": []any{map[string]any{"type": "NFC"}, map[string]any{"type": "Strip"}}}
		}, ErrUnsupported, `normalizer.normalizers[1].type "Strip"`},
		{"Metaspace pre-tokenizer", func(m map[string]any) { m["pre_tokenizer"] = map[string]any{"type": "Metaspace"} }, ErrUnsupported, `pre_tokenizer.type "Metaspace"`},
		{"no pre-tokenizer", func(m map[string]any) { m["pre_tokenizer"] = nil }, ErrUnsupported, "pre_tokenizer: null"},
		{"no ByteLevel", func(m map[string]any) {
			m["pre_tokenizer"] = map[string]any{"type": "Digits", "individual_digits": true}
		}, ErrUnsupported, "no ByteLevel"},
		{"bad regex", func(m map[string]any) {
			m["pre_tokenizer"] = map[string]any{"type": "Sequence", "pretokenizers": []any{
				map[string]any{"type": "Split", "pattern": map[string]any{"Regex": `(\d+`}, "behavior": "Isolated", "invert": false},
				map[string]any{"type": "ByteLevel", "use_regex": false}}}
		}, ErrUnsupported, `pre_tokenizer.pretokenizers[0].pattern.Regex "(\\d+"`},
		{"unknown behavior", func(m map[string]any) {
			m["pre_tokenizer"] = map[string]any{"type": "Sequence", "pretokenizers": []any{
				map[string]any{"type": "Split", "pattern": map[string]any{"String": "x"}, "behavior": "Sideways"},
				map[string]any{"type": "ByteLevel"}}}
		}, ErrUnsupported, `behavior "Sideways"`},
		{"WordPiece decoder", func(m map[string]any) { m["decoder"] = map[string]any{"type": "WordPiece"} }, ErrUnsupported, `decoder.type "WordPiece"`},
		{"Bert post-processor", func(m map[string]any) { m["post_processor"] = map[string]any{"type": "BertProcessing"} }, ErrUnsupported, `post_processor.type "BertProcessing"`},
		{"merge of unknown token", func(m map[string]any) { m["model"].(map[string]any)["merges"] = []any{"a zz"} }, ErrInvalid, `token "zz"`},
		{"merge result missing", func(m map[string]any) { m["model"].(map[string]any)["merges"] = []any{"b c"} }, ErrInvalid, `merged token "bc"`},
		{"merge with three parts", func(m map[string]any) { m["model"].(map[string]any)["merges"] = []any{"a b c"} }, ErrInvalid, "model.merges[0]"},
		{"merge pair of one", func(m map[string]any) { m["model"].(map[string]any)["merges"] = []any{[]any{"a"}} }, ErrInvalid, "model.merges[0]"},
		{"negative id", func(m map[string]any) { m["model"].(map[string]any)["vocab"].(map[string]any)["zz"] = -1 }, ErrInvalid, `model.vocab["zz"]`},
		{"huge id", func(m map[string]any) { m["model"].(map[string]any)["vocab"].(map[string]any)["zz"] = 1 << 40 }, ErrInvalid, `model.vocab["zz"]`},
		{"duplicate id", func(m map[string]any) { m["model"].(map[string]any)["vocab"].(map[string]any)["zz"] = 5 }, ErrInvalid, "id 5"},
		{"added token id clash", func(m map[string]any) {
			m["added_tokens"] = []any{map[string]any{"id": 3, "content": "<x>", "special": true}}
		}, ErrInvalid, "added_tokens[0]"},
		{"added token empty", func(m map[string]any) {
			m["added_tokens"] = []any{map[string]any{"id": 300, "content": "", "special": true}}
		}, ErrInvalid, "added_tokens[0].content"},
		{"added token unknown field", func(m map[string]any) {
			m["added_tokens"] = []any{map[string]any{"id": 300, "content": "<x>", "weird": true}}
		}, ErrUnsupported, `added_tokens[0]: field "weird"`},
		{"unk not in vocab", func(m map[string]any) { m["model"].(map[string]any)["unk_token"] = "<unk>" }, ErrInvalid, "model.unk_token"},
		{"template without A", func(m map[string]any) {
			m["post_processor"] = map[string]any{"type": "TemplateProcessing", "single": []any{
				map[string]any{"SpecialToken": map[string]any{"id": "<s>", "type_id": 0}}},
				"special_tokens": map[string]any{"<s>": map[string]any{"id": "<s>", "ids": []any{257}, "tokens": []any{"<s>"}}}}
		}, ErrInvalid, "no sequence A"},
		{"template with unknown id", func(m map[string]any) {
			m["post_processor"] = map[string]any{"type": "TemplateProcessing", "single": []any{
				map[string]any{"SpecialToken": map[string]any{"id": "<s>", "type_id": 0}},
				map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}}},
				"special_tokens": map[string]any{"<s>": map[string]any{"id": "<s>", "ids": []any{9999}, "tokens": []any{"<s>"}}}}
		}, ErrInvalid, "id 9999"},
		{"no model", func(m map[string]any) { delete(m, "model") }, ErrInvalid, "model"},
		{"vocab not an object", func(m map[string]any) { m["model"].(map[string]any)["vocab"] = []any{1} }, ErrInvalid, "model.vocab"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := minimal()
			tc.edit(m)
			_, err := Parse(mustJSON(t, m))
			if !errors.Is(err, tc.target) {
				t.Fatalf("error = %v, want %v", err, tc.target)
			}
			if !strings.Contains(err.Error(), tc.say) {
				t.Errorf("error %q does not say %q", err, tc.say)
			}
		})
	}
	for _, bad := range []string{"", "null", "[]", "{", `{"model": 3}`, `"x"`} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadDir(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("LoadDir(empty) error = %v, want not exist", err)
	}
	write := func(name string, data []byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("tokenizer.json", tokenizerJSON(t, "qwen3"))
	cfg, err := os.ReadFile("testdata/qwen3/tokenizer_config.json")
	if err != nil {
		t.Fatal(err)
	}
	write("tokenizer_config.json", cfg)
	write("generation_config.json", []byte(`{"bos_token_id": 151643, "eos_token_id": [151645, 151643], "pad_token_id": 151643}`))
	tok, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.EOS(); !slices.Equal(got, []int{151645, 151643}) {
		t.Errorf("EOS = %v", got)
	}
	if _, ok := tok.BOS(); ok {
		t.Error("Qwen3 has no BOS")
	}
	if id, ok := tok.PAD(); !ok || id != 151643 {
		t.Errorf("PAD = %d, %v", id, ok)
	}
	if tok.VocabSize() != 151669 {
		t.Errorf("VocabSize = %d", tok.VocabSize())
	}
	if id, ok := tok.SpecialID("<|im_start|>"); !ok || id != 151644 {
		t.Errorf("SpecialID = %d, %v", id, ok)
	}
	// Load reads the one file and knows no EOS.
	one, err := Load(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(one.EOS()) != 0 {
		t.Errorf("Load EOS = %v", one.EOS())
	}

	// A bad config is an error that names the file and the field (on a
	// small tokenizer: Qwen3's takes a while to parse).
	write("tokenizer.json", mustJSON(t, minimal()))
	write("tokenizer_config.json", []byte(`{}`))
	write("generation_config.json", []byte(`{"eos_token_id": 99999999}`))
	if _, err := LoadDir(dir); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "generation_config.json: eos_token_id 99999999") {
		t.Errorf("bad generation config: %v", err)
	}
	write("generation_config.json", []byte(`{}`))
	write("tokenizer_config.json", []byte(`{"eos_token": {"content": "<nope>"}}`))
	if _, err := LoadDir(dir); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `eos_token "<nope>"`) {
		t.Errorf("bad tokenizer config: %v", err)
	}
	write("tokenizer_config.json", []byte(`{"bos_token": "<s>", "eos_token": {"content": "<s>"}, "pad_token": null}`))
	write("generation_config.json", []byte(`{"eos_token_id": 256, "pad_token_id": 256}`))
	tok, err = LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := tok.BOS(); !ok || id != 257 {
		t.Errorf("BOS = %d, %v", id, ok)
	}
	if got := tok.EOS(); !slices.Equal(got, []int{256, 257}) {
		t.Errorf("EOS = %v, want generation config's then tokenizer config's", got)
	}
	if id, ok := tok.PAD(); !ok || id != 256 {
		t.Errorf("PAD = %d, %v", id, ok)
	}
}

func TestLoadTooLarge(t *testing.T) {
	p := filepath.Join(t.TempDir(), "tokenizer.json")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxFileSize + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := Load(p); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Load(huge) error = %v, want ErrTooLarge", err)
	}
}

func TestLlama3Template(t *testing.T) {
	tok := refTokenizer(t, "llama3-style")
	if id, ok := tok.BOS(); !ok || id != 50257 {
		t.Errorf("BOS = %d, %v", id, ok)
	}
	ids, err := tok.Encode("Hi", true)
	if err != nil || len(ids) == 0 || ids[0] != 50257 {
		t.Errorf("Encode(Hi, true) = %v, %v", ids, err)
	}
	text, _ := tok.Decode(ids, true)
	if text != "Hi" {
		t.Errorf("Decode = %q", text)
	}
}

func TestEncodeErrors(t *testing.T) {
	tok := refTokenizer(t, "gpt2")
	if _, err := tok.Encode("ok\xffno", false); !errors.Is(err, ErrInvalidUTF8) || !strings.Contains(err.Error(), "offset 2") {
		t.Errorf("Encode(invalid) error = %v", err)
	}
	if _, err := tok.Decode([]int{1, 50257}, false); !errors.Is(err, ErrUnknownID) || !strings.Contains(err.Error(), "ids[1] = 50257") {
		t.Errorf("Decode(unknown) error = %v", err)
	}
}

func TestRoundTrip(t *testing.T) {
	texts := []string{"", "Hello, world!", "  多 空格\n\n\t tabs", "😀👨‍👩‍👧‍👦 cafe\u0301", "<|endoftext|>x", "\x00\x01\u0085\ufeff", strings.Repeat("ab ", 500)}
	for _, name := range referenceNames {
		tok := refTokenizer(t, name)
		for _, s := range texts {
			ids, err := tok.Encode(s, false)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tok.Decode(ids, false)
			if err != nil {
				t.Fatal(err)
			}
			if want, ok := expectedRoundTrip(name, s); ok && got != want {
				t.Errorf("%s: Decode(Encode(%q)) = %q, want %q", name, s, got, want)
			}
		}
	}
}

// expectedRoundTrip is what decoding the encoding of s gives back: s
// itself, normalized where the tokenizer normalizes. gpt2-prefix-nfkc adds
// spaces and strips them around tokens: no round trip.
func expectedRoundTrip(name, s string) (string, bool) {
	switch name {
	case "qwen3":
		return norm.NFC.String(s), true
	case "gpt2-prefix-nfkc":
		return "", false
	}
	return s, true
}

func TestConcurrentEncode(t *testing.T) {
	tok := refTokenizer(t, "qwen3")
	want, _ := tok.Encode(mixedText, false)
	done := make(chan []int)
	for range 4 {
		go func() {
			ids, _ := tok.Encode(mixedText, false)
			done <- ids
		}()
	}
	for range 4 {
		if got := <-done; !slices.Equal(got, want) {
			t.Error("concurrent Encode differs")
		}
	}
	if !utf8.ValidString(mixedText) {
		t.Fatal("mixedText is not UTF-8")
	}
}

func TestEncodeOrdinary(t *testing.T) {
	tok := refTokenizer(t, "qwen3")
	text := "<|im_start|>user\nhi<think>x</think><|im_end|>"
	ids, err := tok.EncodeOrdinary(text)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if tok.IsSpecial(id) {
			t.Errorf("EncodeOrdinary gave special id %d", id)
		}
	}
	think, _ := tok.SpecialID("<think>") // an added token that is not special
	if !slices.Contains(ids, think) {
		t.Errorf("EncodeOrdinary(%q) = %v: lost the non-special <think>", text, ids)
	}
	got, err := tok.Decode(ids, true) // nothing to skip
	if err != nil || got != text {
		t.Errorf("Decode(EncodeOrdinary) = %q, %v", got, err)
	}
	// The special-token text is encoded as its pieces would be alone.
	plain, _ := tok.Encode("<|", false)
	if !slices.Equal(ids[:len(plain)], plain) {
		t.Errorf("EncodeOrdinary starts %v, want %v", ids[:len(plain)], plain)
	}
	normal, _ := tok.Encode(text, false)
	if normal[0] != 151644 || slices.Equal(normal, ids) {
		t.Errorf("Encode = %v should split out <|im_start|>", normal)
	}
}
