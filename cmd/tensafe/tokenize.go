package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

func newTokenizeCmd() *cobra.Command {
	var (
		modelDir    string
		special     bool
		decode      bool
		asJSON      bool
		skipSpecial bool
	)
	cmd := &cobra.Command{
		Use:   "tokenize --model MODEL (TEXT | --decode IDS)",
		Short: "Turn text into a model's token ids, or ids back into text",
		Long: `Encode TEXT (or standard input when TEXT is -) with the tokenizer of MODEL, a Hugging Face
folder with tokenizer.json or tensafe-tiny, and print the ids separated by commas, the form
"tensafe model logits --input-ids" takes. With --decode, read comma-separated ids and print
their text.`,
		Example: `  tensafe tokenize --model tensafe-tiny "Hello"
  tensafe tokenize --model ./Qwen3-0.6B --special --json "<|im_start|>user"
  tensafe tokenize --model ./Qwen3-0.6B --decode 9707,11,1879,0`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tok, err := loadTokenizer(modelDir)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if decode {
				ids, err := parseIDs("decode", args[0])
				if err != nil {
					return err
				}
				text, err := tok.Decode(ids, skipSpecial)
				if err != nil {
					return err
				}
				if asJSON {
					return printTokenJSON(out, map[string]any{"ids": ids, "text": text})
				}
				_, err = fmt.Fprintln(out, text)
				return err
			}
			text := args[0]
			if text == "-" {
				b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 64<<20))
				if err != nil {
					return fmt.Errorf("read standard input: %w", err)
				}
				text = string(b)
			}
			ids, err := tok.Encode(text, special)
			if err != nil {
				return err
			}
			if asJSON {
				return printTokenJSON(out, map[string]any{"text": text, "ids": ids})
			}
			parts := make([]string, len(ids))
			for i, id := range ids {
				parts[i] = strconv.Itoa(id)
			}
			_, err = fmt.Fprintln(out, strings.Join(parts, ","))
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&modelDir, "model", "", "Hugging Face model folder, or tensafe-tiny")
	f.BoolVar(&special, "special", false, "add the special tokens the tokenizer wraps a sequence in (such as BOS)")
	f.BoolVar(&decode, "decode", false, "decode comma-separated ids instead of encoding text")
	f.BoolVar(&skipSpecial, "skip-special", false, "with --decode, leave special tokens out")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	_ = cmd.MarkFlagRequired("model")
	return cmd
}

// printTokenJSON writes v as one line of JSON, leaving <, > and & as they
// are: special tokens are full of them.
func printTokenJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
