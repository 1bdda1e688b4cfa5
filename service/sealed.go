package service

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/keys"
	"github.com/tensafe/tensafe/store"
)

// Sealed records (docs/STORE.md §8).
//
// Two columns of the metadata store hold a tenant's secrets outside the
// artifact store: an operation's result (per-example losses and norms,
// log-probabilities, sampled text) and a client's privacy accountant state,
// whose integrity is what keeps ε from being reset by whoever can write the
// database. Both are sealed with AES-256-GCM under a DEK of the tenant's key
// hierarchy (wrapped by the tenant's KEK, keys.Provider), with additional
// data binding the tenant, the client, the operation and (for accountant
// states) the client's step, so that a sealed record moved to another row,
// client or tenant does not open.
//
// The service sees plaintext: it reaches the store through sealedStore,
// which seals on the way in and opens on the way out, so every reader of
// results and states (futures, certificates and evidence, compliance
// metrics) gets the same view and none can forget to open. The DEK of a
// client is drawn once and kept, with its AEAD, for the life of the process
// (one unwrap per DEK, not per record), up to a bound on its uses.

// ErrIntegrity: a sealed record of the store does not authenticate (altered,
// moved to another row, or written by something other than this service),
// or a plaintext record was found where a sealed one belongs. A client whose
// accountant state fails it is refused (fail closed).
var ErrIntegrity = errors.New("service: stored record failed its integrity check")

// Record format v1.
const (
	recordMagic     = "TSR\x01"           // "TenSafe record", format version 1
	recordAADLabel  = "tensafe.record.v1" // domain label of the additional data
	recordNonceSize = 12
	recordTagSize   = 16

	purposeResult byte = 1 // an operation's result (JSON)
	purposeBudget byte = 2 // a client's accountant state

	// resultKey is the one key of the JSON object a sealed result is
	// stored as (the column holds JSON).
	resultKey = "sealed_record"

	// maxDEKUses bounds the records sealed under one DEK with random
	// 96-bit nonces (far below the 2^32 of NIST SP 800-38D).
	maxDEKUses = 1 << 24
	// maxDEKAge bounds how long a client's sealing DEK is used: after a
	// KEK rotation, new records are wrapped under the new version within
	// it (docs/KEYS.md: wait that long before retiring the old version).
	maxDEKAge = 10 * time.Minute
	// maxCachedDEKs bounds each DEK cache; beyond it the cache starts over.
	maxCachedDEKs = 4096
)

// recordSealer seals and opens records under tenants' DEKs, with caches of
// unwrapped DEKs: one sealing DEK per (tenant, client), and the opening
// AEADs by wrapped DEK.
type recordSealer struct {
	keys keys.Provider

	mu      sync.Mutex
	writers map[string]*sealingDEK // tenant \x00 client → DEK that seals
	readers map[string]cipher.AEAD // tenant \x00 KEK version \x00 wrapped DEK → AEAD
	unwraps int64                  // Provider.Unwrap calls (tests, benchmarks)
	now     func() time.Time
}

type sealingDEK struct {
	aead    cipher.AEAD
	wrapped keys.WrappedKey
	uses    int
	created time.Time
}

func newRecordSealer(p keys.Provider) *recordSealer {
	return &recordSealer{keys: p, writers: map[string]*sealingDEK{}, readers: map[string]cipher.AEAD{}, now: time.Now}
}

func newGCM(dek []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(dek)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func readerKey(tenant string, w keys.WrappedKey) string {
	return fmt.Sprintf("%s\x00%d\x00%s", tenant, w.KEKVersion, w.Wrapped)
}

// writer returns the DEK that seals the records of (tenant, client).
func (r *recordSealer) writer(ctx context.Context, tenant, client string) (cipher.AEAD, keys.WrappedKey, error) {
	k := tenant + "\x00" + client
	r.mu.Lock()
	if w := r.writers[k]; w != nil && w.uses < maxDEKUses && r.now().Sub(w.created) < maxDEKAge {
		w.uses++
		r.mu.Unlock()
		return w.aead, w.wrapped, nil
	}
	r.mu.Unlock()
	dek, wrapped, err := r.keys.NewDEK(ctx, tenant)
	if err != nil {
		return nil, keys.WrappedKey{}, fmt.Errorf("service: seal record: %w", err)
	}
	aead, err := newGCM(dek)
	clear(dek)
	if err != nil {
		return nil, keys.WrappedKey{}, fmt.Errorf("service: seal record: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.writers) >= maxCachedDEKs {
		clear(r.writers)
	}
	if len(r.readers) >= maxCachedDEKs {
		clear(r.readers)
	}
	r.writers[k] = &sealingDEK{aead: aead, wrapped: wrapped, uses: 1, created: r.now()}
	r.readers[readerKey(tenant, wrapped)] = aead
	return aead, wrapped, nil
}

// reader returns the AEAD of the DEK inside w, unwrapping it once.
func (r *recordSealer) reader(ctx context.Context, tenant string, w keys.WrappedKey) (cipher.AEAD, error) {
	k := readerKey(tenant, w)
	r.mu.Lock()
	a := r.readers[k]
	r.mu.Unlock()
	if a != nil {
		return a, nil
	}
	dek, err := r.keys.Unwrap(ctx, tenant, w)
	if err != nil {
		return nil, err
	}
	a, err = newGCM(dek)
	clear(dek)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.unwraps++
	if len(r.readers) >= maxCachedDEKs {
		clear(r.readers)
	}
	r.readers[k] = a
	r.mu.Unlock()
	return a, nil
}

// binding is what a record is bound to (its additional data).
type binding struct {
	purpose            byte
	tenant, client, op string
	step               int64
}

func (b binding) aad(header []byte) []byte {
	out := make([]byte, 0, len(recordAADLabel)+1+len(header)+12+len(b.tenant)+len(b.client)+len(b.op)+8)
	out = append(out, recordAADLabel...)
	out = append(out, 0)
	out = append(out, header...)
	for _, s := range []string{b.tenant, b.client, b.op} {
		out = binary.BigEndian.AppendUint32(out, uint32(len(s)))
		out = append(out, s...)
	}
	return binary.BigEndian.AppendUint64(out, uint64(b.step))
}

// seal returns plaintext sealed as a v1 record bound to b.
func (r *recordSealer) seal(ctx context.Context, b binding, plaintext []byte) ([]byte, error) {
	aead, w, err := r.writer(ctx, b.tenant, b.client)
	if err != nil {
		return nil, err
	}
	if len(w.Wrapped) == 0 || len(w.Wrapped) > 255 {
		return nil, fmt.Errorf("service: seal record: wrapped DEK of %d bytes", len(w.Wrapped))
	}
	hl := len(recordMagic) + 1 + 4 + 1 + len(w.Wrapped)
	out := make([]byte, hl, hl+recordNonceSize+len(plaintext)+recordTagSize)
	copy(out, recordMagic)
	out[4] = b.purpose
	binary.BigEndian.PutUint32(out[5:9], w.KEKVersion)
	out[9] = byte(len(w.Wrapped))
	copy(out[10:], w.Wrapped)
	nonce := out[hl : hl+recordNonceSize]
	out = out[:hl+recordNonceSize]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("service: seal record: %w", err)
	}
	return aead.Seal(out, nonce, plaintext, b.aad(out[:hl])), nil
}

// open returns the plaintext of a v1 record bound to b. Any failure to
// parse or authenticate is ErrIntegrity; a key that cannot be unwrapped
// (a retired KEK version, a shredded tenant) is reported as such.
func (r *recordSealer) open(ctx context.Context, b binding, rec []byte) ([]byte, error) {
	if len(rec) < len(recordMagic)+6 || string(rec[:4]) != recordMagic {
		return nil, fmt.Errorf("%w: not a sealed record (format v1)", ErrIntegrity)
	}
	if rec[4] != b.purpose {
		return nil, fmt.Errorf("%w: record of purpose %d where %d was expected", ErrIntegrity, rec[4], b.purpose)
	}
	wl := int(rec[9])
	hl := 10 + wl
	if wl == 0 || len(rec) < hl+recordNonceSize+recordTagSize {
		return nil, fmt.Errorf("%w: truncated record", ErrIntegrity)
	}
	w := keys.WrappedKey{KeyID: keys.KeyIDFor(b.tenant), KEKVersion: binary.BigEndian.Uint32(rec[5:9]), Wrapped: bytes.Clone(rec[10:hl])}
	aead, err := r.reader(ctx, b.tenant, w)
	if err != nil {
		if errors.Is(err, keys.ErrUnwrap) {
			return nil, fmt.Errorf("%w: %w", ErrIntegrity, err)
		}
		return nil, fmt.Errorf("service: open record: %w", err)
	}
	pt, err := aead.Open(nil, rec[hl:hl+recordNonceSize], rec[hl+recordNonceSize:], b.aad(rec[:hl]))
	if err != nil {
		return nil, fmt.Errorf("%w: the record does not authenticate for this tenant, client and %s", ErrIntegrity, b.what())
	}
	return pt, nil
}

func (b binding) what() string {
	if b.purpose == purposeBudget {
		return fmt.Sprintf("step %d", b.step)
	}
	return "operation " + b.op
}

// sealResult returns the stored form of an operation's result: the JSON
// object {"sealed_record": "<base64 of the v1 record>"}.
func (r *recordSealer) sealResult(ctx context.Context, op store.Operation) (json.RawMessage, error) {
	if len(op.Result) == 0 {
		return nil, nil
	}
	rec, err := r.seal(ctx, binding{purpose: purposeResult, tenant: op.TenantID, client: op.ClientID, op: op.ID}, op.Result)
	if err != nil {
		return nil, err
	}
	// Standard base64 needs no JSON escaping.
	out := make([]byte, 0, len(resultPrefix)+base64.StdEncoding.EncodedLen(len(rec))+len(resultSuffix))
	out = append(out, resultPrefix...)
	out = base64.StdEncoding.AppendEncode(out, rec)
	return append(out, resultSuffix...), nil
}

// The stored form of a sealed result, as sealResult writes it.
const (
	resultPrefix = `{"` + resultKey + `":"`
	resultSuffix = `"}`
)

// sealedResultRecord returns the record inside a stored result: the exact
// form sealResult writes is read without a JSON decoder; any other
// spelling of the one-key object is decoded.
func sealedResultRecord(stored []byte) ([]byte, error) {
	var b64 []byte
	if bytes.HasPrefix(stored, []byte(resultPrefix)) && bytes.HasSuffix(stored, []byte(resultSuffix)) &&
		len(stored) >= len(resultPrefix)+len(resultSuffix) {
		b64 = stored[len(resultPrefix) : len(stored)-len(resultSuffix)]
		if bytes.ContainsAny(b64, `"\`) {
			b64 = nil
		}
	}
	if b64 == nil {
		var v map[string]string
		if err := json.Unmarshal(stored, &v); err != nil || len(v) != 1 || v[resultKey] == "" {
			return nil, errors.New("the result is not sealed")
		}
		b64 = []byte(v[resultKey])
	}
	return base64.StdEncoding.AppendDecode(nil, b64)
}

// openResult returns the plaintext result of a stored operation.
func (r *recordSealer) openResult(ctx context.Context, op store.Operation) (json.RawMessage, error) {
	if len(op.Result) == 0 {
		return nil, nil
	}
	rec, err := sealedResultRecord(op.Result)
	if err != nil {
		return nil, fmt.Errorf("%w: operation %s: %v", ErrIntegrity, op.ID, err)
	}
	pt, err := r.open(ctx, binding{purpose: purposeResult, tenant: op.TenantID, client: op.ClientID, op: op.ID}, rec)
	if err != nil {
		return nil, fmt.Errorf("operation %s: %w", op.ID, err)
	}
	return pt, nil
}

func budgetBinding(c store.TrainingClient) binding {
	return binding{purpose: purposeBudget, tenant: c.TenantID, client: c.ID, step: c.Step}
}

// sealedStore is the store as the service uses it: results and accountant
// states sealed at rest, artifacts given their expiry when a TTL is set.
type sealedStore struct {
	store.Store
	rs  *recordSealer
	ttl time.Duration // artifact TTL; 0: none
}

// CreateClient seals c.BudgetState (bound to step c.Step).
func (s *sealedStore) CreateClient(ctx context.Context, c store.TrainingClient) (store.TrainingClient, error) {
	return s.putClient(ctx, c, s.Store.CreateClient)
}

// UpdateClient seals c.BudgetState (bound to step c.Step).
func (s *sealedStore) UpdateClient(ctx context.Context, c store.TrainingClient) (store.TrainingClient, error) {
	return s.putClient(ctx, c, s.Store.UpdateClient)
}

// putClient seals c.BudgetState (bound to step c.Step), has put (the
// store's CreateClient or UpdateClient) store the client, and returns what
// put returns with the plaintext state.
func (s *sealedStore) putClient(ctx context.Context, c store.TrainingClient,
	put func(context.Context, store.TrainingClient) (store.TrainingClient, error)) (store.TrainingClient, error) {
	plain := c.BudgetState
	if len(plain) > 0 {
		sealed, err := s.rs.seal(ctx, budgetBinding(c), plain)
		if err != nil {
			return store.TrainingClient{}, err
		}
		c.BudgetState = sealed
	}
	out, err := put(ctx, c)
	if err != nil {
		return out, err
	}
	out.BudgetState = bytes.Clone(plain)
	return out, nil
}

func (s *sealedStore) openClient(ctx context.Context, c store.TrainingClient) (store.TrainingClient, error) {
	if len(c.BudgetState) == 0 {
		return c, nil
	}
	pt, err := s.rs.open(ctx, budgetBinding(c), c.BudgetState)
	if err != nil {
		return c, fmt.Errorf("client %s: accountant state: %w", c.ID, err)
	}
	c.BudgetState = pt
	return c, nil
}

// GetClient opens the client's accountant state; one that does not
// authenticate is an error matching ErrIntegrity.
func (s *sealedStore) GetClient(ctx context.Context, tenantID, id string) (store.TrainingClient, error) {
	c, err := s.Store.GetClient(ctx, tenantID, id)
	if err != nil {
		return c, err
	}
	return s.openClient(ctx, c)
}

// ListClients opens every client's accountant state; a state that does
// not open is left out (BudgetState nil), so that one bad row does not hide
// the others from a listing. Loading that client for training fails.
func (s *sealedStore) ListClients(ctx context.Context, tenantID string) ([]store.TrainingClient, error) {
	cs, err := s.Store.ListClients(ctx, tenantID)
	if err != nil {
		return cs, err
	}
	for i, c := range cs {
		if o, err := s.openClient(ctx, c); err == nil {
			cs[i] = o
		} else {
			cs[i].BudgetState = nil
		}
	}
	return cs, nil
}

func (s *sealedStore) openOp(ctx context.Context, op store.Operation) (store.Operation, error) {
	pt, err := s.rs.openResult(ctx, op)
	if err != nil {
		return op, err
	}
	op.Result = pt
	return op, nil
}

// CreateOperation seals op.Result, if any, and opens the result of the
// existing operation a replayed idempotency key returns.
func (s *sealedStore) CreateOperation(ctx context.Context, op store.Operation) (store.Operation, error) {
	out, err := s.putOp(ctx, op, s.Store.CreateOperation)
	if errors.Is(err, store.ErrDuplicate) {
		o, oerr := s.openOp(ctx, out)
		if oerr != nil {
			return store.Operation{}, oerr
		}
		return o, err
	}
	return out, err
}

// GetOperation opens the operation's result.
func (s *sealedStore) GetOperation(ctx context.Context, tenantID, id string) (store.Operation, error) {
	op, err := s.Store.GetOperation(ctx, tenantID, id)
	if err != nil {
		return op, err
	}
	return s.openOp(ctx, op)
}

// UpdateOperation seals op.Result.
func (s *sealedStore) UpdateOperation(ctx context.Context, op store.Operation) (store.Operation, error) {
	return s.putOp(ctx, op, s.Store.UpdateOperation)
}

// putOp seals op.Result, has put (the store's CreateOperation or
// UpdateOperation) store the operation, and returns what put returns: on
// success with the plaintext result, on error as put returned it.
func (s *sealedStore) putOp(ctx context.Context, op store.Operation,
	put func(context.Context, store.Operation) (store.Operation, error)) (store.Operation, error) {
	plain := op.Result
	sealed, err := s.rs.sealResult(ctx, op)
	if err != nil {
		return store.Operation{}, err
	}
	op.Result = sealed
	out, err := put(ctx, op)
	if err != nil {
		return out, err
	}
	out.Result = bytes.Clone(plain)
	return out, nil
}

// ListOperationsByState opens every result.
func (s *sealedStore) ListOperationsByState(ctx context.Context, states ...store.OpState) ([]store.Operation, error) {
	ops, err := s.Store.ListOperationsByState(ctx, states...)
	if err != nil {
		return ops, err
	}
	for i, op := range ops {
		if ops[i], err = s.openOp(ctx, op); err != nil {
			return nil, err
		}
	}
	return ops, nil
}

// CreateArtifact records the artifact's expiry (creation + TTL) when a TTL
// is configured, applies to the artifact's kind (ttlApplies) and the caller
// set none, so that retention finds it by the
// indexed expires_at.
func (s *sealedStore) CreateArtifact(ctx context.Context, a store.Artifact) (store.Artifact, error) {
	if s.ttl > 0 && a.ExpiresAt == nil && ttlApplies(a.Kind) {
		if a.CreatedAt.IsZero() {
			a.CreatedAt = time.Now()
		}
		e := a.CreatedAt.Add(s.ttl)
		a.ExpiresAt = &e
	}
	return s.Store.CreateArtifact(ctx, a)
}

// OpIntegrityFailure is the audit operation of a stored record that failed
// its integrity check (an accountant state that does not authenticate, or
// that is older than the audit log says).
const OpIntegrityFailure = "service.integrity_failure"

// integrityFailure audits a client whose accountant state failed its
// integrity check (once per client and process: every request retries the
// load) and returns the error that refuses the client's work.
func (s *Service) integrityFailure(ctx context.Context, tenant, id, reason string, err error) error {
	s.mu.Lock()
	if s.integrityReported == nil {
		s.integrityReported = map[string]bool{}
	}
	first := !s.integrityReported[tenant+"\x00"+id]
	s.integrityReported[tenant+"\x00"+id] = true
	s.mu.Unlock()
	if first {
		s.log.Error("service: accountant state failed its integrity check; the client is refused", "tenant", tenant, "client", id, "reason", reason, "err", err)
		s.record(ctx, audit.Record{TenantID: tenant, Actor: "system", Operation: OpIntegrityFailure, Resource: id,
			Outcome: audit.OutcomeFailure, Details: map[string]string{"record": "budget_state", "reason": reason,
				"error_code": api.CodeFailedPrecondition}})
	}
	return fmt.Errorf("%w: training client %s: its stored privacy accountant state failed its integrity check (%s); training is refused until an operator restores it: %w",
		ErrFailedPrecondition, id, reason, err)
}

// auditedSteps counts the DP steps the audit log says client id of tenant
// has taken: the accountant's step count after its last successful
// load_state (or 0), plus its successful optim_steps after it. ok is false when the service keeps no
// readable audit store.
func (s *Service) auditedSteps(ctx context.Context, tenant, id string) (n int64, ok bool, err error) {
	st := s.pkg.cfg.AuditStore
	if st == nil {
		return 0, false, nil
	}
	err = st.Scan(ctx, 0, func(_ uint64, e audit.Entry) error {
		if e.TenantID != tenant || e.Resource != id || e.Outcome != audit.OutcomeSuccess {
			return nil
		}
		switch e.Operation {
		case "training." + store.KindOptimStep, opTrainStep:
			n++
		case "training." + store.KindLoadState:
			// The accountant's step count after the load (kept or composed
			// histories hold more steps than the adapter's step); entries
			// written before accountant_steps existed carry only step.
			field := "accountant_steps"
			if _, ok := e.Details[field]; !ok {
				field = "step"
			}
			v, perr := strconv.ParseInt(e.Details[field], 10, 64)
			if perr != nil {
				return fmt.Errorf("audit entry %d: load_state %s %q", e.Seq, field, e.Details[field])
			}
			n = v
		}
		return nil
	})
	if err != nil {
		return 0, false, fmt.Errorf("service: read audit log: %w", err)
	}
	return n, true, nil
}

// checkRollback refuses an accountant state with fewer steps than the
// audit log records for the client: an older sealed state of the same
// client put back (which authenticates: it was sealed by us, for the step
// it names). The stored state may be ahead of the log (a crash between
// persisting a step and logging it), never behind.
func (s *Service) checkRollback(ctx context.Context, tenant, id string, steps int64) error {
	n, ok, err := s.auditedSteps(ctx, tenant, id)
	if err != nil || !ok {
		return err
	}
	if steps < n {
		return s.integrityFailure(ctx, tenant, id, "rollback",
			fmt.Errorf("%w: the state has %d steps, the audit log records %d", ErrIntegrity, steps, n))
	}
	return nil
}

// dropWriter forgets the sealing DEK of (tenant, client): its next record
// gets a fresh DEK, wrapped under the tenant's current KEK version.
func (r *recordSealer) dropWriter(tenant, client string) {
	r.mu.Lock()
	delete(r.writers, tenant+"\x00"+client)
	r.mu.Unlock()
}

// recordKEK returns the KEK version and wrapped DEK in a v1 record's header.
func recordKEK(tenant string, rec []byte) (keys.WrappedKey, bool) {
	if len(rec) < 10 || string(rec[:4]) != recordMagic || len(rec) < 10+int(rec[9]) {
		return keys.WrappedKey{}, false
	}
	return keys.WrappedKey{KeyID: keys.KeyIDFor(tenant), KEKVersion: binary.BigEndian.Uint32(rec[5:9]),
		Wrapped: bytes.Clone(rec[10 : 10+int(rec[9])])}, true
}

// ResealStaleStates re-seals, under each tenant's current KEK version, the
// accountant states of active clients that are sealed under an older one
// (after a rotation), and returns how many it re-sealed. It reads each
// state's header, not its content, and asks the key provider once per
// tenant for the current version. A state that does not authenticate is
// left as it is (loading it refuses the client), as is one that a
// concurrent step re-sealed first. RunRetention calls it after each sweep,
// so that a retired KEK version is not still needed by an idle client's
// state (docs/KEYS.md).
func (s *Service) ResealStaleStates(ctx context.Context) (int, error) {
	ss, ok := s.st.(*sealedStore)
	if !ok {
		return 0, nil
	}
	ts, err := ss.ListTenants(ctx)
	if err != nil {
		return 0, fmt.Errorf("service: reseal: %w", err)
	}
	n := 0
	for _, t := range ts {
		cs, err := ss.Store.ListClients(ctx, t.ID) // as stored: sealed
		if err != nil {
			return n, fmt.Errorf("service: reseal: %w", err)
		}
		var current uint32
		for _, c := range cs {
			w, ok := recordKEK(t.ID, c.BudgetState)
			if c.Status != store.ClientActive || !ok {
				continue
			}
			if current == 0 {
				nw, err := s.keys.Rewrap(ctx, t.ID, w)
				if err != nil {
					s.log.Warn("service: reseal: current KEK version", "tenant", t.ID, "err", err)
					break
				}
				current = nw.KEKVersion
			}
			if w.KEKVersion >= current {
				continue
			}
			resealed, err := s.reseal(ctx, ss, c)
			if err != nil {
				return n, err
			}
			if resealed {
				n++
			}
		}
	}
	return n, nil
}

// reseal writes client c's accountant state again under a fresh DEK.
func (s *Service) reseal(ctx context.Context, ss *sealedStore, c store.TrainingClient) (bool, error) {
	ss.rs.dropWriter(c.TenantID, c.ID)
	s.mu.Lock()
	sess := s.sessions[c.ID]
	s.mu.Unlock()
	if sess != nil && sess.tenant == c.TenantID {
		sess.mu.Lock()
		defer sess.mu.Unlock()
		if sess.deleted {
			return false, nil
		}
		if err := s.updateClient(ctx, sess, sess.rec); err != nil {
			return false, fmt.Errorf("service: reseal client %s: %w", c.ID, err)
		}
		return true, nil
	}
	plain, err := ss.GetClient(ctx, c.TenantID, c.ID)
	if err != nil {
		if errors.Is(err, ErrIntegrity) {
			return false, nil
		}
		return false, fmt.Errorf("service: reseal client %s: %w", c.ID, err)
	}
	if _, err := ss.UpdateClient(ctx, plain); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return false, nil // written meanwhile, by a step that sealed it afresh
		}
		return false, fmt.Errorf("service: reseal client %s: %w", c.ID, err)
	}
	return true, nil
}
