package service

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/store"
)

// DefaultRetentionInterval is how often RunRetention sweeps when given no
// interval.
const DefaultRetentionInterval = time.Minute

// retention is the artifact and operation retention policy and what its
// sweeps did.
type retention struct {
	ttl   time.Duration // 0: artifacts have no TTL (an explicit ExpiresAt still applies)
	opTTL time.Duration // 0: finished operations (and their results) are kept

	mu       sync.Mutex
	running  bool
	interval time.Duration
	last     time.Time
	lastErr  string
	deleted  int64
}

// ArtifactTTL returns the configured artifact time-to-live (0: none).
func (s *Service) ArtifactTTL() time.Duration { return s.ret.ttl }

// expiry returns when artifact a expires: its recorded ExpiresAt, else its
// creation time plus the TTL, else never (nil). An artifact written while a
// TTL is configured records its ExpiresAt (sealedStore.CreateArtifact); to
// one written before, the TTL is applied when a sweep runs.
func (s *Service) expiry(a store.Artifact) *time.Time {
	if a.ExpiresAt != nil {
		t := a.ExpiresAt.UTC()
		return &t
	}
	if s.ret.ttl <= 0 || !ttlApplies(a.Kind) {
		return nil
	}
	t := a.CreatedAt.Add(s.ret.ttl).UTC()
	return &t
}

// expired lists the artifacts of every tenant that have expired at now,
// by the two indexed queries: a recorded expires_at at or before now, and,
// with a TTL, no expires_at and a creation at or before now − TTL.
func (s *Service) expired(ctx context.Context, now time.Time) ([]store.Artifact, error) {
	out, err := s.st.ListExpiredArtifacts(ctx, now)
	if err != nil {
		return nil, err
	}
	if s.ret.ttl > 0 {
		old, err := s.st.ListArtifactsWithoutExpiry(ctx, now.Add(-s.ret.ttl))
		if err != nil {
			return nil, err
		}
		for _, a := range old {
			if ttlApplies(a.Kind) {
				out = append(out, a)
			}
		}
	}
	return out, nil
}

// ttlApplies reports whether the artifact TTL applies to artifacts of
// kind. It applies to what training produces (checkpoints, packages); HE
// evaluation keys, adapters and models are configuration the tenant
// registered, with a lifecycle of their own (rotation, DELETE): expiring the
// active key under a tenant's feet would break its clients without
// removing anything derived from training data.
func ttlApplies(kind string) bool {
	switch kind {
	case ArtifactHEKeys, ArtifactHEAdapter, ArtifactHEModel:
		return false
	}
	return true
}

// OperationTTL returns how long finished operations, and their results,
// are kept (0: for ever).
func (s *Service) OperationTTL() time.Duration { return s.ret.opTTL }

// opSweepBatch is how many operations one delete statement removes.
const opSweepBatch = 1000

// expireOperations deletes the operations that finished before now − the
// operation TTL, in batches, and returns how many.
func (s *Service) expireOperations(ctx context.Context, now time.Time) (int64, error) {
	if s.ret.opTTL <= 0 {
		return 0, nil
	}
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("service: retention: %w", err)
		}
		n, err := s.st.DeleteFinishedOperations(context.WithoutCancel(ctx), now.Add(-s.ret.opTTL), opSweepBatch)
		total += n
		if err != nil {
			return total, fmt.Errorf("service: retention: delete finished operations: %w", err)
		}
		if n < opSweepBatch {
			return total, nil
		}
	}
}

// EnforceRetention deletes every artifact expired at now: first the
// encrypted file (so that nothing readable is left if the rest fails; a
// file already gone is fine), then its record, then it appends a
// RETENTION event (retention.delete_artifact) to the audit log with the
// artifact's content hash. With an operation TTL it also deletes the
// operations (futures, with their sealed results) that finished more than
// the TTL before now; the sweep's audit entry counts them. It returns how
// many artifacts it deleted; on an error it stops, and the next sweep
// retries what is left.
func (s *Service) EnforceRetention(ctx context.Context, now time.Time) (int, error) {
	n, err := s.enforceRetention(ctx, now)
	ops, oerr := int64(0), error(nil)
	if err == nil {
		ops, oerr = s.expireOperations(ctx, now)
		err = oerr
	}
	s.ret.mu.Lock()
	s.ret.last, s.ret.deleted = now.UTC(), s.ret.deleted+int64(n)
	s.ret.lastErr = ""
	if err != nil {
		s.ret.lastErr = err.Error()
	}
	s.ret.mu.Unlock()
	if err != nil || n > 0 || ops > 0 {
		r := audit.Record{Actor: "system", Operation: OpRetentionSweep, Outcome: audit.OutcomeSuccess,
			Details: map[string]string{"deleted_count": fmt.Sprint(n), "ttl_seconds": fmt.Sprint(int64(s.ret.ttl / time.Second))}}
		if s.ret.opTTL > 0 {
			r.Details["operations_deleted_count"] = fmt.Sprint(ops)
			r.Details["operation_ttl_seconds"] = fmt.Sprint(int64(s.ret.opTTL / time.Second))
		}
		if err != nil {
			r.Outcome = audit.OutcomeFailure
			r.Details["error_code"] = api.CodeInternal
		}
		s.record(ctx, r)
	}
	return n, err
}

func (s *Service) enforceRetention(ctx context.Context, now time.Time) (int, error) {
	as, err := s.expired(ctx, now)
	if err != nil {
		return 0, fmt.Errorf("service: retention: list artifacts: %w", err)
	}
	n := 0
	for _, a := range as {
		if err := ctx.Err(); err != nil {
			return n, fmt.Errorf("service: retention: %w", err)
		}
		if a.Location == "" || filepath.Base(a.Location) != a.Location || a.Location[0] == '.' {
			return n, fmt.Errorf("service: retention: artifact %s: bad location", a.ID)
		}
		if err := os.Remove(filepath.Join(s.dir, a.Location)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return n, fmt.Errorf("service: retention: delete artifact %s: %w", a.ID, err)
		}
		syncDir(s.dir)
		if err := s.st.DeleteArtifact(context.WithoutCancel(ctx), a.TenantID, a.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return n, fmt.Errorf("service: retention: delete record of artifact %s: %w", a.ID, err)
		}
		exp := s.expiry(a)
		s.record(ctx, audit.Record{TenantID: a.TenantID, Actor: "system", Operation: OpRetentionDelete, Resource: a.ID,
			Outcome: audit.OutcomeSuccess, Details: map[string]string{
				"content_hash": a.ContentHash, "artifact_kind": a.Kind, "client_id": a.ClientID,
				"created_at": a.CreatedAt.UTC().Format(time.RFC3339), "expired_at": exp.Format(time.RFC3339),
			}})
		n++
	}
	return n, nil
}

// RunRetention sweeps every interval (DefaultRetentionInterval when ≤ 0)
// until ctx is done, starting with one sweep at once. Errors go to the
// log; the next sweep retries.
func (s *Service) RunRetention(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultRetentionInterval
	}
	s.ret.mu.Lock()
	s.ret.running, s.ret.interval = true, interval
	s.ret.mu.Unlock()
	defer func() {
		s.ret.mu.Lock()
		s.ret.running = false
		s.ret.mu.Unlock()
	}()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if n, err := s.EnforceRetention(ctx, time.Now()); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Error("service: retention sweep failed", "err", err)
		} else if n > 0 {
			s.log.Info("service: retention deleted expired artifacts", "count", n)
		}
		// Key hygiene rides on the same tick: accountant states sealed
		// under a KEK version older than the current one are re-sealed
		// (sealed.go), so that retiring the old version refuses no client.
		if n, err := s.ResealStaleStates(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Error("service: re-sealing accountant states failed", "err", err)
		} else if n > 0 {
			s.log.Info("service: accountant states re-sealed under the current KEK version", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// retentionMetric reports the policy, the sweeper's state and how many of
// arts are past their expiry and still present.
func (s *Service) retentionMetric(arts []store.Artifact, now time.Time) api.RetentionMetric {
	s.ret.mu.Lock()
	m := api.RetentionMetric{ArtifactTTLSeconds: int64(s.ret.ttl / time.Second), SweepIntervalSecs: int64(s.ret.interval / time.Second),
		SweeperRunning: s.ret.running, LastSweepError: s.ret.lastErr, Deleted: s.ret.deleted}
	if !s.ret.last.IsZero() {
		t := s.ret.last
		m.LastSweep = &t
	}
	s.ret.mu.Unlock()
	// An artifact is overdue when it outlived its expiry by more than a
	// sweep interval (or a minute when no sweeper runs).
	slack := max(time.Duration(m.SweepIntervalSecs)*time.Second, time.Minute)
	for _, a := range arts {
		if e := s.expiry(a); e != nil && now.Sub(*e) > slack {
			m.Overdue++
		}
	}
	return m
}
