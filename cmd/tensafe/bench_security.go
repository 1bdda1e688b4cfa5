package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/tensafe/tensafe/audit"
	"github.com/tensafe/tensafe/benchsuite"
	"github.com/tensafe/tensafe/keys"
	"github.com/tensafe/tensafe/privacy"
	"github.com/tensafe/tensafe/seal"
	"github.com/tensafe/tensafe/store"
)

// benchPrivacyGroup times the accountant as the service uses it.
func benchPrivacyGroup(ctx context.Context, r *benchsuite.Runner, o suiteOptions) error {
	const q, sigma, delta = 0.01, 1.0, 1e-5
	r.Param("privacy", fmt.Sprintf("q=%g σ=%g δ=%g, %d RDP orders", q, sigma, delta, len(privacy.DefaultOrders())))
	b, err := privacy.NewBudget(privacy.BudgetConfig{TargetEpsilon: 1e9, Delta: delta})
	if err != nil {
		return err
	}
	spec := func(name, original string, n int, unit, note string) benchsuite.Spec {
		return benchsuite.Spec{Group: "privacy", Name: name, Original: original, N: n, Unit: unit, Note: note}
	}
	if _, err := r.Measure(ctx, spec("account_step", "account_step", iters(o, 2000, 10000), "step", "Budget.RecordStep (run-length history)"),
		func(context.Context) error { return b.RecordStep(q, sigma) }); err != nil {
		return err
	}
	if _, err := r.Measure(ctx, spec("rdp_accounting (check + record)", "rdp_accounting", iters(o, 1000, 5000), "step",
		"Budget.CanStep then RecordStep: the service's per-step pair, a fresh ε each time"),
		func(context.Context) error {
			if _, err := b.CanStep(q, sigma); err != nil {
				return err
			}
			return b.RecordStep(q, sigma)
		}); err != nil {
		return err
	}
	orders := privacy.DefaultOrders()
	vec, err := privacy.RDPVector(q, sigma, orders)
	if err != nil {
		return err
	}
	if _, err := r.Measure(ctx, spec("rdp_vector (new q, σ)", "", iters(o, 200, 1000), "(q, σ) pair", "RDP over all orders; cached per pair by Budget"),
		func(context.Context) error { _, err := privacy.RDPVector(q, sigma, orders); return err }); err != nil {
		return err
	}
	total := make([]float64, len(vec))
	for i := range vec {
		total[i] = vec[i] * 10000
	}
	if _, err := r.Measure(ctx, spec("convert_to_dp", "convert_to_dp", iters(o, 2000, 10000), "query", "RDP → (ε, δ), improved conversion"),
		func(context.Context) error {
			_, _, _, err := privacy.EpsilonFromRDP(orders, total, delta, privacy.ConversionImproved)
			return err
		}); err != nil {
		return err
	}
	if _, err := r.Measure(ctx, spec("calibrate_sigma", "", iters(o, 5, 20), "search", "σ for ε=8, δ=1e-5, q=0.01, 10,000 steps"),
		func(ctx context.Context) error {
			_, err := privacy.CalibrateSigma(ctx, privacy.SigmaRequest{TargetEpsilon: 8, Delta: delta, Q: q, Steps: 10000}, privacy.Options{})
			return err
		}); err != nil {
		return err
	}
	_, err = r.Measure(ctx, spec("epsilon_prv", "", iters(o, 3, 10), "query", "PRV accountant, 2,250 steps at q=0.04, σ=1.5 (Opacus' case)"),
		func(context.Context) error {
			_, err := privacy.Epsilon([]privacy.Run{{Q: 0.04, Sigma: 1.5, Count: 2250}}, delta, privacy.Options{Accountant: privacy.AccountantPRV})
			return err
		})
	return err
}

// benchCryptoGroup times the key hierarchy, the encrypted store and the
// signature schemes.
func benchCryptoGroup(ctx context.Context, r *benchsuite.Runner, o suiteOptions) error {
	dir, err := os.MkdirTemp("", "tensafe-bench-crypto-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	mk, err := keys.GenerateMasterKey()
	if err != nil {
		return err
	}
	master, err := keys.ParseMasterKey(mk)
	if err != nil {
		return err
	}
	kr, err := keys.CreateKeyring(ctx, filepath.Join(dir, "keyring"), master, nil)
	if err != nil {
		return err
	}
	defer kr.Close()
	const tenant = "bench"
	if err := kr.AddTenant(ctx, tenant); err != nil {
		return err
	}
	spec := func(name, original string, n int, unit, note string) benchsuite.Spec {
		return benchsuite.Spec{Group: "crypto", Name: name, Original: original, N: n, Unit: unit, Note: note, MaxTime: 30 * time.Second}
	}
	i := 0
	if _, err := r.Measure(ctx, spec("generate_kek (add tenant)", "", iters(o, 10, 50), "tenant",
		"fresh KEK, keyring file re-sealed and replaced under its lock"),
		func(ctx context.Context) error { i++; return kr.AddTenant(ctx, "t"+strconv.Itoa(i)) }); err != nil {
		return err
	}
	if _, err := r.Measure(ctx, spec("generate_dek", "generate_dek", iters(o, 500, 2000), "DEK", "32 random bytes wrapped with AES-KWP under the tenant KEK"),
		func(ctx context.Context) error { _, _, err := kr.NewDEK(ctx, tenant); return err }); err != nil {
		return err
	}
	_, wrapped, err := kr.NewDEK(ctx, tenant)
	if err != nil {
		return err
	}
	if _, err := r.Measure(ctx, spec("unwrap_key", "unwrap_key", iters(o, 500, 2000), "DEK", "AES-KWP unwrap under the tenant KEK"),
		func(ctx context.Context) error { _, err := kr.Unwrap(ctx, tenant, wrapped); return err }); err != nil {
		return err
	}
	if _, err := kr.Rotate(ctx, tenant); err != nil {
		return err
	}
	if _, err := r.Measure(ctx, spec("wrap_key (rewrap)", "wrap_key", iters(o, 500, 2000), "DEK",
		"AES-KWP unwrap under the old KEK version and wrap under the current one (rotation)"),
		func(ctx context.Context) error { _, err := kr.Rewrap(ctx, tenant, wrapped); return err }); err != nil {
		return err
	}

	// Encrypted store: 1 MiB artifacts, written and fsynced like the
	// service's checkpoints, against the same bytes in plaintext.
	payload := make([]byte, 1<<20)
	rand.Read(payload)
	n := iters(o, 30, 100)
	var encMS, plainMS, decMS, readMS []float64
	var hash string
	tick, done := r.Progress("crypto: 1 MiB store, encrypted and plain, alternating", n)
	for k := 0; k < n; k++ {
		b := seal.Binding{TenantID: tenant, ArtifactID: "art-" + strconv.Itoa(k)}
		encPath, plainPath := filepath.Join(dir, b.ArtifactID+".tsenv"), filepath.Join(dir, b.ArtifactID+".bin")
		ms, err := timeMS(func() error {
			f, err := os.Create(encPath)
			if err != nil {
				return err
			}
			w, err := keys.SealTo(ctx, kr, f, b)
			if err != nil {
				f.Close()
				return err
			}
			if _, err := w.Write(payload); err != nil {
				f.Close()
				return err
			}
			if err := w.Close(); err != nil {
				f.Close()
				return err
			}
			hash = w.ContentHash()
			if err := f.Sync(); err != nil {
				f.Close()
				return err
			}
			return f.Close()
		})
		if err != nil {
			return fmt.Errorf("encrypt_store: %w", err)
		}
		encMS = append(encMS, ms)
		ms, err = timeMS(func() error { return writeSynced(plainPath, payload) })
		if err != nil {
			return fmt.Errorf("plain store: %w", err)
		}
		plainMS = append(plainMS, ms)
		ms, err = timeMS(func() error {
			f, err := os.Open(encPath)
			if err != nil {
				return err
			}
			defer f.Close()
			rd, err := keys.Open(ctx, kr, f, b, hash)
			if err != nil {
				return err
			}
			got, err := io.ReadAll(rd)
			if err != nil {
				return err
			}
			if !bytes.Equal(got, payload) {
				return fmt.Errorf("decrypted payload differs")
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("decrypt_retrieve: %w", err)
		}
		decMS = append(decMS, ms)
		ms, err = timeMS(func() error { _, err := os.ReadFile(plainPath); return err })
		if err != nil {
			return err
		}
		readMS = append(readMS, ms)
		os.Remove(encPath)
		os.Remove(plainPath)
		tick()
	}
	done()
	enc := r.Add(benchsuite.Spec{Group: "crypto", Name: "encrypt_store (1 MiB)", Original: "encrypt_store", Unit: "1 MiB artifact",
		Note: "new DEK, AES-256-GCM envelope, SHA-256, write + fsync"}, encMS)
	pl := r.Add(benchsuite.Spec{Group: "crypto", Name: "plain_store (1 MiB)", Unit: "1 MiB artifact", Note: "same bytes, write + fsync"}, plainMS)
	dec := r.Add(benchsuite.Spec{Group: "crypto", Name: "decrypt_retrieve (1 MiB)", Original: "decrypt_retrieve", Unit: "1 MiB artifact",
		Note: "read, unwrap DEK, decrypt, check hash"}, decMS)
	rd := r.Add(benchsuite.Spec{Group: "crypto", Name: "plain_retrieve (1 MiB)", Unit: "1 MiB artifact", Note: "read (page cache)"}, readMS)
	r.AddRatio("store 1 MiB encrypted / plain", enc.P50, pl.P50, "p50 / p50, both fsynced", "")
	r.AddRatio("retrieve 1 MiB encrypted / plain", dec.P50, rd.P50, "p50 / p50", "")

	// Signatures over a 32-byte digest (what manifests and checkpoints sign).
	msg := make([]byte, 32)
	rand.Read(msg)
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	edSig := ed25519.Sign(edPriv, msg)
	sigN := iters(o, 300, 1000)
	if _, err := r.Measure(ctx, spec("ed25519_sign", "ed25519_sign", sigN, "32-byte digest", "crypto/ed25519"),
		func(context.Context) error { ed25519.Sign(edPriv, msg); return nil }); err != nil {
		return err
	}
	if _, err := r.Measure(ctx, spec("ed25519_verify", "ed25519_verify", sigN, "32-byte digest", "crypto/ed25519"),
		func(context.Context) error {
			if !ed25519.Verify(edPub, msg, edSig) {
				return fmt.Errorf("ed25519 signature does not verify")
			}
			return nil
		}); err != nil {
		return err
	}
	mlPub, mlPriv, err := mldsa65.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	mlSig := make([]byte, mldsa65.SignatureSize)
	if err := mldsa65.SignTo(mlPriv, msg, nil, true, mlSig); err != nil {
		return err
	}
	if _, err := r.Measure(ctx, spec("mldsa65_sign", "mldsa65_sign", sigN, "32-byte digest", "ML-DSA-65 (FIPS 204), circl, hedged"),
		func(context.Context) error {
			return mldsa65.SignTo(mlPriv, msg, nil, true, make([]byte, mldsa65.SignatureSize))
		}); err != nil {
		return err
	}
	if _, err := r.Measure(ctx, spec("mldsa65_verify", "mldsa65_verify", sigN, "32-byte digest", "ML-DSA-65 (FIPS 204), circl"),
		func(context.Context) error {
			if !mldsa65.Verify(mlPub, msg, nil, mlSig) {
				return fmt.Errorf("ML-DSA-65 signature does not verify")
			}
			return nil
		}); err != nil {
		return err
	}
	sk, err := seal.GenerateSigningKey(nil)
	if err != nil {
		return err
	}
	hSig, err := sk.Sign("tensafe/bench", msg)
	if err != nil {
		return err
	}
	if _, err := r.Measure(ctx, spec("hybrid_sign (Ed25519 + ML-DSA-65)", "", sigN, "32-byte digest", "seal.SigningKey.Sign"),
		func(context.Context) error { _, err := sk.Sign("tensafe/bench", msg); return err }); err != nil {
		return err
	}
	if _, err := r.Measure(ctx, spec("hybrid_verify (Ed25519 + ML-DSA-65)", "", sigN, "32-byte digest", "both must verify"),
		func(context.Context) error { return sk.Public().Verify("tensafe/bench", msg, hSig) }); err != nil {
		return err
	}
	rk, err := seal.GenerateRecipientKey()
	if err != nil {
		return err
	}
	dek := make([]byte, 32)
	rand.Read(dek)
	bind := seal.Binding{TenantID: tenant, ArtifactID: "pkg"}
	sealed, err := seal.SealDEK(rk.Public(), dek, bind)
	if err != nil {
		return err
	}
	if _, err := r.Measure(ctx, spec("xwing_seal_dek", "", sigN, "DEK", "X25519 + ML-KEM-768 (HPKE) to one recipient"),
		func(context.Context) error { _, err := seal.SealDEK(rk.Public(), dek, bind); return err }); err != nil {
		return err
	}
	_, err = r.Measure(ctx, spec("xwing_open_dek", "", sigN, "DEK", "X25519 + ML-KEM-768 (HPKE)"),
		func(context.Context) error { _, err := rk.OpenDEK(sealed, bind); return err })
	return err
}

func writeSynced(path string, data []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// benchAuditGroup times durable appends and full verification of the
// hash-chained log on both of its stores.
func benchAuditGroup(ctx context.Context, r *benchsuite.Runner, o suiteOptions) error {
	dir, err := os.MkdirTemp("", "tensafe-bench-audit-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	signer, err := seal.GenerateSigningKey(nil)
	if err != nil {
		return err
	}
	fs, err := audit.OpenFileStore(filepath.Join(dir, "file"), audit.FileOptions{})
	if err != nil {
		return err
	}
	sq, err := store.Open(ctx, filepath.Join(dir, "meta.db"))
	if err != nil {
		return err
	}
	defer sq.Close()
	as, err := sq.AuditStore(ctx, "bench")
	if err != nil {
		return err
	}
	chain := iters(o, 1000, 10000)
	r.Param("audit", fmt.Sprintf("verify_chain over %d entries; hybrid-signed checkpoint every 256 entries", chain))
	for _, st := range []struct {
		name  string
		store audit.Store
	}{{"file", fs}, {"sqlite", as}} {
		l, err := audit.Open(ctx, st.store, audit.Options{Origin: "bench.tensafe.local/audit", Signer: signer, CheckpointEvery: 256})
		if err != nil {
			return err
		}
		rec := audit.Record{TenantID: "bench", Actor: "key_bench", Operation: "training.optim_step", Resource: "tc_bench",
			Outcome: audit.OutcomeSuccess, Details: map[string]string{"step": "1", "epsilon_spent": "0.42"}}
		_, err = r.Measure(ctx, benchsuite.Spec{Group: "audit", Name: "append_entry (" + st.name + ")", Original: "append_entry",
			N: iters(o, 200, 1000), Unit: "entry", Note: "canonical entry, SHA-256 chain, durable (fsync / commit) before return",
			MaxTime: 30 * time.Second},
			func(ctx context.Context) error { _, err := l.Append(ctx, rec); return err })
		if err != nil {
			l.Close()
			return err
		}
		for l.Size() < uint64(chain) {
			if _, err := l.Append(ctx, rec); err != nil {
				l.Close()
				return err
			}
		}
		if _, err := l.Checkpoint(ctx); err != nil {
			l.Close()
			return err
		}
		size := l.Size()
		_, err = r.Measure(ctx, benchsuite.Spec{Group: "audit", Name: fmt.Sprintf("verify_chain (%s, %d entries)", st.name, size), Original: "verify_chain",
			N: iters(o, 3, 10), Unit: "whole log", Note: "every entry's hash and link, Merkle roots and signatures of all checkpoints"},
			func(ctx context.Context) error {
				res, err := audit.Verify(ctx, st.store, audit.VerifyOptions{Key: signer.Public()})
				if err != nil {
					return err
				}
				if res.Size != size || !res.SignaturesChecked {
					return fmt.Errorf("verified %d entries (signatures %v), want %d", res.Size, res.SignaturesChecked, size)
				}
				return nil
			})
		if cerr := l.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}
