package he

import (
	"bytes"
	"context"
	"crypto/rand"
	"path/filepath"
	"testing"

	"github.com/tensafe/tensafe/keys"
)

func newTestKeyring(t *testing.T, tenants ...string) *keys.Keyring {
	t.Helper()
	raw := make([]byte, keys.MasterKeySize)
	rand.Read(raw)
	m, err := keys.RawMasterKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	k, err := keys.CreateKeyring(ctx, filepath.Join(t.TempDir(), "keyring.tsk"), m, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	for _, tn := range tenants {
		if err := k.AddTenant(ctx, tn); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

func TestKEKWrapper(t *testing.T) {
	ctx := context.Background()
	kr := newTestKeyring(t, "acme", "other")
	w := KEKWrapper{Provider: kr, Tenant: "acme"}
	msg := bytes.Repeat([]byte("evaluation keys "), 10000) // several envelope segments
	aad := []byte("tensafe.he.evaluation_keys/v1/acme/hek_x")
	sealed, err := w.Wrap(ctx, msg, aad)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("evaluation keys evaluation")) {
		t.Fatal("plaintext visible in the sealed blob")
	}
	got, err := w.Unwrap(ctx, sealed, aad)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("round trip: %v", err)
	}
	if _, err := w.Unwrap(ctx, sealed, []byte("other aad")); err == nil {
		t.Fatal("opened with other associated data")
	}
	if _, err := (KEKWrapper{Provider: kr, Tenant: "other"}).Unwrap(ctx, sealed, aad); err == nil {
		t.Fatal("opened under another tenant")
	}
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-20] ^= 1
	if _, err := w.Unwrap(ctx, tampered, aad); err == nil {
		t.Fatal("opened a tampered blob")
	}
	// KEK rotation keeps old blobs readable; shredding makes them unreadable.
	if _, err := kr.Rotate(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Unwrap(ctx, sealed, aad); err != nil {
		t.Fatalf("after KEK rotation: %v", err)
	}
	if err := kr.Shred(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Unwrap(ctx, sealed, aad); err == nil {
		t.Fatal("opened after the tenant was shredded")
	}
}

func TestKeyStoreAndClientKeysUnderKEK(t *testing.T) {
	ctx := context.Background()
	kr := newTestKeyring(t, "acme")
	w := KEKWrapper{Provider: kr, Tenant: "acme"}
	p, err := Preset(DefaultPreset)
	if err != nil {
		t.Fatal(err)
	}
	ck, evk, err := GenerateKeys(ctx, p, Capabilities{})
	if err != nil {
		t.Fatal(err)
	}
	ks, err := OpenKeyStore(t.TempDir(), w)
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.Put(ctx, "acme", evk); err != nil {
		t.Fatal(err)
	}
	got, err := ks.ForEvaluation(ctx, "acme", evk.ID)
	if err != nil || got.ID != evk.ID {
		t.Fatalf("load under KEK: %v", err)
	}
	sealed, err := ck.Seal(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	ck2, err := OpenClientKeys(ctx, w, sealed)
	if err != nil || ck2.ID() != ck.ID() {
		t.Fatalf("client keys under KEK: %v", err)
	}
}
