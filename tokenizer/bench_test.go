package tokenizer

import (
	"strings"
	"testing"
)

// mixedText is the benchmark input: English prose, code, numbers, CJK,
// emoji, white space runs and chat tokens, about 1.6 KB, repeated.
var mixedText = strings.Repeat(`The quick brown fox jumps over the lazy dog. It's 3.14159 o'clock; we'll see!
func main() {
	for i := 0; i < 10; i++ {
		fmt.Printf("%d: %s\n", i, strings.Repeat("ab", i))
	}
}
    indented   text with    runs of   spaces and tabs		here.
中文测试：你好，世界！日本語のテキスト。한국어 텍스트.
Emoji: 😀 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ and accents: café naïve Ñandú straße.
<|im_start|>user
What is 12345 + 67890?<|im_end|>
<|im_start|>assistant
The answer is 80235.<|im_end|>
{"key": [1, 2, 3], "nested": {"a": null, "b": "c"}} SELECT * FROM t WHERE id = 42;
`, 8)

func benchmarkEncode(b *testing.B, tok Tokenizer) {
	b.SetBytes(int64(len(mixedText)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tok.Encode(mixedText, true); err != nil {
			b.Fatal(err)
		}
	}
}

// go test -run '^$' -bench Encode ./tokenizer/
func BenchmarkEncodeQwen3(b *testing.B)       { benchmarkEncode(b, refTokenizer(b, "qwen3")) }
func BenchmarkEncodeGPT2(b *testing.B)        { benchmarkEncode(b, refTokenizer(b, "gpt2")) }
func BenchmarkEncodeLlama3Style(b *testing.B) { benchmarkEncode(b, refTokenizer(b, "llama3-style")) }
func BenchmarkEncodeByte(b *testing.B)        { benchmarkEncode(b, NewByte()) }

// BenchmarkEncodeQwen3NoCache measures encoding without the word cache:
// the cost of text never seen before.
func BenchmarkEncodeQwen3NoCache(b *testing.B) {
	tok, err := Parse(tokenizerJSON(b, "qwen3"))
	if err != nil {
		b.Fatal(err)
	}
	tok.cacheSize = 0
	benchmarkEncode(b, tok)
}

func BenchmarkDecodeQwen3(b *testing.B) {
	tok := refTokenizer(b, "qwen3")
	ids, err := tok.Encode(mixedText, true)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(mixedText)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tok.Decode(ids, false); err != nil {
			b.Fatal(err)
		}
	}
}

// go test -run '^$' -bench Parse ./tokenizer/
func BenchmarkParseQwen3(b *testing.B) {
	data := tokenizerJSON(b, "qwen3")
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}

// go test -run '^$' -bench Split ./tokenizer/: the hand-written Llama 3
// matcher against regexp2 running the same expression.
func BenchmarkSplitLlama3Hand(b *testing.B) {
	b.SetBytes(int64(len(mixedText)))
	var segs []segment
	for b.Loop() {
		segs = findSegments(segs[:0], mixedText, patternLlama3)
	}
}

func BenchmarkSplitLlama3Regexp2(b *testing.B) {
	re, err := compileRegex(llama3Pattern)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(mixedText)))
	var segs []segment
	for b.Loop() {
		if segs, err = re.segments(segs[:0], mixedText); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeO200kStyle(b *testing.B) { benchmarkEncode(b, refTokenizer(b, "o200k-style")) }
