package client

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// RetryPolicy says how often and how patiently requests are retried.
type RetryPolicy struct {
	// MaxAttempts is the total number of tries of one request (1 means no
	// retry).
	MaxAttempts int
	// BaseDelay is the backoff cap of the first retry; it doubles each retry
	// up to MaxDelay. Each wait is drawn uniformly from [0, cap] ("full
	// jitter"), unless the server's Retry-After asks for longer.
	BaseDelay time.Duration
	MaxDelay  time.Duration
}

// DefaultRetryPolicy is used unless WithRetryPolicy says otherwise: 5
// tries, waits capped at 200 ms doubling to 10 s.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{MaxAttempts: 5, BaseDelay: 200 * time.Millisecond, MaxDelay: 10 * time.Second}
}

// backoff is the jittered wait before retry number n (1-based), at least
// retryAfter.
func (p RetryPolicy) backoff(n int, retryAfter time.Duration, rnd func(int64) int64) time.Duration {
	c := p.BaseDelay
	for i := 1; i < n && c < p.MaxDelay; i++ {
		c *= 2
	}
	if c > p.MaxDelay {
		c = p.MaxDelay
	}
	var d time.Duration
	if c > 0 {
		d = time.Duration(rnd(int64(c) + 1))
	}
	if retryAfter > d {
		d = retryAfter
	}
	return d
}

// ServiceClient talks to one TenSafe server as one tenant's API key. It is
// safe for concurrent use.
type ServiceClient struct {
	// BaseURL is the server's root, e.g. "http://127.0.0.1:8080".
	BaseURL string
	// APIKey is sent as "Authorization: Bearer <key>". It never appears in
	// errors.
	APIKey string
	// HTTPClient sends the requests; nil means http.DefaultClient.
	HTTPClient *http.Client

	retry     RetryPolicy
	userAgent string
	pollWait  time.Duration
	// sleep waits d or until ctx is done; tests replace it to observe
	// backoff without waiting.
	sleep func(ctx context.Context, d time.Duration) error
	rnd   func(int64) int64
}

// Option configures a ServiceClient.
type Option func(*ServiceClient)

// WithHTTPClient sets the *http.Client requests go through.
func WithHTTPClient(h *http.Client) Option { return func(c *ServiceClient) { c.HTTPClient = h } }

// WithRetryPolicy sets the retry policy; MaxAttempts < 1 is taken as 1.
func WithRetryPolicy(p RetryPolicy) Option {
	return func(c *ServiceClient) {
		if p.MaxAttempts < 1 {
			p.MaxAttempts = 1
		}
		c.retry = p
	}
}

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option { return func(c *ServiceClient) { c.userAgent = ua } }

// WithPollWait sets how long one long-poll of a future asks the server to
// hold the request (the wait parameter, whole seconds, 1…60; default 30).
// An http.Client.Timeout must be longer than this.
func WithPollWait(d time.Duration) Option {
	return func(c *ServiceClient) {
		d = d.Truncate(time.Second)
		c.pollWait = min(max(d, time.Second), 60*time.Second)
	}
}

// New returns a client of the server at baseURL using apiKey. It checks that
// baseURL is an absolute http(s) URL.
func New(baseURL, apiKey string, opts ...Option) (*ServiceClient, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("tensafe: base URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("tensafe: base URL %q: must be an absolute http or https URL", u.Redacted())
	}
	if u.User != nil {
		return nil, errors.New("tensafe: base URL: must not carry credentials; pass the API key instead")
	}
	for i := 0; i < len(apiKey); i++ {
		if apiKey[i] <= ' ' || apiKey[i] >= 0x7f {
			// The key is not quoted: it is a secret even when malformed.
			return nil, fmt.Errorf("tensafe: API key: byte %d is not printable ASCII", i)
		}
	}
	c := &ServiceClient{
		BaseURL:   strings.TrimRight(baseURL, "/"),
		APIKey:    apiKey,
		retry:     DefaultRetryPolicy(),
		userAgent: "tensafe-go-sdk/1",
		pollWait:  30 * time.Second,
	}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

func (c *ServiceClient) httpClient() *http.Client {
	if c.HTTPClient != nil {
		return c.HTTPClient
	}
	return http.DefaultClient
}

func (c *ServiceClient) policy() RetryPolicy {
	if c.retry.MaxAttempts == 0 {
		return DefaultRetryPolicy()
	}
	return c.retry
}

func (c *ServiceClient) wait(ctx context.Context, d time.Duration) error {
	if c.sleep != nil {
		return c.sleep(ctx, d)
	}
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *ServiceClient) randN(n int64) int64 {
	if c.rnd != nil {
		return c.rnd(n)
	}
	return rand.Int64N(n)
}

type idemKey struct{}

// WithIdempotencyKey returns a context whose POSTs use key as their
// Idempotency-Key instead of a fresh random one: a caller that persisted the
// key can resubmit after a crash and get the first submission's future back.
// Use the context for that one call only: every operation submitted with it
// names the same key, so the server answers each with the first one's future
// (or refuses it, for another kind of operation).
func WithIdempotencyKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, idemKey{}, key)
}

func newIdempotencyKey() string {
	var b [16]byte
	crand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	return hex.EncodeToString(b[:])
}

// maxResponseBytes bounds a JSON success body; maxErrorBytes an error body.
const (
	maxResponseBytes = 64 << 20
	maxErrorBytes    = 64 << 10
)

// repeat says what a request may be retried on.
type repeat int

const (
	// repeatSafe: repeating has no further effect (GET, DELETE, and POSTs
	// the server deduplicates by Idempotency-Key: operations, training
	// client and tenant creation): retried on 429, 5xx and transport errors.
	repeatSafe repeat = iota
	// repeatRefusedOnly: a POST the server does not deduplicate (creating an
	// API key or a package, registering HE keys): retried only on 429,
	// which the server answers before doing anything.
	repeatRefusedOnly
	// repeatNever: one try.
	repeatNever
)

// do sends one logical request, retrying as the policy allows, and decodes a
// 2xx JSON body into out (unless out is nil). in, when not nil, is sent as
// JSON.
func (c *ServiceClient) do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	return c.doR(ctx, repeatSafe, method, path, query, in, out)
}

func (c *ServiceClient) doR(ctx context.Context, rep repeat, method, path string, query url.Values, in, out any) error {
	resp, err := c.send(ctx, rep, method, path, query, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBytes))
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return fmt.Errorf("tensafe: %s %s: read response: %w", method, path, err)
	}
	if len(body) > maxResponseBytes {
		return fmt.Errorf("tensafe: %s %s: response over %d bytes: %w", method, path, maxResponseBytes, ErrMalformedResponse)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("tensafe: %s %s: decode response: %w (%v)", method, path, ErrMalformedResponse, err)
	}
	return nil
}

// send performs a request with retries and returns the first 2xx response,
// whose body the caller must close. Non-2xx answers become *APIError.
func (c *ServiceClient) send(ctx context.Context, rep repeat, method, path string, query url.Values, in any) (*http.Response, error) {
	var payload []byte
	if in != nil {
		var err error
		if payload, err = json.Marshal(in); err != nil {
			return nil, fmt.Errorf("tensafe: %s %s: encode request: %w", method, path, err)
		}
	}
	u := c.BaseURL + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var key string
	if method == http.MethodPost {
		key, _ = ctx.Value(idemKey{}).(string)
		if key == "" {
			key = newIdempotencyKey()
		}
	}
	pol := c.policy()
	if rep == repeatNever {
		pol.MaxAttempts = 1
	}
	var lastErr error
	for attempt := 1; ; attempt++ {
		var body io.Reader
		if payload != nil {
			body = bytes.NewReader(payload)
		}
		req, err := http.NewRequestWithContext(ctx, method, u, body)
		if err != nil {
			return nil, fmt.Errorf("tensafe: %s %s: %w", method, path, err)
		}
		req.Header.Set("Accept", "application/json")
		if payload != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if c.APIKey != "" {
			req.Header.Set("Authorization", "Bearer "+c.APIKey)
		}
		if c.userAgent != "" {
			req.Header.Set("User-Agent", c.userAgent)
		}
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := c.httpClient().Do(req)
		var retryAfter time.Duration
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return nil, fmt.Errorf("tensafe: %s %s: %w", method, path, ctx.Err())
			}
			// url.Error quotes the URL, never headers: the key stays out.
			lastErr = fmt.Errorf("tensafe: %s %s: %w", method, path, err)
			if rep != repeatSafe {
				return nil, lastErr
			}
		case resp.StatusCode >= 200 && resp.StatusCode < 300:
			return resp, nil
		default:
			b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBytes))
			resp.Body.Close()
			ae := decodeError(resp.StatusCode, resp.Header, b)
			if !retryable(resp.StatusCode, rep) {
				return nil, ae
			}
			lastErr, retryAfter = ae, ae.RetryAfter
		}
		if attempt >= pol.MaxAttempts {
			return nil, lastErr
		}
		if err := c.wait(ctx, pol.backoff(attempt, retryAfter, c.randN)); err != nil {
			return nil, fmt.Errorf("tensafe: %s %s: %w (last error: %v)", method, path, err, lastErr)
		}
	}
}

// retryable reports whether a status may succeed if repeated: 429 always;
// 5xx except 501 Not Implemented when repeating is safe.
func retryable(status int, rep repeat) bool {
	if status == http.StatusTooManyRequests {
		return true
	}
	return rep == repeatSafe && status >= 500 && status != http.StatusNotImplemented
}
