package client

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/tensafe/tensafe/api"
)

// TrainingClient is one DP LoRA training session on the server.
type TrainingClient struct {
	c *ServiceClient
	// ID is the training client's id ("tc_…").
	ID string
	// Info is the client as the server last described it.
	Info api.TrainingClient
}

// CreateTrainingClient creates a training client (POST /api/v1/training_clients).
// The server deduplicates creations by Idempotency-Key (one per call, or
// the key of WithIdempotencyKey), so a 5xx or a lost answer is retried: a
// retry of a creation that did happen returns the same client. Reusing a
// key with another configuration is a conflict (IsConflict).
func (c *ServiceClient) CreateTrainingClient(ctx context.Context, cfg api.TrainingConfig) (*TrainingClient, error) {
	var out api.TrainingClient
	if err := c.doR(ctx, repeatSafe, http.MethodPost, "/api/v1/training_clients", nil, cfg, &out); err != nil {
		return nil, err
	}
	return &TrainingClient{c: c, ID: out.ID, Info: out}, nil
}

// TrainingClient fetches an existing training client by id.
func (c *ServiceClient) TrainingClient(ctx context.Context, id string) (*TrainingClient, error) {
	tc := &TrainingClient{c: c, ID: id}
	if _, err := tc.Refresh(ctx); err != nil {
		return nil, err
	}
	return tc, nil
}

func (tc *TrainingClient) path(op string) string {
	p := "/api/v1/training_clients/" + url.PathEscape(tc.ID)
	if op != "" {
		p += "/" + op
	}
	return p
}

// Refresh fetches the client's current description into tc.Info.
func (tc *TrainingClient) Refresh(ctx context.Context) (*api.TrainingClient, error) {
	var out api.TrainingClient
	if err := tc.c.do(ctx, http.MethodGet, tc.path(""), nil, nil, &out); err != nil {
		return nil, err
	}
	tc.Info = out
	return &out, nil
}

func submit[T any](ctx context.Context, tc *TrainingClient, op string, body any) (*Future[T], error) {
	var f api.Future
	if err := tc.c.do(ctx, http.MethodPost, tc.path(op), nil, body, &f); err != nil {
		return nil, err
	}
	return newFuture[T](tc.c, f)
}

// ForwardBackward accumulates the clipped per-example gradients of batch.
// loss overrides the client's loss when not nil.
func (tc *TrainingClient) ForwardBackward(ctx context.Context, batch api.Batch, loss *api.LossSpec) (*Future[api.ForwardBackwardResult], error) {
	return submit[api.ForwardBackwardResult](ctx, tc, "forward_backward", api.ForwardBackwardRequest{Batch: batch, Loss: loss})
}

// Forward computes log-probabilities and losses of batch without gradients.
func (tc *TrainingClient) Forward(ctx context.Context, batch api.Batch, loss *api.LossSpec) (*Future[api.ForwardResult], error) {
	return submit[api.ForwardResult](ctx, tc, "forward", api.ForwardRequest{Batch: batch, Loss: loss})
}

// OptimStep adds DP noise to the accumulated gradients and applies AdamW. A
// step that would exceed the privacy budget is refused: IsBudgetExceeded
// reports true for the submission's error or the future's.
func (tc *TrainingClient) OptimStep(ctx context.Context) (*Future[api.OptimStepResult], error) {
	return submit[api.OptimStepResult](ctx, tc, "optim_step", api.OptimStepRequest{})
}

// Sample generates from the base model with the client's adapter.
func (tc *TrainingClient) Sample(ctx context.Context, req api.SampleRequest) (*Future[api.SampleResult], error) {
	return submit[api.SampleResult](ctx, tc, "sample", req)
}

// SaveState writes an encrypted checkpoint artifact of the client.
func (tc *TrainingClient) SaveState(ctx context.Context, name string) (*Future[api.SaveStateResult], error) {
	return submit[api.SaveStateResult](ctx, tc, "save_state", api.SaveStateRequest{Name: name})
}

// SaveStateWith writes an encrypted checkpoint with the full request's
// options: Metadata (a JSON object of at most 64 KiB kept inside the
// encrypted checkpoint and returned by LoadState) and IncludeOptimizer.
func (tc *TrainingClient) SaveStateWith(ctx context.Context, req api.SaveStateRequest) (*Future[api.SaveStateResult], error) {
	return submit[api.SaveStateResult](ctx, tc, "save_state", req)
}

// LoadState restores a checkpoint artifact (adapter, optimizer and
// accountant state) into the client.
func (tc *TrainingClient) LoadState(ctx context.Context, artifactID string) (*Future[api.LoadStateResult], error) {
	return submit[api.LoadStateResult](ctx, tc, "load_state", api.LoadStateRequest{ArtifactID: artifactID})
}

// DPMetrics returns what the client's privacy budget has spent and how.
func (tc *TrainingClient) DPMetrics(ctx context.Context) (*api.DPMetrics, error) {
	var out api.DPMetrics
	if err := tc.c.do(ctx, http.MethodGet, tc.path("dp_metrics"), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Delete deletes the training client.
func (tc *TrainingClient) Delete(ctx context.Context) error {
	return tc.c.do(ctx, http.MethodDelete, tc.path(""), nil, nil, nil)
}

// Artifacts lists the tenant's artifacts.
func (c *ServiceClient) Artifacts(ctx context.Context) ([]api.Artifact, error) {
	var out []api.Artifact
	if err := c.do(ctx, http.MethodGet, "/api/v1/artifacts", nil, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Artifact describes one artifact.
func (c *ServiceClient) Artifact(ctx context.Context, id string) (*api.Artifact, error) {
	var out api.Artifact
	if err := c.do(ctx, http.MethodGet, "/api/v1/artifacts/"+url.PathEscape(id), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DownloadArtifact streams an artifact's decrypted bytes. The caller closes
// the reader. Retries happen only before the body starts.
func (c *ServiceClient) DownloadArtifact(ctx context.Context, id string) (io.ReadCloser, error) {
	resp, err := c.send(ctx, repeatSafe, http.MethodGet, "/api/v1/artifacts/"+url.PathEscape(id)+"/download", nil, nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// AuditEntry is one entry of the tenant's audit log, as package audit
// writes it: who did what to which resource, and the outcome; metadata only.
type AuditEntry struct {
	V         int               `json:"v"`
	Seq       uint64            `json:"seq"`
	Time      string            `json:"time"`
	TenantID  string            `json:"tenant_id"`
	Actor     string            `json:"actor"`
	Operation string            `json:"operation"`
	Resource  string            `json:"resource"`
	Outcome   string            `json:"outcome"`
	Details   map[string]string `json:"details"`
	PrevHash  string            `json:"prev_hash"`
	EntryHash string            `json:"entry_hash"`
}

// AuditPage is one page of the audit log.
type AuditPage struct {
	Entries []AuditEntry `json:"entries"`
	// NextAfter is the seq to pass as after for the next page (the last seq
	// the server scanned, which may be past the last entry shown when other
	// tenants' entries were skipped).
	NextAfter int64 `json:"next_after"`
}

// AuditLogs returns up to limit of the tenant's audit entries with sequence
// numbers after after (GET /api/v1/audit?after=&limit=); after < 0 starts at
// the first entry, limit ≤ 0 lets the server choose. Page on with
// page.NextAfter until a page comes back empty.
func (c *ServiceClient) AuditLogs(ctx context.Context, after int64, limit int) (*AuditPage, error) {
	q := url.Values{}
	if after >= 0 {
		q.Set("after", strconv.FormatInt(after, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var page auditPage
	if err := c.do(ctx, http.MethodGet, "/api/v1/audit", q, nil, &page); err != nil {
		return nil, err
	}
	if page.NextAfter < after {
		page.NextAfter = after
	}
	return (*AuditPage)(&page), nil
}

// AuditVerification is the answer of GET /api/v1/audit/verify: whether the
// whole audit log's hash chain and signed checkpoints verify.
type AuditVerification struct {
	Verified          bool   `json:"verified"`
	Origin            string `json:"origin,omitempty"`
	Size              uint64 `json:"size"`
	Root              string `json:"root,omitempty"` // hex of the Merkle root
	Checkpoints       int    `json:"checkpoints"`
	SignaturesChecked bool   `json:"signatures_checked"`
	Error             string `json:"error,omitempty"`
}

// VerifyAudit asks the server to verify its audit log. A log that does not
// verify is an answer (Verified false, Error set), not an error.
func (c *ServiceClient) VerifyAudit(ctx context.Context) (*AuditVerification, error) {
	var out AuditVerification
	if err := c.do(ctx, http.MethodGet, "/api/v1/audit/verify", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
