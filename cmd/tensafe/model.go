package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/tensafe/tensafe/model"
	"github.com/tensafe/tensafe/tokenizer"
)

func newModelCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "model",
		Short: "Inspect base models and check that a checkpoint loads right",
	}
	cmd.AddCommand(newModelInspectCmd(), newModelLogitsCmd())
	return cmd
}

// loadModel resolves "tensafe-tiny" or a Hugging Face folder.
func loadModel(nameOrDir string) (*model.Model, error) {
	if nameOrDir == "" {
		return nil, fmt.Errorf("--model is required (a Hugging Face folder or %q)", model.TinyName)
	}
	return model.Resolve(nameOrDir)
}

// loadTokenizer returns the tokenizer belonging to a model.
func loadTokenizer(nameOrDir string) (tokenizer.Tokenizer, error) {
	if nameOrDir == model.TinyName {
		return tokenizer.NewByte(), nil
	}
	return tokenizer.LoadDir(nameOrDir)
}

func newModelInspectCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect MODEL",
		Short: "Print a model's architecture, parameter count and dtype",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := loadModel(args[0])
			if err != nil {
				return err
			}
			c := m.Config
			info := map[string]any{
				"name": m.Name, "architecture": c.ArchitectureName, "model_type": c.ModelType,
				"parameters": c.Parameters(), "dtype_on_disk": c.TorchDType, "compute_dtype": "float32",
				"vocab_size": c.VocabSize, "hidden_size": c.Hidden, "intermediate_size": c.Intermediate,
				"layers": c.Layers, "attention_heads": c.Heads, "kv_heads": c.KVHeads, "head_dim": c.HeadDim,
				"tied_embeddings": c.TieEmbeddings, "attention_bias": c.AttentionBias,
				"rope_theta": c.Rope.Theta, "rope_type": c.Rope.Type, "max_positions": c.MaxPositions,
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(info)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 2, 2, ' ', 0)
			for _, k := range []string{"name", "architecture", "model_type", "parameters", "dtype_on_disk", "compute_dtype",
				"vocab_size", "hidden_size", "intermediate_size", "layers", "attention_heads", "kv_heads", "head_dim",
				"tied_embeddings", "attention_bias", "rope_theta", "rope_type", "max_positions"} {
				fmt.Fprintf(w, "%s\t%v\n", k, info[k])
			}
			return w.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// parseIDs parses "1,2,3".
func parseIDs(flag, s string) ([]int, error) {
	var ids []int
	for i, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return nil, fmt.Errorf("--%s: element %d is empty", flag, i)
		}
		v, err := strconv.Atoi(part)
		if err != nil {
			return nil, fmt.Errorf("--%s: element %d (%q) is not an integer", flag, i, part)
		}
		ids = append(ids, v)
	}
	return ids, nil
}

func newModelLogitsCmd() *cobra.Command {
	var modelDir, idsFlag string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "logits --model DIR --input-ids 1,2,3 [--json]",
		Short: "Print the base model's logits for a sequence of token ids",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if idsFlag == "" {
				return fmt.Errorf("--input-ids is required")
			}
			ids, err := parseIDs("input-ids", idsFlag)
			if err != nil {
				return err
			}
			m, err := loadModel(modelDir)
			if err != nil {
				return err
			}
			logits, _, err := m.ComputeLogits(ids)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]any{"input_ids": ids, "logits": logits})
			}
			for i, row := range logits {
				best := 0
				for j, v := range row {
					if v > row[best] {
						best = j
					}
				}
				fmt.Fprintf(cmd.OutOrStdout(), "position %d: input %d, argmax %d (logit %.4f)\n", i, ids[i], best, row[best])
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&modelDir, "model", "", "Hugging Face model folder, or tensafe-tiny")
	cmd.Flags().StringVar(&idsFlag, "input-ids", "", "comma-separated token ids")
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"input_ids": [...], "logits": [[...], ...]}`)
	return cmd
}
