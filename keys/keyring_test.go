package keys

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tensafe/tensafe/seal"
)

// cheapArgon2 keeps tests fast; TestDefaultArgon2Passphrase uses the real
// parameters once.
var cheapArgon2 = &Options{Argon2: Argon2Params{Time: 1, MemoryKiB: 1024, Threads: 1}}

func rawMaster(t testing.TB) Master {
	k := make([]byte, MasterKeySize)
	rand.Read(k)
	m, err := RawMasterKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func newKeyring(t testing.TB, m Master) (*Keyring, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keys", "keyring.tsk")
	k, err := CreateKeyring(context.Background(), path, m, cheapArgon2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k, path
}

func TestKeyringCreateOpen(t *testing.T) {
	ctx := context.Background()
	pass, _ := Passphrase([]byte("correct horse battery staple"))
	k, path := newKeyring(t, pass)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("keyring mode %04o, want 0600", fi.Mode().Perm())
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != 0o700 {
		t.Fatalf("keyring directory mode %04o, want 0700", di.Mode().Perm())
	}
	dek, wk, err := k.NewDEK(ctx, "tenant-a")
	if err != nil {
		t.Fatal(err)
	}
	k2, err := OpenKeyring(ctx, path, pass)
	if err != nil {
		t.Fatal(err)
	}
	got, err := k2.Unwrap(ctx, "tenant-a", wk)
	if err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("Unwrap after reopening = %x, %v", got, err)
	}

	if _, err := CreateKeyring(ctx, path, pass, cheapArgon2); !errors.Is(err, ErrExists) {
		t.Fatalf("CreateKeyring over an existing file: err = %v, want ErrExists", err)
	}
	wrong, _ := Passphrase([]byte("Tr0ub4dor&3"))
	if _, err := OpenKeyring(ctx, path, wrong); !errors.Is(err, ErrWrongMaster) {
		t.Fatalf("wrong passphrase: err = %v, want ErrWrongMaster", err)
	}
	if _, err := OpenKeyring(ctx, path, rawMaster(t)); err == nil || !strings.Contains(err.Error(), "sealed with a passphrase") {
		t.Fatalf("raw key for a passphrase keyring: err = %v", err)
	}
	os.Chmod(path, 0o644)
	if _, err := OpenKeyring(ctx, path, pass); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable keyring: err = %v, want a mode error", err)
	}
	os.Chmod(path, 0o600)

	// Any altered byte of the file is caught.
	raw, _ := os.ReadFile(path)
	for _, off := range []int{10, 30, fileHeaderLen - 1, fileHeaderLen + 5, len(raw) - 1} {
		alt := bytes.Clone(raw)
		alt[off] ^= 1
		p2 := filepath.Join(t.TempDir(), "k")
		os.WriteFile(p2, alt, 0o600)
		if _, err := OpenKeyring(ctx, p2, pass); err == nil {
			t.Fatalf("keyring with byte %d altered opened", off)
		}
	}
}

func TestDefaultArgon2Passphrase(t *testing.T) {
	if testing.Short() {
		t.Skip("Argon2id with 64 MiB")
	}
	ctx := context.Background()
	pass, _ := Passphrase([]byte("a long passphrase"))
	path := filepath.Join(t.TempDir(), "keyring.tsk")
	k, err := CreateKeyring(ctx, path, pass, nil)
	if err != nil {
		t.Fatal(err)
	}
	if k.hdr.argon2 != DefaultArgon2 {
		t.Fatalf("argon2 parameters %+v, want %+v", k.hdr.argon2, DefaultArgon2)
	}
	if _, err := OpenKeyring(ctx, path, pass); err != nil {
		t.Fatal(err)
	}
}

func TestMasterKeyText(t *testing.T) {
	ctx := context.Background()
	text, err := GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseMasterKey(text + "\n")
	if err != nil {
		t.Fatal(err)
	}
	_, path := newKeyring(t, m)
	m2, _ := ParseMasterKey(text)
	if _, err := OpenKeyring(ctx, path, m2); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenKeyring(ctx, path, rawMaster(t)); !errors.Is(err, ErrWrongMaster) {
		t.Fatalf("other raw key: err = %v, want ErrWrongMaster", err)
	}
	pass, _ := Passphrase([]byte("x"))
	if _, err := OpenKeyring(ctx, path, pass); err == nil || !strings.Contains(err.Error(), "sealed with a raw master key") {
		t.Fatalf("passphrase for a raw-key keyring: err = %v", err)
	}
	for _, bad := range []string{"", "tensafe-master-v2:AAAA", MasterKeyPrefix + "!!", MasterKeyPrefix + "AAAA"} {
		if _, err := ParseMasterKey(bad); err == nil {
			t.Errorf("ParseMasterKey(%q) accepted", bad)
		}
	}
	if _, err := Passphrase([]byte("  ")); err == nil {
		t.Error("blank passphrase accepted")
	}
}

func TestTenantIDs(t *testing.T) {
	k, _ := newKeyring(t, rawMaster(t))
	for _, bad := range []string{"", "a b", "tab\there", "nl\n", strings.Repeat("x", MaxTenantIDLen+1), "\xff"} {
		if _, _, err := k.NewDEK(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "tenant id") {
			t.Errorf("NewDEK(%q): err = %v, want a tenant id error", bad, err)
		}
	}
}

func TestRotationAndRetirement(t *testing.T) {
	ctx := context.Background()
	k, path := newKeyring(t, rawMaster(t))
	dek1, w1, err := k.NewDEK(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if w1.KEKVersion != 1 || w1.KeyID != "kek:acme" || len(w1.Wrapped) != WrappedDEKSize {
		t.Fatalf("first wrapped key %+v", w1)
	}
	v, err := k.Rotate(ctx, "acme")
	if err != nil || v != 2 {
		t.Fatalf("Rotate = %d, %v", v, err)
	}
	dek2, w2, err := k.NewDEK(ctx, "acme")
	if err != nil || w2.KEKVersion != 2 {
		t.Fatalf("NewDEK after rotation: version %d, %v", w2.KEKVersion, err)
	}
	// Old versions still unwrap.
	for _, c := range []struct {
		dek []byte
		w   WrappedKey
	}{{dek1, w1}, {dek2, w2}} {
		got, err := k.Unwrap(ctx, "acme", c.w)
		if err != nil || !bytes.Equal(got, c.dek) {
			t.Fatalf("Unwrap version %d = %v", c.w.KEKVersion, err)
		}
	}
	// Rewrap moves a DEK to the current version without changing it.
	r1, err := k.Rewrap(ctx, "acme", w1)
	if err != nil || r1.KEKVersion != 2 || bytes.Equal(r1.Wrapped, w1.Wrapped) {
		t.Fatalf("Rewrap = %+v, %v", r1, err)
	}
	if got, _ := k.Unwrap(ctx, "acme", r1); !bytes.Equal(got, dek1) {
		t.Fatal("rewrapped key unwraps to another DEK")
	}
	if same, _ := k.Rewrap(ctx, "acme", w2); !bytes.Equal(same.Wrapped, w2.Wrapped) {
		t.Fatal("Rewrap of a current-version key changed it")
	}

	// The current version cannot be retired; a failed change leaves the
	// file as it was.
	before, _ := os.ReadFile(path)
	if err := k.Retire(ctx, "acme", 2); err == nil || !strings.Contains(err.Error(), "current") {
		t.Fatalf("Retire(current) = %v", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Fatal("failed Retire changed the keyring file")
	}
	if err := k.Retire(ctx, "acme", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Unwrap(ctx, "acme", w1); !errors.Is(err, ErrUnknownVersion) {
		t.Fatalf("Unwrap under a retired version: err = %v, want ErrUnknownVersion", err)
	}
	if got, err := k.Unwrap(ctx, "acme", r1); err != nil || !bytes.Equal(got, dek1) {
		t.Fatalf("rewrapped key after retirement: %v", err)
	}
	if err := k.Retire(ctx, "acme", 1); !errors.Is(err, ErrUnknownVersion) {
		t.Fatalf("second Retire: err = %v", err)
	}
	list, err := k.List(ctx)
	if err != nil || len(list) != 1 || list[0].Current != 2 || len(list[0].Versions) != 2 ||
		list[0].Versions[0].Retired.IsZero() || !list[0].Versions[1].Retired.IsZero() {
		t.Fatalf("List = %+v, %v", list, err)
	}
}

func TestWrongTenantAndTamper(t *testing.T) {
	ctx := context.Background()
	k, _ := newKeyring(t, rawMaster(t))
	_, wa, _ := k.NewDEK(ctx, "alice")
	_, wb, _ := k.NewDEK(ctx, "bob")
	if _, err := k.Unwrap(ctx, "bob", wa); !errors.Is(err, ErrWrongTenant) {
		t.Fatalf("alice's key as bob's: err = %v, want ErrWrongTenant", err)
	}
	// Relabelled: alice's wrapped bytes presented under bob's key id.
	relabel := WrappedKey{KeyID: wb.KeyID, KEKVersion: 1, Wrapped: wa.Wrapped}
	if _, err := k.Unwrap(ctx, "bob", relabel); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("relabelled key: err = %v, want ErrUnwrap", err)
	}
	flipped := wa
	flipped.Wrapped = bytes.Clone(wa.Wrapped)
	flipped.Wrapped[3] ^= 0x80
	if _, err := k.Unwrap(ctx, "alice", flipped); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("flipped wrapped key: err = %v, want ErrUnwrap", err)
	}
	if _, err := k.Unwrap(ctx, "carol", WrappedKey{KeyID: "kek:carol", KEKVersion: 1, Wrapped: wa.Wrapped}); !errors.Is(err, ErrUnknownTenant) {
		t.Fatalf("unknown tenant: err = %v", err)
	}
	if _, err := k.Unwrap(ctx, "alice", WrappedKey{KeyID: wa.KeyID, KEKVersion: 7, Wrapped: wa.Wrapped}); !errors.Is(err, ErrUnknownVersion) {
		t.Fatalf("unknown version: err = %v", err)
	}
}

func sealArtifact(t *testing.T, p Provider, dir string, b seal.Binding, plain []byte) (string, string) {
	t.Helper()
	path := filepath.Join(dir, b.TenantID+"-"+strings.ReplaceAll(b.ArtifactID, "/", "_")+".tsenv")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := SealTo(context.Background(), p, f, b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(plain); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path, w.ContentHash()
}

func openArtifact(p Provider, path string, b seal.Binding, sum string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := Open(context.Background(), p, f, b, sum)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

// Crypto-shredding: once a tenant's KEKs are destroyed its artifacts do not
// open, with this process's keyring or a fresh one, and the KEK bytes are
// gone from the keyring's decrypted body; other tenants are untouched.
func TestCryptoShredding(t *testing.T) {
	ctx := context.Background()
	m := rawMaster(t)
	k, path := newKeyring(t, m)
	dir := t.TempDir()
	plain := bytes.Repeat([]byte("adapter weights "), 10000)
	ba := seal.Binding{TenantID: "doomed", ArtifactID: "ckpt-1"}
	bb := seal.Binding{TenantID: "survivor", ArtifactID: "ckpt-1"}
	pa, sa := sealArtifact(t, k, dir, ba, plain)
	k.Rotate(ctx, "doomed")
	pa2, sa2 := sealArtifact(t, k, dir, seal.Binding{TenantID: "doomed", ArtifactID: "ckpt-2"}, plain)
	pb, sb := sealArtifact(t, k, dir, bb, plain)
	if got, err := openArtifact(k, pa, ba, sa); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("before shredding: %v", err)
	}
	var keks [][]byte
	for _, v := range k.st.Tenants["doomed"].Versions {
		keks = append(keks, bytes.Clone(v.Key))
	}

	if err := k.Shred(ctx, "doomed"); err != nil {
		t.Fatal(err)
	}
	k2, err := OpenKeyring(ctx, path, m)
	if err != nil {
		t.Fatal(err)
	}
	for _, kr := range []*Keyring{k, k2} {
		for _, a := range []struct{ path, sum, id string }{{pa, sa, "ckpt-1"}, {pa2, sa2, "ckpt-2"}} {
			got, err := openArtifact(kr, a.path, seal.Binding{TenantID: "doomed", ArtifactID: a.id}, a.sum)
			if !errors.Is(err, ErrShredded) || len(got) != 0 {
				t.Fatalf("shredded artifact %s: %d bytes, err = %v; want ErrShredded", a.id, len(got), err)
			}
		}
		if _, _, err := kr.NewDEK(ctx, "doomed"); !errors.Is(err, ErrShredded) {
			t.Fatalf("NewDEK for a shredded tenant: err = %v, want ErrShredded", err)
		}
		if got, err := openArtifact(kr, pb, bb, sb); err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("other tenant after shredding: %v", err)
		}
	}
	if err := k.AddTenant(ctx, "doomed"); !errors.Is(err, ErrShredded) {
		t.Fatalf("AddTenant of a shredded tenant: err = %v", err)
	}
	// The decrypted keyring body no longer holds the KEKs.
	raw, _ := os.ReadFile(path)
	st, err := k2.decrypt(raw)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(st)
	for _, kek := range keks {
		if bytes.Contains(body, kek) || bytes.Contains(body, []byte(base64.StdEncoding.EncodeToString(kek))) {
			t.Fatal("shredded KEK still in the keyring body")
		}
	}
	list, _ := k.List(ctx)
	if list[0].Tenant != "doomed" || list[0].Shredded.IsZero() {
		t.Fatalf("List after shredding: %+v", list)
	}
}

// No DEK or KEK is ever written in the clear: seal artifacts for several
// tenants, rotate, re-wrap, then search every byte under the data
// directory for every DEK and KEK in raw, hex and base64 forms.
func TestNoKeyWrittenUnwrapped(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	m := rawMaster(t)
	path := filepath.Join(root, "keyring.tsk")
	k, err := CreateKeyring(ctx, path, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	var secrets [][]byte
	for i, tenant := range []string{"t1", "t2", "t3"} {
		for j := range 5 {
			b := seal.Binding{TenantID: tenant, ArtifactID: hex.EncodeToString([]byte{byte(i), byte(j)})}
			f, err := os.Create(filepath.Join(root, tenant+"-"+b.ArtifactID))
			if err != nil {
				t.Fatal(err)
			}
			dek, wk, err := k.NewDEK(ctx, tenant)
			if err != nil {
				t.Fatal(err)
			}
			secrets = append(secrets, bytes.Clone(dek))
			w, err := seal.NewWriter(f, dek, wk.Ref(), b)
			if err != nil {
				t.Fatal(err)
			}
			w.Write(bytes.Repeat([]byte{byte(j)}, 1000))
			w.Close()
			f.Close()
		}
		k.Rotate(ctx, tenant)
	}
	for _, ts := range k.st.Tenants {
		for _, v := range ts.Versions {
			secrets = append(secrets, bytes.Clone(v.Key))
		}
	}
	forms := func(s []byte) [][]byte {
		return [][]byte{s, []byte(hex.EncodeToString(s)), []byte(base64.StdEncoding.EncodeToString(s)),
			[]byte(base64.RawURLEncoding.EncodeToString(s)), s[:16]}
	}
	files := 0
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for i, s := range secrets {
			for _, f := range forms(s) {
				if bytes.Contains(data, f) {
					t.Errorf("%s contains secret %d (form %q...)", p, i, f[:4])
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 16 {
		t.Fatalf("searched %d files, want the keyring and 15 artifacts", files)
	}
}

// Two keyring handles on one file, as two processes would have: a rotation
// through one is seen by the other, and changes through both are kept.
func TestKeyringSharedFile(t *testing.T) {
	ctx := context.Background()
	m := rawMaster(t)
	a, path := newKeyring(t, m)
	b, err := OpenKeyring(ctx, path, m)
	if err != nil {
		t.Fatal(err)
	}
	_, w1, _ := a.NewDEK(ctx, "x")
	if _, err := b.Unwrap(ctx, "x", w1); err != nil {
		t.Fatalf("second handle does not see a tenant added by the first: %v", err)
	}
	if _, err := b.Rotate(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if _, w, _ := a.NewDEK(ctx, "x"); w.KEKVersion != 2 {
		t.Fatalf("first handle wraps under version %d after the second rotated, want 2", w.KEKVersion)
	}
	a.AddTenant(ctx, "y")
	b.AddTenant(ctx, "z")
	for _, h := range []*Keyring{a, b} {
		list, _ := h.List(ctx)
		if len(list) != 3 {
			t.Fatalf("List = %d tenants, want 3 (a change was lost)", len(list))
		}
	}
}

func TestEnvelopeRewrap(t *testing.T) {
	ctx := context.Background()
	k, _ := newKeyring(t, rawMaster(t))
	dir := t.TempDir()
	b := seal.Binding{TenantID: "acme", ArtifactID: "ckpt/9"}
	plain := make([]byte, 3*seal.SegmentSize+7)
	rand.Read(plain)
	path, sum := sealArtifact(t, k, dir, b, plain)
	if _, err := k.Rotate(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	src, _ := os.Open(path)
	var out bytes.Buffer
	ref, err := RewrapEnvelope(ctx, k, src, &out, b)
	src.Close()
	if err != nil {
		t.Fatal(err)
	}
	if ref.KEKVersion != 2 {
		t.Fatalf("rewrapped to version %d, want 2", ref.KEKVersion)
	}
	old, _ := os.ReadFile(path)
	oh, _ := seal.ParseHeader(old)
	nh, _ := seal.ParseHeader(out.Bytes())
	if !bytes.Equal(old[oh.Len():], out.Bytes()[nh.Len():]) {
		t.Fatal("segments changed: data was re-encrypted")
	}
	if err := k.Retire(ctx, "acme", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := openArtifact(k, path, b, sum); !errors.Is(err, ErrUnknownVersion) {
		t.Fatalf("old envelope after retirement: err = %v, want ErrUnknownVersion", err)
	}
	newPath := filepath.Join(dir, "rewrapped")
	os.WriteFile(newPath, out.Bytes(), 0o600)
	if got, err := openArtifact(k, newPath, b, sum); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("rewrapped envelope: %v", err)
	}
	// The envelope is bound to its tenant: another tenant's provider lookup
	// refuses it before any decryption.
	if _, err := openArtifact(k, newPath, seal.Binding{TenantID: "other", ArtifactID: "ckpt/9"}, sum); !errors.Is(err, ErrWrongTenant) {
		t.Fatalf("envelope opened as another tenant's: err = %v, want ErrWrongTenant", err)
	}
}

func TestContextCanceled(t *testing.T) {
	k, _ := newKeyring(t, rawMaster(t))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := k.NewDEK(ctx, "a"); !errors.Is(err, context.Canceled) {
		t.Fatalf("NewDEK with a canceled context: err = %v", err)
	}
}

func BenchmarkKeyringNewDEK(b *testing.B) {
	k, _ := newKeyring(b, rawMaster(b))
	ctx := context.Background()
	k.AddTenant(ctx, "t")
	for b.Loop() {
		if _, _, err := k.NewDEK(ctx, "t"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkKeyringUnwrap(b *testing.B) {
	k, _ := newKeyring(b, rawMaster(b))
	ctx := context.Background()
	_, w, _ := k.NewDEK(ctx, "t")
	for b.Loop() {
		if _, err := k.Unwrap(ctx, "t", w); err != nil {
			b.Fatal(err)
		}
	}
}
