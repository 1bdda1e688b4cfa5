package he

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/schemes/ckks"
)

// Batch is a set of ciphertexts carrying a tokens×dim matrix in a layout.
type Batch struct {
	KeyID       string
	Params      Params
	Layout      Layout
	Ciphertexts []*rlwe.Ciphertext
}

// Client encodes, encrypts and decrypts under a tenant's secret key. Its
// methods may be called from one goroutine at a time; they parallelize
// internally.
type Client struct {
	keys *ClientKeys
	ecd  *ckks.Encoder
	enc  *rlwe.Encryptor
	dec  *rlwe.Decryptor
	// Workers bounds internal parallelism; ≤ 0 means GOMAXPROCS.
	Workers int
}

// NewClient returns a client for k. Encryption uses the secret key
// (symmetric RLWE encryption: lower noise than public-key encryption, and
// the client has the key anyway).
func NewClient(k *ClientKeys) *Client {
	return &Client{
		keys: k,
		ecd:  ckks.NewEncoder(k.params.p),
		enc:  rlwe.NewEncryptor(k.params.p, k.sk),
		dec:  rlwe.NewDecryptor(k.params.p, k.sk),
	}
}

// Keys returns the client's keys.
func (c *Client) Keys() *ClientKeys { return c.keys }

func (c *Client) workers() int {
	if c.Workers > 0 {
		return c.Workers
	}
	return runtime.GOMAXPROCS(0)
}

// EncryptLoRAInput encrypts activations x (tokens×s.DIn) for a LoRA delta
// of shape s in the given packing, at the LoRA input level.
func (c *Client) EncryptLoRAInput(ctx context.Context, x [][]float64, packing Packing, s LoRAShape) (*Batch, error) {
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("he: encrypt: %w", err)
	}
	l := Layout{Packing: packing, Dim: s.DIn, Tokens: len(x)}
	switch packing {
	case PackingThroughput:
	case PackingLatency:
		l.Width, _ = s.latencyWidth()
	default:
		return nil, fmt.Errorf("he: encrypt: packing %q is not a LoRA packing", packing)
	}
	p := c.keys.params
	return c.encrypt(ctx, x, l, loraLevel(p, packing), loraScale(p, packing))
}

// EncryptModelInput encrypts x (tokens×dim) for private inference with a
// model of padded width.
func (c *Client) EncryptModelInput(ctx context.Context, x [][]float64, width int) (*Batch, error) {
	dim := 0
	if len(x) > 0 {
		dim = len(x[0])
	}
	l := Layout{Packing: PackingInterleavedReal, Dim: dim, Width: width, Tokens: len(x)}
	return c.Encrypt(ctx, x, l, c.keys.params.MaxLevel())
}

// Encrypt encrypts x (layout.Tokens×layout.Dim) in layout at level, with
// the parameters' default scale.
func (c *Client) Encrypt(ctx context.Context, x [][]float64, layout Layout, level int) (*Batch, error) {
	return c.encrypt(ctx, x, layout, level, c.keys.params.p.DefaultScale())
}

func (c *Client) encrypt(ctx context.Context, x [][]float64, layout Layout, level int, scale rlwe.Scale) (*Batch, error) {
	p := c.keys.params
	if err := layout.validate(p.Slots()); err != nil {
		return nil, fmt.Errorf("he: encrypt: %w", err)
	}
	if layout.Tokens != len(x) {
		return nil, fmt.Errorf("he: encrypt: layout has %d tokens, x has %d rows", layout.Tokens, len(x))
	}
	if level < 0 || level > p.MaxLevel() {
		return nil, fmt.Errorf("he: encrypt: level %d outside [0, %d]", level, p.MaxLevel())
	}
	for t, row := range x {
		if len(row) != layout.Dim {
			return nil, fmt.Errorf("he: encrypt: x[%d] has %d features, want %d", t, len(row), layout.Dim)
		}
		for i, v := range row {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("he: encrypt: x[%d][%d] is not finite", t, i)
			}
		}
	}
	cts := make([]*rlwe.Ciphertext, layout.Ciphertexts(p.Slots()))
	type tools struct {
		ecd *ckks.Encoder
		enc *rlwe.Encryptor
		buf []complex128
	}
	err := parallelFor(ctx, len(cts), c.workers(), func() any {
		return &tools{ecd: c.ecd.ShallowCopy(), enc: c.enc.ShallowCopy(), buf: make([]complex128, p.Slots())}
	}, func(state any, i int) error {
		t := state.(*tools)
		pack(layout, p.Slots(), x, i, t.buf)
		pt := ckks.NewPlaintext(p.p, level)
		pt.Scale = scale
		if err := t.ecd.Encode(t.buf, pt); err != nil {
			return err
		}
		ct, err := t.enc.EncryptNew(pt)
		if err != nil {
			return err
		}
		cts[i] = ct
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("he: encrypt: %w", err)
	}
	return &Batch{KeyID: c.keys.id, Params: p, Layout: layout, Ciphertexts: cts}, nil
}

// Decrypt decrypts a batch into a tokens×dim matrix.
func (c *Client) Decrypt(ctx context.Context, b *Batch) ([][]float64, error) {
	return c.decrypt(ctx, b, 0)
}

// DecryptPublic is Decrypt followed by rounding each value to logPrec
// fractional bits (Lattigo's DecodePublic), as SECURITY.md requires before
// decrypted CKKS results are shared with anyone but the key holder.
func (c *Client) DecryptPublic(ctx context.Context, b *Batch, logPrec uint) ([][]float64, error) {
	if logPrec == 0 || logPrec > 52 {
		return nil, fmt.Errorf("he: decrypt public: logPrec must be in [1, 52], got %d", logPrec)
	}
	return c.decrypt(ctx, b, logPrec)
}

func (c *Client) decrypt(ctx context.Context, b *Batch, logPrec uint) ([][]float64, error) {
	p := c.keys.params
	if b.KeyID != c.keys.id {
		return nil, fmt.Errorf("he: decrypt: batch is under key %q, client holds %q", b.KeyID, c.keys.id)
	}
	if err := b.Layout.validate(p.Slots()); err != nil {
		return nil, fmt.Errorf("he: decrypt: %w", err)
	}
	if want := b.Layout.Ciphertexts(p.Slots()); len(b.Ciphertexts) != want {
		return nil, fmt.Errorf("he: decrypt: %d ciphertexts, layout needs %d", len(b.Ciphertexts), want)
	}
	out := make([][]float64, b.Layout.Tokens)
	for t := range out {
		out[t] = make([]float64, b.Layout.Dim)
	}
	type tools struct {
		ecd *ckks.Encoder
		dec *rlwe.Decryptor
		buf []complex128
	}
	err := parallelFor(ctx, len(b.Ciphertexts), c.workers(), func() any {
		return &tools{ecd: c.ecd.ShallowCopy(), dec: c.dec.ShallowCopy(), buf: make([]complex128, p.Slots())}
	}, func(state any, i int) error {
		t := state.(*tools)
		ct := b.Ciphertexts[i]
		if ct == nil {
			return fmt.Errorf("ciphertext %d is missing", i)
		}
		if err := checkCiphertext(p, ct); err != nil {
			return fmt.Errorf("ciphertext %d: %w", i, err)
		}
		pt := t.dec.DecryptNew(ct)
		var err error
		if logPrec > 0 {
			err = t.ecd.DecodePublic(pt, t.buf, float64(logPrec))
		} else {
			err = t.ecd.Decode(pt, t.buf)
		}
		if err != nil {
			return fmt.Errorf("ciphertext %d: %w", i, err)
		}
		unpack(b.Layout, p.Slots(), t.buf, i, out)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("he: decrypt: %w", err)
	}
	return out, nil
}

// pack fills buf with the slot values of ciphertext i of layout.
func pack(l Layout, slots int, x [][]float64, i int, buf []complex128) {
	clear(buf)
	switch l.Packing {
	case PackingThroughput:
		g, f := i/l.Dim, i%l.Dim
		base := g * 2 * slots
		for s := 0; s < slots; s++ {
			var re, im float64
			if t := base + s; t < l.Tokens {
				re = x[t][f]
			}
			if t := base + slots + s; t < l.Tokens {
				im = x[t][f]
			}
			buf[s] = complex(re, im)
		}
	case PackingLatency, PackingInterleavedReal:
		P := slots / l.Width
		tpc := l.tokensPerCiphertext(slots)
		for u := 0; u < tpc; u++ {
			t := i*tpc + u
			if t >= l.Tokens {
				break
			}
			for c, v := range x[t] {
				if u < P {
					buf[c*P+u] += complex(v, 0)
				} else {
					buf[c*P+u-P] += complex(0, v)
				}
			}
		}
	}
}

// unpack is the inverse of pack.
func unpack(l Layout, slots int, buf []complex128, i int, out [][]float64) {
	switch l.Packing {
	case PackingThroughput:
		g, f := i/l.Dim, i%l.Dim
		base := g * 2 * slots
		for s := 0; s < slots; s++ {
			if t := base + s; t < l.Tokens {
				out[t][f] = real(buf[s])
			}
			if t := base + slots + s; t < l.Tokens {
				out[t][f] = imag(buf[s])
			}
		}
	case PackingLatency, PackingInterleavedReal:
		P := slots / l.Width
		tpc := l.tokensPerCiphertext(slots)
		for u := 0; u < tpc; u++ {
			t := i*tpc + u
			if t >= l.Tokens {
				break
			}
			for c := range out[t] {
				if u < P {
					out[t][c] = real(buf[c*P+u])
				} else {
					out[t][c] = imag(buf[c*P+u-P])
				}
			}
		}
	}
}

// parallelFor runs fn(state, i) for i in [0, n) on up to workers goroutines,
// each with its own state from newState, stopping at the first error or when
// ctx is done.
func parallelFor(ctx context.Context, n, workers int, newState func() any, fn func(state any, i int) error) error {
	if n == 0 {
		return ctx.Err()
	}
	workers = max(1, min(workers, n))
	var (
		mu       sync.Mutex
		next     int
		firstErr error
		wg       sync.WaitGroup
	)
	take := func() (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		if firstErr != nil || next >= n {
			return 0, false
		}
		if err := ctx.Err(); err != nil {
			firstErr = err
			return 0, false
		}
		i := next
		next++
		return i, true
	}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			state := newState()
			for {
				i, ok := take()
				if !ok {
					return
				}
				if err := fn(state, i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// EncryptFeatures encrypts features [from, to) of x (tokens×d, at most
// 2·slots tokens) in the throughput (feature-major) packing, one ciphertext
// per feature, for streaming into Evaluator.DeltaStream.
func (c *Client) EncryptFeatures(ctx context.Context, x [][]float64, from, to int) ([]*rlwe.Ciphertext, error) {
	p := c.keys.params
	if len(x) == 0 || len(x) > 2*p.Slots() {
		return nil, fmt.Errorf("he: encrypt features: %d tokens, want 1..%d", len(x), 2*p.Slots())
	}
	if from < 0 || to > len(x[0]) || from >= to {
		return nil, fmt.Errorf("he: encrypt features: range [%d, %d) outside [0, %d)", from, to, len(x[0]))
	}
	sub := make([][]float64, len(x))
	for t, row := range x {
		if len(row) != len(x[0]) {
			return nil, fmt.Errorf("he: encrypt features: x[%d] has %d features, want %d", t, len(row), len(x[0]))
		}
		sub[t] = row[from:to]
	}
	b, err := c.encrypt(ctx, sub, Layout{Packing: PackingThroughput, Dim: to - from, Tokens: len(x)}, loraThroughputLevel(p), loraThroughputScale(p))
	if err != nil {
		return nil, err
	}
	return b.Ciphertexts, nil
}

// DecryptFeature decrypts one feature-major ciphertext into its first tokens
// values (as emitted by Evaluator.DeltaStream).
func (c *Client) DecryptFeature(ct *rlwe.Ciphertext, tokens int) ([]float64, error) {
	p := c.keys.params
	if tokens < 1 || tokens > 2*p.Slots() {
		return nil, fmt.Errorf("he: decrypt feature: tokens %d outside [1, %d]", tokens, 2*p.Slots())
	}
	if err := checkCiphertext(p, ct); err != nil {
		return nil, fmt.Errorf("he: decrypt feature: %w", err)
	}
	buf := make([]complex128, p.Slots())
	if err := c.ecd.Decode(c.dec.DecryptNew(ct), buf); err != nil {
		return nil, fmt.Errorf("he: decrypt feature: %w", err)
	}
	out := make([][]float64, tokens)
	for t := range out {
		out[t] = make([]float64, 1)
	}
	unpack(Layout{Packing: PackingThroughput, Dim: 1, Tokens: tokens}, p.Slots(), buf, 0, out)
	col := make([]float64, tokens)
	for t := range col {
		col[t] = out[t][0]
	}
	return col, nil
}
