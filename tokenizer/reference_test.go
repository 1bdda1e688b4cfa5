package tokenizer

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
)

// The files under testdata/ come from scripts/tokenizer-reference (see its
// generate.mjs and testdata/README.md): two real vocabularies (Qwen3,
// GPT-2), three variants of GPT-2's dressed as other families, and the ids
// Hugging Face's tokenizers.js gives for a few hundred strings.

func readGz(t testing.TB, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

type variant struct {
	Name      string            `json:"name"`
	Base      string            `json:"base"`
	AddTokens []json.RawMessage `json:"add_tokens"`
	Set       map[string]any    `json:"set"`
	Model     map[string]any    `json:"model"`
}

// tokenizerJSON returns the tokenizer.json of a reference tokenizer, built
// from variants.json for the variants exactly as generate.mjs builds it.
func tokenizerJSON(t testing.TB, name string) []byte {
	t.Helper()
	if p := filepath.Join("testdata", name, "tokenizer.json.gz"); fileExists(p) {
		return readGz(t, p)
	}
	raw, err := os.ReadFile("testdata/variants.json")
	if err != nil {
		t.Fatal(err)
	}
	var vs []variant
	if err := json.Unmarshal(raw, &vs); err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		if v.Name != name {
			continue
		}
		var base map[string]any
		if err := json.Unmarshal(tokenizerJSON(t, v.Base), &base); err != nil {
			t.Fatal(err)
		}
		added := base["added_tokens"].([]any)
		for _, a := range v.AddTokens {
			var m any
			if err := json.Unmarshal(a, &m); err != nil {
				t.Fatal(err)
			}
			added = append(added, m)
		}
		base["added_tokens"] = added
		for k, val := range v.Set {
			base[k] = val
		}
		model := base["model"].(map[string]any)
		for k, val := range v.Model {
			model[k] = val
		}
		out, err := json.Marshal(base)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	t.Fatalf("no reference tokenizer %q", name)
	return nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

var (
	refMu    sync.Mutex
	refCache = map[string]*BPE{}
)

// refTokenizer parses a reference tokenizer once per test binary.
func refTokenizer(t testing.TB, name string) *BPE {
	t.Helper()
	refMu.Lock()
	defer refMu.Unlock()
	if tok, ok := refCache[name]; ok {
		return tok
	}
	var cfg []byte
	if p := filepath.Join("testdata", name, "tokenizer_config.json"); fileExists(p) {
		var err error
		if cfg, err = os.ReadFile(p); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := ParseWithConfig(tokenizerJSON(t, name), cfg, nil)
	if err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	refCache[name] = tok
	return tok
}

type referenceFile struct {
	Tokenizer string `json:"tokenizer"`
	Reference string `json:"reference"`
	Encode    []struct {
		Text       string `json:"text"`
		IDs        []int  `json:"ids"`
		IDsSpecial []int  `json:"ids_special"`
	} `json:"encode"`
	Decode []struct {
		IDs         []int  `json:"ids"`
		SkipSpecial bool   `json:"skip_special"`
		Text        string `json:"text"`
	} `json:"decode"`
}

var referenceNames = []string{"qwen3", "gpt2", "llama3-style", "smollm-style", "o200k-style", "deepseek-style", "gpt2-prefix-nfkc"}

func TestReferenceEncodings(t *testing.T) {
	for _, name := range referenceNames {
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata/reference", name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			var ref referenceFile
			if err := json.Unmarshal(raw, &ref); err != nil {
				t.Fatal(err)
			}
			if len(ref.Encode) < 300 {
				t.Fatalf("only %d reference strings", len(ref.Encode))
			}
			tok := refTokenizer(t, name)
			failed := 0
			for _, c := range ref.Encode {
				for _, special := range []bool{false, true} {
					want := c.IDs
					if special {
						want = c.IDsSpecial
					}
					got, err := tok.Encode(c.Text, special)
					if err != nil {
						t.Errorf("Encode(%q, %v): %v", c.Text, special, err)
						continue
					}
					if !slices.Equal(got, want) {
						failed++
						if failed <= 10 {
							t.Errorf("Encode(%q, %v)\n got  %v\n want %v (%s)", c.Text, special, got, want, ref.Reference)
						}
					}
				}
			}
			for _, c := range ref.Decode {
				got, err := tok.Decode(c.IDs, c.SkipSpecial)
				if err != nil {
					t.Errorf("Decode(%v, %v): %v", c.IDs, c.SkipSpecial, err)
					continue
				}
				if got != c.Text {
					failed++
					if failed <= 10 {
						t.Errorf("Decode(%v, %v) = %q, want %q", c.IDs, c.SkipSpecial, got, c.Text)
					}
				}
			}
			if failed > 0 {
				t.Errorf("%d of %d encodings and %d decodings differ from %s", failed, 2*len(ref.Encode), len(ref.Decode), ref.Reference)
			}
		})
	}
}

func ExampleBPE_Encode() {
	data, _ := os.ReadFile("testdata/qwen3/tokenizer.json.gz")
	zr, _ := gzip.NewReader(bytes.NewReader(data))
	js, _ := io.ReadAll(zr)
	tok, err := Parse(js)
	if err != nil {
		panic(err)
	}
	ids, _ := tok.Encode("<|im_start|>user\nHello, world!<|im_end|>", false)
	text, _ := tok.Decode(ids, true)
	fmt.Println(ids)
	fmt.Printf("%q\n", text)
	// Output:
	// [151644 872 198 9707 11 1879 0 151645]
	// "user\nHello, world!"
}
