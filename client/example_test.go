package client_test

import (
	"context"
	"fmt"
	"log"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/client"
)

// A DP fine-tuning loop: submit, wait, stop when the budget is spent.
func Example() {
	ctx := context.Background()
	c, err := client.New("http://127.0.0.1:8080", "tsk_…")
	if err != nil {
		log.Fatal(err)
	}
	lr := 1e-3
	tc, err := c.CreateTrainingClient(ctx, api.TrainingConfig{
		BaseModel: "tensafe-tiny",
		LoRA:      api.LoRAConfig{Rank: 8, Alpha: 16},
		DP: &api.DPConfig{NoiseMultiplier: 1.0, MaxGradNorm: 1.0, TargetEpsilon: 8, TargetDelta: 1e-5,
			DatasetSize: 10000, ExpectedBatchSize: 16},
		Optimizer: api.OptimizerConfig{LearningRate: &lr},
	})
	if err != nil {
		log.Fatal(err)
	}
	batch := api.Batch{InputIDs: [][]int{{256, 104, 105}}, Labels: [][]int{{256, 104, 105}}}
	for {
		fb, err := tc.ForwardBackward(ctx, batch, nil)
		if err != nil {
			log.Fatal(err)
		}
		if _, err := fb.Result(ctx); err != nil {
			log.Fatal(err)
		}
		step, err := tc.OptimStep(ctx)
		if err == nil {
			_, err = step.Result(ctx)
		}
		if client.IsBudgetExceeded(err) {
			break // the next step would exceed ε = 8; nothing changed
		}
		if err != nil {
			log.Fatal(err)
		}
	}
	m, err := tc.DPMetrics(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("ε = %.2f at δ = %g after %d steps (%s)\n", m.EpsilonSpent, m.Delta, m.Steps, m.Accountant)
	saved, err := tc.SaveState(ctx, "final")
	if err != nil {
		log.Fatal(err)
	}
	art, err := saved.Result(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("encrypted checkpoint:", art.ArtifactID)
}
