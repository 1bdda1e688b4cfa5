package tokenizer

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// Seed corpora are in testdata/fuzz/FuzzXxx. Run one fuzzer with, e.g.,
//
//	go test -run '^$' -fuzz '^FuzzParse$' -fuzztime 20s -fuzzminimizetime 2s ./tokenizer/
//
// (the default minimization budget of 60 s per new input would eat the
// whole run: the seeds are kilobytes long).

// FuzzParse feeds arbitrary bytes to the tokenizer.json parser: it must
// return a tokenizer or an error, never panic, and whatever it accepts must
// encode and decode without panicking.
func FuzzParse(f *testing.F) {
	f.Add(mustJSONf(f, minimal()))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := Parse(data)
		if err != nil {
			if tok != nil {
				t.Fatal("tokenizer and error")
			}
			return
		}
		for _, s := range []string{"", "Hello world 123 <s>", "é😀\n\n  x"} {
			ids, err := tok.Encode(s, true)
			if err != nil {
				t.Fatalf("Encode(%q): %v", s, err)
			}
			for _, id := range ids {
				if id < 0 || id >= tok.VocabSize() {
					t.Fatalf("Encode(%q) gave id %d outside [0, %d)", s, id, tok.VocabSize())
				}
			}
			if _, err := tok.Decode(ids, false); err != nil {
				t.Fatalf("Decode(Encode(%q)): %v", s, err)
			}
		}
	})
}

func mustJSONf(f *testing.F, v any) []byte {
	b, err := jsonMarshal(v)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// FuzzRoundTrip checks, on the reference tokenizers, that decoding the
// encoding of any UTF-8 text (by Encode or EncodeOrdinary) gives the text
// back (normalized to NFC for Qwen3), that special tokens wrap it as the
// template says, and that every id is in the vocabulary.
func FuzzRoundTrip(f *testing.F) {
	for _, s := range []string{"Hello, world!", "  \n\n\tx", "<|im_start|>a<|im_end|>", "cafe\u0301 😀", "12345 '''s"} {
		f.Add(s)
	}
	names := []string{"qwen3", "gpt2", "llama3-style", "smollm-style"}
	toks := make([]*BPE, len(names))
	for i, name := range names {
		toks[i] = refTokenizer(f, name)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			if _, err := toks[0].Encode(s, false); err == nil {
				t.Fatal("invalid UTF-8 accepted")
			}
			return
		}
		for i, tok := range toks {
			ids, err := tok.Encode(s, false)
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range ids {
				if _, ok := tok.Token(id); !ok {
					t.Fatalf("%s: Encode(%q) gave unknown id %d", names[i], s, id)
				}
			}
			got, err := tok.Decode(ids, false)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := expectedRoundTrip(names[i], s)
			if got != want {
				t.Fatalf("%s: Decode(Encode(%q)) = %q", names[i], s, got)
			}
			ordinary, err := tok.EncodeOrdinary(s)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := tok.Decode(ordinary, false); err != nil || got != want {
				t.Fatalf("%s: Decode(EncodeOrdinary(%q)) = %q, %v", names[i], s, got, err)
			}
			withSpecial, err := tok.Encode(s, true)
			if err != nil {
				t.Fatal(err)
			}
			wrapped := append(append(slices.Clone(tok.prefix), ids...), tok.suffix...)
			if !slices.Equal(withSpecial, wrapped) {
				t.Fatalf("%s: Encode(%q, true) = %v, want %v", names[i], s, withSpecial, wrapped)
			}
		}
	})
}

// FuzzPreTokenize checks that the hand-written split expressions cut any
// text into non-empty pieces that put together give the text back, and
// that they cut it exactly where regexp2 running the same expression does
// (regexp2 itself is checked against the reference on the o200k and
// DeepSeek expressions).
func FuzzPreTokenize(f *testing.F) {
	for _, s := range []string{"Hello world", "a  \n\n  b", "I'M 1234567", "\t.x()\r\n", "\u00a0\u3000 x"} {
		f.Add(s)
	}
	exprs := map[knownPattern]string{patternGPT2: gpt2Pattern, patternLlama3: llama3Pattern, patternQwen2: qwen2Pattern}
	slow := map[knownPattern]regexPattern{}
	for p, expr := range exprs {
		re, err := compileRegex(expr)
		if err != nil {
			f.Fatal(err)
		}
		slow[p] = re
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return
		}
		for _, p := range []knownPattern{patternGPT2, patternLlama3, patternQwen2} {
			segs := findSegments(nil, s, p)
			want, err := slow[p].segments(nil, s)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(segs, want) {
				t.Fatalf("pattern %d on %q:\n hand    %v\n regexp2 %v", p, s, segs, want)
			}
			pieces := appendPieces(nil, s, segs, behaviorIsolated)
			if strings.Join(pieces, "") != s {
				t.Fatalf("pattern %d: pieces %q do not rebuild %q", p, pieces, s)
			}
			for _, g := range segs {
				if !g.match {
					t.Fatalf("pattern %d: %q has an unmatched gap %q", p, s, s[g.start:g.end])
				}
			}
		}
	})
}

// FuzzByte checks that the byte tokenizer round-trips any UTF-8 text and
// turns any other bytes into valid UTF-8.
func FuzzByte(f *testing.F) {
	for _, s := range []string{"", "hi", "\xff\xfe", "é😀", "\xf0\x9f\x98"} {
		f.Add(s)
	}
	tok := NewByte()
	f.Fuzz(func(t *testing.T, s string) {
		ids, err := tok.Encode(s, true)
		if err != nil || len(ids) != len(s)+1 || ids[0] != ByteBOS {
			t.Fatalf("Encode(%q) = %v, %v", s, ids, err)
		}
		got, err := tok.Decode(ids, true)
		if err != nil {
			t.Fatal(err)
		}
		if !utf8.ValidString(got) {
			t.Fatalf("Decode gave invalid UTF-8 %q", got)
		}
		if utf8.ValidString(s) && got != s {
			t.Fatalf("Decode(Encode(%q)) = %q", s, got)
		}
	})
}
