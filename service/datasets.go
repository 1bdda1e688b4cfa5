package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/keys"
	"github.com/tensafe/tensafe/loss"
	"github.com/tensafe/tensafe/model"
	"github.com/tensafe/tensafe/store"
)

// Datasets are what server-sampled training draws its batches from: the
// tenant registers its examples once, sealed under its KEK like a
// checkpoint, and every train_step of a client whose dp_config names the
// dataset takes each row independently with probability q (trainstep.go).
// The accountant's q is then a fact the server enforces, not a number the
// client declared.

// ArtifactDataset is the artifact kind of a registered dataset.
const ArtifactDataset = "dataset"

// Bounds on a dataset. Token ids are checked against a model's vocabulary
// and context when a client uses the dataset (it is not tied to a model).
const (
	MaxDatasetRows      = 1 << 20
	MaxDatasetTokens    = 1 << 24 // over all rows
	MaxDatasetRowTokens = 1 << 16
	maxDatasetTokenID   = math.MaxInt32
	// MaxDatasetTextBytes bounds one text, prompt or completion of a row.
	MaxDatasetTextBytes = 1 << 20
	// maxDatasetContent bounds the plaintext a load reads (the JSON of
	// MaxDatasetTokens tokens with labels and weights).
	maxDatasetContent = 512 << 20
)

// NotFoundError is ErrNotFound for an object a request field refers to
// (dp_config.dataset_id): a missing object, or one of another tenant.
type NotFoundError struct {
	Field string
	What  string
}

func (e *NotFoundError) Error() string {
	return "field " + e.Field + ": no such " + e.What
}

// Is makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

// datasetContent is the sealed plaintext of a dataset (api.DatasetFormat).
// Its JSON, as encoding/json writes this struct, is what the content hash
// covers.
type datasetContent struct {
	Format   string               `json:"format"`
	Examples []api.DatasetExample `json:"examples"`
}

// datasetMeta is the artifact record's (unencrypted) metadata: counts only.
type datasetMeta struct {
	Format       string `json:"format"`
	BaseModel    string `json:"base_model,omitempty"`
	Rows         int64  `json:"rows"`
	Tokens       int64  `json:"tokens"`
	MaxRowTokens int    `json:"max_row_tokens"`
}

// checkExamples validates the rows of a dataset that do not depend on a
// model, and returns the token count and longest row.
func checkExamples(ex []api.DatasetExample) (tokens int64, longest int, err error) {
	switch {
	case len(ex) == 0:
		return 0, 0, fieldErr("examples", "is empty")
	case len(ex) > MaxDatasetRows:
		return 0, 0, fieldErr("examples", "has %d rows, at most %d allowed", len(ex), MaxDatasetRows)
	}
	for i, e := range ex {
		n := len(e.InputIDs)
		switch {
		case e.Text != "" || e.Prompt != "" || e.Completion != "":
			return 0, 0, fieldErr(fmt.Sprintf("examples[%d].text", i), "a stored row holds tokens only")
		case n == 0:
			return 0, 0, fieldErr(fmt.Sprintf("examples[%d].input_ids", i), "is empty")
		case n > MaxDatasetRowTokens:
			return 0, 0, fieldErr(fmt.Sprintf("examples[%d].input_ids", i), "has %d tokens, at most %d allowed", n, MaxDatasetRowTokens)
		case e.Labels != nil && len(e.Labels) != n:
			return 0, 0, fieldErr(fmt.Sprintf("examples[%d].labels", i), "has length %d, input_ids has %d", len(e.Labels), n)
		case e.Weights != nil && len(e.Weights) != n:
			return 0, 0, fieldErr(fmt.Sprintf("examples[%d].weights", i), "has length %d, input_ids has %d", len(e.Weights), n)
		}
		for j, id := range e.InputIDs {
			if id < 0 || id > maxDatasetTokenID {
				return 0, 0, fieldErr(fmt.Sprintf("examples[%d].input_ids[%d]", i, j), "%d is not a token id", id)
			}
		}
		for j, id := range e.Labels {
			if id < math.MinInt32 || id > maxDatasetTokenID {
				return 0, 0, fieldErr(fmt.Sprintf("examples[%d].labels[%d]", i, j), "%d is not a token id or an ignore index", id)
			}
		}
		for j, w := range e.Weights {
			if !(w >= 0) || math.IsInf(w, 0) {
				return 0, 0, fieldErr(fmt.Sprintf("examples[%d].weights[%d]", i, j), "must be ≥ 0 and finite, got %v", w)
			}
		}
		tokens += int64(n)
		longest = max(longest, n)
		if tokens > MaxDatasetTokens {
			return 0, 0, fieldErr("examples", "hold more than %d tokens", MaxDatasetTokens)
		}
	}
	return tokens, longest, nil
}

// checkDatasetFor checks every row of a dataset against a model and a
// loss's ignore index: token ids inside the vocabulary, labels inside it or
// the ignore index, rows within the model's context. field names the
// request field that chose the dataset.
func checkDatasetFor(ex []api.DatasetExample, cfg model.Config, ignore int, field string) error {
	for i, e := range ex {
		if len(e.InputIDs) > cfg.MaxPositions {
			return fieldErr(field, "row %d has %d tokens, the model takes at most %d", i, len(e.InputIDs), cfg.MaxPositions)
		}
		for j, id := range e.InputIDs {
			if id >= cfg.VocabSize {
				return fieldErr(field, "row %d: input_ids[%d] = %d is outside the model's vocabulary [0, %d)", i, j, id, cfg.VocabSize)
			}
		}
		for j, id := range e.Labels {
			if id != ignore && (id < 0 || id >= cfg.VocabSize) {
				return fieldErr(field, "row %d: labels[%d] = %d is outside the model's vocabulary [0, %d) and is not the loss's ignore index %d", i, j, id, cfg.VocabSize, ignore)
			}
		}
	}
	return nil
}

// CreateDataset registers a dataset of tenant: its rows are validated,
// sealed under the tenant's KEK as an artifact of kind "dataset" with the
// SHA-256 of their canonical JSON (api.DatasetFormat) as content hash, and
// the creation is audited (counts and hash only).
func (s *Service) CreateDataset(ctx context.Context, tenant string, req api.CreateDatasetRequest) (api.Dataset, error) {
	s.mu.Lock()
	err := s.admitting()
	s.mu.Unlock()
	if err != nil {
		return api.Dataset{}, err
	}
	d, err := s.createDataset(ctx, tenant, req)
	rcd := auditRecordFor(ctx, tenant, "dataset.create", d.ID, err)
	if err != nil {
		if code, field := CodeOf(err); field != "" {
			rcd.Details["field"] = field
		} else if code == api.CodeNotFound {
			rcd.TenantID = "" // not a tenant of ours
		}
	} else {
		rcd.Details = map[string]string{"row_count": fmt.Sprint(d.Rows), "token_count": fmt.Sprint(d.Tokens), "content_hash": d.ContentHash}
		if d.BaseModel != "" {
			rcd.Details["base_model"] = d.BaseModel
		}
	}
	if keys.CheckTenantID(tenant) == nil {
		s.record(ctx, rcd)
	}
	return d, err
}

func (s *Service) createDataset(ctx context.Context, tenant string, req api.CreateDatasetRequest) (api.Dataset, error) {
	if err := checkName(req.Name); err != nil {
		return api.Dataset{}, err
	}
	rows, err := s.tokenizeRows(req)
	if err != nil {
		return api.Dataset{}, err
	}
	tokens, longest, err := checkExamples(rows)
	if err != nil {
		return api.Dataset{}, err
	}
	if err := keys.CheckTenantID(tenant); err != nil {
		return api.Dataset{}, fmt.Errorf("%w: tenant", ErrNotFound)
	}
	payload, err := json.Marshal(datasetContent{Format: api.DatasetFormat, Examples: rows})
	if err != nil {
		return api.Dataset{}, fmt.Errorf("service: dataset: %w", err)
	}
	base := ""
	if len(rows) > 0 && hasText(req.Examples) {
		base = req.BaseModel
	}
	meta, err := json.Marshal(datasetMeta{Format: api.DatasetFormat, BaseModel: base, Rows: int64(len(rows)), Tokens: tokens, MaxRowTokens: longest})
	if err != nil {
		return api.Dataset{}, fmt.Errorf("service: dataset: %w", err)
	}
	name := req.Name
	if name == "" {
		name = "dataset"
	}
	a, err := s.writeArtifact(ctx, store.Artifact{TenantID: tenant, Kind: ArtifactDataset, Name: name, Metadata: meta}, payload)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
			return api.Dataset{}, fmt.Errorf("%w: tenant", ErrNotFound)
		}
		return api.Dataset{}, err
	}
	return s.toDataset(a)
}

// dataset returns the artifact record of dataset id of tenant: a missing
// one, another tenant's, or an artifact of another kind is a
// *NotFoundError naming field.
func (s *Service) dataset(ctx context.Context, tenant, id, field string) (store.Artifact, error) {
	a, err := s.st.GetArtifact(ctx, tenant, id)
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrInvalid), err == nil && a.Kind != ArtifactDataset:
		return store.Artifact{}, &NotFoundError{Field: field, What: "dataset"}
	case err != nil:
		return store.Artifact{}, fmt.Errorf("service: get dataset: %w", err)
	}
	return a, nil
}

// readDataset opens, authenticates and parses a dataset's content.
func (s *Service) readDataset(ctx context.Context, a store.Artifact) ([]api.DatasetExample, error) {
	rc, err := s.openArtifact(ctx, a)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxDatasetContent+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxDatasetContent {
		return nil, fmt.Errorf("service: dataset %s: content exceeds %d bytes", a.ID, maxDatasetContent)
	}
	var c datasetContent
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("service: dataset %s: %w", a.ID, err)
	}
	if c.Format != api.DatasetFormat {
		return nil, fmt.Errorf("service: dataset %s: format %q, want %q", a.ID, c.Format, api.DatasetFormat)
	}
	if _, _, err := checkExamples(c.Examples); err != nil {
		return nil, fmt.Errorf("service: dataset %s: %w", a.ID, err)
	}
	return c.Examples, nil
}

func (s *Service) toDataset(a store.Artifact) (api.Dataset, error) {
	var m datasetMeta
	if err := json.Unmarshal(a.Metadata, &m); err != nil || m.Format != api.DatasetFormat {
		return api.Dataset{}, fmt.Errorf("service: dataset %s: bad metadata", a.ID)
	}
	return api.Dataset{ID: a.ID, Name: a.Name, Rows: m.Rows, Tokens: m.Tokens, BaseModel: m.BaseModel, ContentHash: a.ContentHash,
		Size: a.Size, KeyID: a.KeyID, CreatedAt: a.CreatedAt, ExpiresAt: s.expiry(a)}, nil
}

// GetDataset returns the metadata of dataset id of tenant (never its rows).
func (s *Service) GetDataset(ctx context.Context, tenant, id string) (api.Dataset, error) {
	a, err := s.dataset(ctx, tenant, id, "")
	if err != nil {
		return api.Dataset{}, plainNotFound(err)
	}
	return s.toDataset(a)
}

// DeleteDataset deletes dataset id of tenant: its sealed file and record.
// Clients that sample from it fail their next train_step (code
// failed_precondition); their spent budget and adapters stay.
func (s *Service) DeleteDataset(ctx context.Context, tenant, id string) error {
	a, err := s.dataset(ctx, tenant, id, "")
	if err != nil {
		return plainNotFound(err)
	}
	err = s.removeHEArtifact(ctx, a) // removes any artifact's file and record
	rcd := auditRecordFor(ctx, tenant, "dataset.delete", id, err)
	if err == nil {
		rcd.Details = map[string]string{"content_hash": a.ContentHash}
	}
	s.record(ctx, rcd)
	return err
}

// plainNotFound is err, or ErrNotFound without a field when err is a
// *NotFoundError (the object was named by the path, not a field).
func plainNotFound(err error) error {
	var nf *NotFoundError
	if errors.As(err, &nf) {
		return fmt.Errorf("%w: %s", ErrNotFound, nf.What)
	}
	return err
}

func hasText(ex []api.DatasetExample) bool {
	for _, e := range ex {
		if e.Text != "" || e.Prompt != "" || e.Completion != "" {
			return true
		}
	}
	return false
}

// tokenizeRows returns the rows of req as tokens: token rows as they are,
// text rows encoded with the tokenizer of req.BaseModel as untrusted text
// (special tokens written in them stay text), the model's BOS first and its
// first EOS last. A prompt's positions get label loss.IgnoreIndex, so that
// only the completion (and EOS) is trained on.
func (s *Service) tokenizeRows(req api.CreateDatasetRequest) ([]api.DatasetExample, error) {
	if !hasText(req.Examples) {
		if req.BaseModel != "" {
			return nil, fieldErr("base_model", "is only for rows given as text, prompt or completion")
		}
		return req.Examples, nil
	}
	if req.BaseModel == "" {
		return nil, fieldErr("base_model", "is required to tokenize rows given as text, prompt or completion (available: %v)", s.models.names())
	}
	tok, err := s.tokenizerFor(req.BaseModel)
	if fe := (*FieldError)(nil); errors.As(err, &fe) {
		return nil, fieldErr("base_model", "%s", fe.Reason)
	}
	if err != nil {
		return nil, err
	}
	var head, tail []int
	if bos, ok := tok.BOS(); ok {
		head = []int{bos}
	}
	if eos := tok.EOS(); len(eos) > 0 {
		tail = eos[:1]
	}
	out := make([]api.DatasetExample, len(req.Examples))
	for i, e := range req.Examples {
		field := func(name string) string { return fmt.Sprintf("examples[%d].%s", i, name) }
		text, pc := e.Text != "", e.Prompt != "" || e.Completion != ""
		switch {
		case !text && !pc:
			out[i] = e
			continue
		case e.InputIDs != nil || e.Labels != nil || e.Weights != nil:
			return nil, fieldErr(field("input_ids"), "give tokens or text, not both")
		case text && pc:
			return nil, fieldErr(field("text"), "give text, or prompt and completion, not both")
		case pc && e.Completion == "":
			return nil, fieldErr(field("completion"), "is required with prompt")
		}
		enc := func(name, t string) ([]int, error) {
			if len(t) > MaxDatasetTextBytes {
				return nil, fieldErr(field(name), "%d bytes, at most %d allowed", len(t), MaxDatasetTextBytes)
			}
			if t == "" {
				return nil, nil
			}
			ids, err := encodeUntrusted(tok, t)
			if err != nil {
				return nil, fieldErr(field(name), "%v", err)
			}
			return ids, nil
		}
		if text {
			ids, err := enc("text", e.Text)
			if err != nil {
				return nil, err
			}
			out[i].InputIDs = slices.Concat(head, ids, tail)
			continue
		}
		p, err := enc("prompt", e.Prompt)
		if err != nil {
			return nil, err
		}
		c, err := enc("completion", e.Completion)
		if err != nil {
			return nil, err
		}
		p, c = slices.Concat(head, p), slices.Concat(c, tail)
		labels := make([]int, len(p), len(p)+len(c))
		for j := range labels {
			labels[j] = loss.IgnoreIndex
		}
		out[i].InputIDs, out[i].Labels = slices.Concat(p, c), append(labels, c...)
	}
	return out, nil
}
