package client_test

import (
	"errors"
	"math"
	"testing"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/client"
)

func datasetRows(n int) []api.DatasetExample {
	out := make([]api.DatasetExample, n)
	for i := range out {
		out[i] = api.DatasetExample{InputIDs: []int{256, 'r', 'o', 'w', '0' + i%10}}
	}
	return out
}

// TestServerSampledTraining drives datasets and train_step through the SDK
// against a real server.
func TestServerSampledTraining(t *testing.T) {
	e := newEnv(t)
	c, other := e.client(t, e.trainerA), e.client(t, e.trainerB)
	const rows, batch, steps = 20, 5, 12
	ds, err := c.CreateDataset(e.ctx, api.CreateDatasetRequest{Name: "rows", Examples: datasetRows(rows)})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.Dataset(e.ctx, ds.ID); err != nil || got.Rows != rows || got.ContentHash != ds.ContentHash {
		t.Fatalf("dataset %+v, %v", got, err)
	}
	if _, err := other.Dataset(e.ctx, ds.ID); !client.IsNotFound(err) {
		t.Fatalf("another tenant reads the dataset: %v", err)
	}
	cfg := tinyConfig(1, 50)
	cfg.DP.DatasetSize, cfg.DP.ExpectedBatchSize = 0, batch
	cfg.DP.Sampling, cfg.DP.DatasetID = api.SamplingServer, ds.ID
	// Another tenant's dataset is not found, naming the field.
	_, err = other.CreateTrainingClient(e.ctx, cfg)
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Code != api.CodeNotFound || ae.Field != "dp_config.dataset_id" {
		t.Fatalf("another tenant's dataset: %v", err)
	}
	declared := cfg
	dp := *cfg.DP
	dp.DatasetSize = rows
	declared.DP = &dp
	if _, err := c.CreateTrainingClient(e.ctx, declared); !errors.As(err, &ae) || ae.Code != api.CodeInvalidArgument || ae.Field != "dp_config.dataset_size" {
		t.Fatalf("dataset_size with server sampling: %v", err)
	}
	tc, err := c.CreateTrainingClient(e.ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tc.ForwardBackward(e.ctx, textBatch("ab"), nil); !client.IsFailedPrecondition(err) {
		t.Fatalf("forward_backward on a server-sampled client: %v", err)
	}
	total := 0
	for i := range steps {
		f, err := tc.TrainStep(e.ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		r, err := f.Result(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r.Step != int64(i+1) || r.DatasetRows != rows || r.SamplingRate != float64(batch)/rows {
			t.Fatalf("train_step %d: %+v", i, r)
		}
		total += r.Examples
	}
	// Bernstein: P(|S − μ| ≥ t) ≤ 2exp(−t²/(2(σ²+t/3))) < 1e-6 for this t.
	m, q := float64(steps*rows), float64(batch)/rows
	l := math.Log(2e6)
	bound := (2*l/3 + math.Sqrt(4*l*l/9+8*l*m*q*(1-q))) / 2
	if math.Abs(float64(total)-m*q) >= bound {
		t.Errorf("%d steps drew %d rows, expected %.0f ± %.1f (failure probability < 1e-6)", steps, total, m*q, bound)
	}
	dm, err := tc.DPMetrics(e.ctx)
	if err != nil || dm.SamplingSource != "server-poisson" || dm.Steps != steps {
		t.Fatalf("dp_metrics %+v, %v", dm, err)
	}
	if err := c.DeleteDataset(e.ctx, ds.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.TrainStep(e.ctx, nil); !client.IsFailedPrecondition(err) {
		t.Fatalf("train_step after the dataset was deleted: %v", err)
	}
	if _, err := c.CreateDataset(e.ctx, api.CreateDatasetRequest{Examples: []api.DatasetExample{{InputIDs: []int{1, 2}, Labels: []int{1}}}}); !errors.As(err, &ae) || ae.Field != "examples[0].labels" {
		t.Fatalf("bad labels: %v", err)
	}
}
