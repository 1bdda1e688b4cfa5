package keys

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

var fuzzMasterKey = bytes.Repeat([]byte{0x5A}, MasterKeySize)

// fuzzKeyringFile returns the bytes of a small real keyring sealed with
// fuzzMasterKey, and a Keyring able to decrypt files like it.
func fuzzKeyringFile(t testing.TB) ([]byte, *Keyring) {
	m, _ := RawMasterKey(fuzzMasterKey)
	path := filepath.Join(t.TempDir(), "k")
	k, err := CreateKeyring(context.Background(), path, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	k.NewDEK(context.Background(), "t")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return raw, k
}

// FuzzKeyringFile: arbitrary bytes as a keyring file never panic the
// parser, and nothing but an authentic file decrypts.
func FuzzKeyringFile(f *testing.F) {
	raw, k := fuzzKeyringFile(f)
	f.Add(raw)
	f.Add(raw[:fileHeaderLen])
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := parseFileHeader(b); err != nil {
			return
		}
		st, err := k.decrypt(b)
		if err == nil && !bytes.Equal(b, raw) {
			t.Fatalf("a forged keyring file decrypted (%d tenants)", len(st.Tenants))
		}
	})
}

// FuzzParseMasterKey: the master key text decoder never panics and accepts
// only 32-byte keys.
func FuzzParseMasterKey(f *testing.F) {
	f.Add(MasterKeyPrefix + "WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo")
	f.Add(MasterKeyPrefix)
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMasterKey(s)
		if err == nil && len(m.key) != MasterKeySize {
			t.Fatalf("accepted a %d-byte master key", len(m.key))
		}
	})
}

// FuzzUnwrapDEK: arbitrary wrapped bytes never panic the unwrapper, and
// whatever unwraps is a DEK-sized key that wraps back to the same bytes.
func FuzzUnwrapDEK(f *testing.F) {
	kek := bytes.Repeat([]byte{7}, KEKSize)
	w, _ := wrapDEK(kek, bytes.Repeat([]byte{1}, 32))
	f.Add(w)
	f.Add(w[:24])
	f.Fuzz(func(t *testing.T, b []byte) {
		dek, err := unwrapDEK(kek, b)
		if err != nil {
			return
		}
		w2, _ := wrapDEK(kek, dek)
		if !bytes.Equal(w2, b) {
			t.Fatal("unwrapped key does not wrap back to its input")
		}
	})
}
