package server

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/service"
)

// Audited authentication and authorization failures.
//
// Every 401 and 403 is appended to the audit log as an OpAuthDenied entry
// (compliance category ACCESS), but an unauthenticated client decides how
// many requests it sends: unbounded, the records would let anyone grow the
// log without limit. So records pass two token buckets, one per remote
// address and one for the whole server. A denial that finds either bucket
// empty is not written; it is counted (in the metric
// tensafe_auth_denials_suppressed_total and in memory), and once per
// summary interval one OpAuthDeniedSummary entry records how many were
// suppressed and from how many addresses. The log therefore grows by at
// most the global rate plus one entry per interval, whatever the flood.
const (
	// OpAuthDenied is the audit operation of a refused request (401/403).
	OpAuthDenied = "auth.denied"
	// OpAuthDeniedSummary counts the refusals left out of the log by the
	// rate limits during one interval.
	OpAuthDeniedSummary = "auth.denied_summary"

	// Defaults of the denial audit limits.
	DefaultAuthAuditPerAddr      = 1.0  // records per second per remote address
	DefaultAuthAuditPerAddrBurst = 10   // records
	DefaultAuthAuditGlobal       = 20.0 // records per second, all addresses
	DefaultAuthAuditGlobalBurst  = 100  // records
	DefaultAuthAuditSummary      = time.Minute

	// maxAuthAuditAddrs bounds the per-address buckets kept in memory;
	// beyond it the idle ones are dropped, and if none is idle every
	// further address shares the global bucket only.
	maxAuthAuditAddrs = 4096
)

// denial is one refused request, as recorded.
type denial struct {
	status int    // 401 or 403
	code   string // api error code
	reason string // missing, invalid, revoked, role
	tenant string // known tenant, or ""
	keyID  string // key id, when the key is known
	prefix string // the token's public lookup prefix, when it has the token form
	role   string // the key's role (403)
	route  string // the route pattern
}

// authAuditor writes rate-limited denial records.
type authAuditor struct {
	log      *audit.Log
	now      func() time.Time
	interval time.Duration
	denials  *prometheus.CounterVec // status, audited
	errLog   func(msg string, args ...any)

	mu         sync.Mutex
	global     bucket
	addrs      map[string]*bucket
	perAddr    float64
	perBurst   float64
	globalRate float64
	globBurst  float64
	// suppressed since the last summary, and from which addresses.
	suppressed int64
	from       map[string]struct{}
	since      time.Time
	// accounted counts every denial recorded: written, or counted for the
	// next summary.
	accounted int64
}

func newAuthAuditor(lg *audit.Log, now func() time.Time, errLog func(string, ...any)) *authAuditor {
	t := now()
	a := &authAuditor{
		log: lg, now: now, interval: DefaultAuthAuditSummary, errLog: errLog,
		global: bucket{tokens: DefaultAuthAuditGlobalBurst, last: t}, addrs: map[string]*bucket{},
		perAddr: DefaultAuthAuditPerAddr, perBurst: DefaultAuthAuditPerAddrBurst,
		globalRate: DefaultAuthAuditGlobal, globBurst: DefaultAuthAuditGlobalBurst,
		from: map[string]struct{}{}, since: t,
	}
	a.denials = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tensafe_auth_denials_total",
		Help: "Requests refused for authentication (401) or authorization (403), by status and whether an audit record was written (audited=false: suppressed by the audit rate limits and counted in the next auth.denied_summary entry).",
	}, []string{"status", "audited"})
	return a
}

// refill adds the tokens earned since b.last (mu held).
func refill(b *bucket, now time.Time, rate, burst float64) {
	b.tokens = math.Min(burst, b.tokens+math.Max(0, now.Sub(b.last).Seconds())*rate)
	b.last = now
}

// allow takes a token of addr's bucket and of the global one, or neither
// (mu held).
func (a *authAuditor) allow(addr string, now time.Time) bool {
	refill(&a.global, now, a.globalRate, a.globBurst)
	b := a.addrs[addr]
	if b == nil {
		if len(a.addrs) >= maxAuthAuditAddrs {
			a.evict(now)
		}
		if len(a.addrs) < maxAuthAuditAddrs {
			b = &bucket{tokens: a.perBurst, last: now}
			a.addrs[addr] = b
		}
	}
	if b != nil {
		refill(b, now, a.perAddr, a.perBurst)
		if b.tokens < 1 {
			return false
		}
	}
	if a.global.tokens < 1 {
		return false
	}
	a.global.tokens--
	if b != nil {
		b.tokens--
	}
	return true
}

// evict drops the buckets that have refilled completely: forgetting them
// changes nothing (mu held).
func (a *authAuditor) evict(now time.Time) {
	full := a.perBurst / a.perAddr
	for k, b := range a.addrs {
		if now.Sub(b.last).Seconds() >= full {
			delete(a.addrs, k)
		}
	}
}

// record audits d for request r, or counts it when the limits say no. It
// also writes the summary of an interval that has ended.
func (a *authAuditor) record(r *http.Request, d denial) {
	addr := remoteHost(r)
	now := a.now()
	a.mu.Lock()
	ok := a.allow(addr, now)
	a.accounted++
	if !ok {
		a.suppressed++
		if len(a.from) < maxAuthAuditAddrs {
			a.from[addr] = struct{}{}
		}
	}
	sum, hasSum := a.takeSummary(now, false)
	a.mu.Unlock()
	a.denials.WithLabelValues(fmt.Sprint(d.status), fmt.Sprint(ok)).Inc()
	ctx := context.WithoutCancel(r.Context())
	if hasSum {
		a.append(ctx, sum)
	}
	if !ok {
		return
	}
	det := map[string]string{"error_code": d.code, "reason": d.reason, "status": fmt.Sprint(d.status),
		"request_id": requestID(r), "remote_addr": addr, "method": r.Method}
	if d.prefix != "" {
		det["lookup_prefix"] = d.prefix
	}
	if d.role != "" {
		det["role"] = d.role
	}
	actor := "unauthenticated"
	if d.keyID != "" {
		actor = d.keyID
	}
	a.append(ctx, audit.Record{TenantID: d.tenant, Actor: actor, Operation: OpAuthDenied, Resource: d.route,
		Outcome: audit.OutcomeDenied, Details: det})
}

// takeSummary returns the summary record of the interval that has ended
// (or, with force, of the one in progress) and starts the next (mu held).
// There is none when nothing was suppressed.
func (a *authAuditor) takeSummary(now time.Time, force bool) (audit.Record, bool) {
	if !force && now.Sub(a.since) < a.interval {
		return audit.Record{}, false
	}
	n, addrs, since := a.suppressed, len(a.from), a.since
	a.suppressed, a.since = 0, now
	clear(a.from)
	if n == 0 {
		return audit.Record{}, false
	}
	return audit.Record{Actor: "system", Operation: OpAuthDeniedSummary, Outcome: audit.OutcomeDenied,
		Details: map[string]string{
			"suppressed_count": fmt.Sprint(n), "address_count": fmt.Sprint(addrs),
			"from": since.UTC().Format(time.RFC3339Nano), "to": now.UTC().Format(time.RFC3339Nano),
		}}, true
}

// count returns how many denials were accounted for so far (each written
// as an OpAuthDenied entry or counted in an OpAuthDeniedSummary).
func (a *authAuditor) count() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.accounted
}

// flush writes the summary of what was suppressed so far, if anything.
func (a *authAuditor) flush(ctx context.Context, force bool) {
	a.mu.Lock()
	sum, ok := a.takeSummary(a.now(), force)
	a.mu.Unlock()
	if ok {
		a.append(context.WithoutCancel(ctx), sum)
	}
}

// run writes the interval summaries until ctx is done, then the last one.
func (a *authAuditor) run(ctx context.Context) {
	t := time.NewTicker(a.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			a.flush(ctx, true)
			return
		case <-t.C:
			a.flush(ctx, false)
		}
	}
}

func (a *authAuditor) append(ctx context.Context, rcd audit.Record) {
	if _, err := a.log.Append(ctx, service.TagCompliance(rcd)); err != nil {
		a.errLog("audit append failed", "operation", rcd.Operation, "error", err.Error())
	}
}

// remoteHost is the host part of the request's remote address (the
// connection's peer; forwarding headers are not trusted).
func remoteHost(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	if r.RemoteAddr == "" || len(r.RemoteAddr) > 64 {
		return "unknown"
	}
	return r.RemoteAddr
}
