package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/tensafe/tensafe/api"
)

// maxCertificateBytes bounds a DP certificate the SDK reads (the TSSP cap).
const maxCertificateBytes = 4 << 20

// DPCertificate returns the DP certificate of the training client as it
// stands: the canonical JSON of docs/DP_CERTIFICATE.md, exactly as the
// server made it (GET .../dp_certificate). It fails (failed_precondition)
// while operations are queued or running on the client, and before its
// first optim_step.
func (tc *TrainingClient) DPCertificate(ctx context.Context) (json.RawMessage, error) {
	resp, err := tc.c.send(ctx, repeatSafe, http.MethodGet, tc.path("dp_certificate"), nil, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxCertificateBytes+1))
	if err != nil {
		return nil, fmt.Errorf("tensafe: dp_certificate: read response: %w", err)
	}
	if len(b) > maxCertificateBytes || !json.Valid(b) || !bytes.HasPrefix(b, []byte("{")) {
		return nil, fmt.Errorf("tensafe: dp_certificate: %w", ErrMalformedResponse)
	}
	return json.RawMessage(b), nil
}

// PackageArtifact packages checkpoint artifactID as a TenSafe Secure Package
// (POST /api/v1/artifacts/{id}/package): the adapter encrypted to
// req.Recipients, the DP certificate and evidence, signed by the server's
// package signing key. The package is a new artifact; DownloadArtifact
// fetches it, and the caller should verify it against the pinned Signer
// before trusting it. The server does not deduplicate packaging, so only
// a 429 is retried.
func (c *ServiceClient) PackageArtifact(ctx context.Context, artifactID string, req api.PackageRequest) (*api.PackageResult, error) {
	var out api.PackageResult
	if err := c.doR(ctx, repeatRefusedOnly, http.MethodPost, "/api/v1/artifacts/"+url.PathEscape(artifactID)+"/package", nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Signer returns the server's package signing public key (GET
// /api/v1/signer). Pin it out of band when you can: a key fetched over the
// same channel as the package proves only that both came from that server.
func (c *ServiceClient) Signer(ctx context.Context) (*api.Signer, error) {
	var out api.Signer
	if err := c.do(ctx, http.MethodGet, "/api/v1/signer", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
