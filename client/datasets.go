package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/tensafe/tensafe/api"
)

// Server-sampled training (docs/API.md, "Server-sampled training"): the
// tenant registers a dataset once, creates a training client with
// dp_config.sampling "server" and dp_config.dataset_id, and trains with
// TrainStep; the server draws every batch by Poisson sampling, so the
// accountant's sampling rate is enforced and the DP certificate says
// "server-poisson".

// CreateDataset registers a dataset of the tenant, sealed on the server
// under the tenant's key. It is retried only when the server refused it
// before doing anything (429): a dataset is not deduplicated.
func (c *ServiceClient) CreateDataset(ctx context.Context, req api.CreateDatasetRequest) (*api.Dataset, error) {
	var out api.Dataset
	if err := c.doR(ctx, repeatRefusedOnly, http.MethodPost, "/api/v1/datasets", nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Dataset returns a dataset's metadata (rows, content hash), never its
// rows.
func (c *ServiceClient) Dataset(ctx context.Context, id string) (*api.Dataset, error) {
	var out api.Dataset
	if err := c.do(ctx, http.MethodGet, "/api/v1/datasets/"+url.PathEscape(id), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteDataset deletes a dataset; the training clients that sample from
// it fail their next TrainStep.
func (c *ServiceClient) DeleteDataset(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/datasets/"+url.PathEscape(id), nil, nil, nil)
}

// TrainStep runs one server-sampled step: the server draws a Poisson batch
// from the client's dataset, runs forward_backward with the client's loss
// (or loss, when not nil) and optim_step. Only for clients created with
// dp_config.sampling "server" (IsFailedPrecondition otherwise).
func (tc *TrainingClient) TrainStep(ctx context.Context, loss *api.LossSpec) (*Future[api.TrainStepResult], error) {
	return submit[api.TrainStepResult](ctx, tc, "train_step", api.TrainStepRequest{Loss: loss})
}
