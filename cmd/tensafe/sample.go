package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/tensafe/tensafe/engine"
	"github.com/tensafe/tensafe/model"
)

func newSampleCmd() *cobra.Command {
	var (
		modelDir, adapterDir, prompt string
		maxTokens, topK, n           int
		temperature, topP            float64
		seed                         uint64
		asJSON                       bool
		packagePath, identityFile    string
		trustedFiles                 []string
	)
	cmd := &cobra.Command{
		Use:   "sample --model DIR --prompt TEXT [--adapter DIR | --package FILE --identity KEY --trusted-key KEY]",
		Short: "Generate text from a base model, optionally with a PEFT LoRA adapter",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if prompt == "" {
				return fmt.Errorf("--prompt is required")
			}
			if packagePath != "" && adapterDir != "" {
				return usageError("--package and --adapter: give one, not both")
			}
			m, err := loadModel(modelDir)
			if err != nil {
				return err
			}
			tok, err := loadTokenizer(modelDir)
			if err != nil {
				return err
			}
			cfg := engine.Config{LoRA: model.LoRAConfig{Rank: 1, Alpha: 1}, Optimizer: engine.DefaultOptimizer(), Seed: seed}
			var e *engine.Engine
			if packagePath != "" {
				// Edge loader: verify and decrypt a TSSP package in memory.
				lora, err := loadPackageAdapter(cmd, packagePath, identityFile, trustedFiles, modelDir, m)
				if err != nil {
					return err
				}
				if e, err = engine.NewWithAdapter(m, cfg, lora); err != nil {
					return err
				}
			} else if adapterDir != "" {
				lora, err := model.LoadPEFT(adapterDir, m.Config)
				if err != nil {
					return err
				}
				e, err = engine.NewWithAdapter(m, cfg, lora)
				if err != nil {
					return err
				}
			} else {
				// A fresh adapter has B = 0: exactly the base model.
				if e, err = engine.New(m, cfg); err != nil {
					return err
				}
			}
			ids, err := tok.Encode(prompt, true)
			if err != nil {
				return err
			}
			seqs, err := e.Sample(cmd.Context(), engine.SampleRequest{
				Prompt: ids, MaxTokens: maxTokens, Temperature: temperature, TopP: topP, TopK: topK, N: n, Seed: seed,
			}, tok)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]any{"prompt_tokens": ids, "sequences": seqs})
			}
			for i, s := range seqs {
				if n > 1 {
					fmt.Fprintf(cmd.OutOrStdout(), "--- sample %d (%s)\n", i+1, s.FinishReason)
				}
				fmt.Fprintln(cmd.OutOrStdout(), prompt+s.Text)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&modelDir, "model", "", "Hugging Face model folder, or tensafe-tiny")
	f.StringVar(&adapterDir, "adapter", "", "PEFT LoRA adapter folder")
	f.StringVar(&packagePath, "package", "", "TSSP package (.tssp) holding the adapter; needs --identity and --trusted-key")
	f.StringVar(&identityFile, "identity", "", "recipient secret key file that opens --package")
	f.StringArrayVar(&trustedFiles, "trusted-key", nil, "trusted signer public key file for --package (repeatable)")
	f.StringVar(&prompt, "prompt", "", "prompt text")
	f.IntVar(&maxTokens, "max-tokens", 64, "tokens to generate")
	f.Float64Var(&temperature, "temperature", 0, "sampling temperature (0: greedy)")
	f.Float64Var(&topP, "top-p", 1, "nucleus sampling threshold")
	f.IntVar(&topK, "top-k", 0, "sample among the k most likely tokens (0: all)")
	f.IntVar(&n, "n", 1, "number of samples")
	f.Uint64Var(&seed, "seed", 0, "sampling seed")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
