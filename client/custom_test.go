package client_test

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/client"
)

// TestSDKForwardBackwardCustom computes token_ce on the client from the
// forward log-probabilities and checks, through a real server, that the
// custom loss's per-example gradient norms and losses equal the built-in
// token_ce's at the same weights.
func TestSDKForwardBackwardCustom(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx
	c := e.client(t, e.trainerA)
	tc, err := c.CreateTrainingClient(ctx, tinyConfig(1, 50))
	if err != nil {
		t.Fatal(err)
	}
	// One step so that the adapter's B matrices are not zero.
	step(t, tc, &api.DPMetrics{})

	batch := textBatch("client side", "losses")
	f, err := tc.ForwardBackward(ctx, batch, &api.LossSpec{Type: "token_ce"})
	builtIn := result(t, f, err)

	var seen [][]float64
	f, err = tc.ForwardBackwardCustom(ctx, batch, func(logprobs [][]float64) ([]float64, [][]float64, error) {
		seen = logprobs
		losses := make([]float64, len(logprobs))
		grads := make([][]float64, len(logprobs))
		for i, row := range logprobs {
			n := float64(len(row) - 1) // every token after the first is a target
			grads[i] = make([]float64, len(row))
			for t := 1; t < len(row); t++ {
				losses[i] -= row[t] / n
				grads[i][t] = -1 / n
			}
		}
		return losses, grads, nil
	})
	custom := result(t, f, err)
	for i, row := range seen {
		if len(row) != len(batch.InputIDs[i]) || row[0] != 0 {
			t.Fatalf("logprobs[%d] = %v not aligned with input_ids", i, row)
		}
	}
	if len(custom.PerExampleNorms) != 2 || custom.PendingExamples != 4 {
		t.Fatalf("custom result %+v", custom)
	}
	for i := range builtIn.PerExampleNorms {
		bn, cn := builtIn.PerExampleNorms[i], custom.PerExampleNorms[i]
		if !(bn > 0) || math.Abs(bn-cn) > 1e-5*bn {
			t.Errorf("example %d: gradient norm built-in %v, custom %v", i, bn, cn)
		}
		if math.Abs(builtIn.PerExampleLoss[i]-custom.PerExampleLoss[i]) > 1e-5 {
			t.Errorf("example %d: loss built-in %v, custom %v", i, builtIn.PerExampleLoss[i], custom.PerExampleLoss[i])
		}
	}

	// A failing loss function sends nothing.
	boom := errors.New("boom")
	if _, err := tc.ForwardBackwardCustom(ctx, batch, func([][]float64) ([]float64, [][]float64, error) {
		return nil, nil, boom
	}); !errors.Is(err, boom) {
		t.Fatalf("loss function error: %v", err)
	}
	// Misaligned gradients are refused, naming the field.
	_, err = tc.ForwardBackwardCustom(ctx, batch, func(lp [][]float64) ([]float64, [][]float64, error) {
		return nil, [][]float64{{1}, {1}}, nil
	})
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Field != "logprob_grads[0]" {
		t.Fatalf("misaligned gradients: %v", err)
	}
	f2, err := tc.OptimStep(context.Background())
	if r := result(t, f2, err); r.Examples != 4 {
		t.Fatalf("optim_step after custom: %+v", r)
	}
}
