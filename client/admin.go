package client

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Tenant is a tenant of the server.
type Tenant struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// API key roles.
const (
	RoleAdmin   = "admin"
	RoleTrainer = "trainer"
	RoleViewer  = "viewer"
)

// APIKey describes an API key; its token is never shown again.
type APIKey struct {
	ID        string     `json:"id"`
	TenantID  string     `json:"tenant_id"`
	Role      string     `json:"role"`
	Prefix    string     `json:"prefix"` // lookup prefix, not secret
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// NewAPIKey is a freshly created API key with its token, which the server
// shows this once and keeps only as a hash.
type NewAPIKey struct {
	APIKey
	Token string `json:"token"`
}

// CreateTenant creates a tenant (POST /api/v1/tenants; an operator admin key).
// The server deduplicates tenant creations by Idempotency-Key, so a 5xx or
// a lost answer is retried and returns the same tenant; the same key (see
// WithIdempotencyKey) with another name is a conflict.
func (c *ServiceClient) CreateTenant(ctx context.Context, name string) (*Tenant, error) {
	var out Tenant
	body := struct {
		Name string `json:"name"`
	}{name}
	if err := c.doR(ctx, repeatSafe, http.MethodPost, "/api/v1/tenants", nil, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CreateAPIKey creates an API key of tenantID with role (RoleAdmin,
// RoleTrainer or RoleViewer). Keep the returned Token: it is not shown again.
// The server cannot deduplicate key creations (it keeps only the token's
// hash, so a replay could not return the token): only a 429 is retried.
func (c *ServiceClient) CreateAPIKey(ctx context.Context, tenantID, role string) (*NewAPIKey, error) {
	var out NewAPIKey
	body := struct {
		Role string `json:"role"`
	}{role}
	if err := c.doR(ctx, repeatRefusedOnly, http.MethodPost, "/api/v1/tenants/"+url.PathEscape(tenantID)+"/api_keys", nil, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RevokeAPIKey revokes an API key; requests with it answer 401 from then on.
func (c *ServiceClient) RevokeAPIKey(ctx context.Context, keyID string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/api_keys/"+url.PathEscape(keyID), nil, nil, nil)
}

// Ready reports whether the server is ready to take work (GET /readyz): nil,
// or the *APIError of its 503 (shutting down, audit log failing). It does
// not retry: a caller waiting for a server to come up polls it.
func (c *ServiceClient) Ready(ctx context.Context) error {
	return c.doR(ctx, repeatNever, http.MethodGet, "/readyz", nil, nil, nil)
}
