package tssp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/tensafe/tensafe/seal"
)

// Names of the files OpenDir writes: a PEFT adapter folder, with the
// package's certificate and evidence beside it when it has them.
const (
	FileAdapterConfig  = "adapter_config.json"
	FileAdapterWeights = "adapter_model.safetensors"
	FileCertificate    = "dp_certificate.json"
	FileEvidence       = "evidence.json"
	FileManifest       = "tssp_manifest.json"
)

// ReadFile opens the package at path and reads it (see Read). The
// returned close function closes the file.
func ReadFile(path string) (*Package, func() error, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("tssp: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("tssp: %w", err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("tssp: %s: not a regular file", path)
	}
	p, err := Read(f, st.Size())
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, f.Close, nil
}

// Adapter is a verified, decrypted adapter in memory.
type Adapter struct {
	Manifest    *Manifest
	Config      []byte // adapter_config.json
	Weights     []byte // adapter_model.safetensors
	Certificate []byte // dp_certificate.json, or nil
	Evidence    []byte // evidence.json, or nil
}

// Load verifies the package p against trusted and decrypts it for identity
// into memory: the edge loader's path, which writes nothing to disk.
func Load(ctx context.Context, p *Package, trusted []*seal.VerifyingKey, identity Identity) (*Adapter, error) {
	if err := p.Verify(ctx, trusted); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.Grow(int(p.manifest.Weights.PlaintextSize))
	if err := p.Decrypt(ctx, identity, &buf); err != nil {
		clear(buf.Bytes())
		return nil, err
	}
	return &Adapter{
		Manifest:    p.manifest,
		Config:      p.small[NameAdapterConfig],
		Weights:     buf.Bytes(),
		Certificate: p.small[NameCertificate],
		Evidence:    p.small[NameEvidence],
	}, nil
}

// OpenDir verifies the package p against trusted, decrypts it for identity
// and writes a PEFT adapter folder at dir, which must not exist. Everything
// is written into a temporary directory beside dir, synced, and renamed to
// dir only after the weights have decrypted completely and matched the
// signed hash; on any failure the temporary directory is removed, so no
// partial plaintext remains.
func OpenDir(ctx context.Context, p *Package, trusted []*seal.VerifyingKey, identity Identity, dir string) (err error) {
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("tssp: open: %s: %w", dir, fs.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("tssp: open: %w", err)
	}
	if err := p.Verify(ctx, trusted); err != nil {
		return err
	}
	parent := filepath.Dir(filepath.Clean(dir))
	tmp, err := os.MkdirTemp(parent, ".tssp-open-*")
	if err != nil {
		return fmt.Errorf("tssp: open: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := writeFileSync(filepath.Join(tmp, FileManifest), p.manifestJSON); err != nil {
		return err
	}
	for name, file := range map[string]string{NameAdapterConfig: FileAdapterConfig, NameCertificate: FileCertificate, NameEvidence: FileEvidence} {
		if b, ok := p.small[name]; ok {
			if err := writeFileSync(filepath.Join(tmp, file), b); err != nil {
				return err
			}
		}
	}
	f, err := os.OpenFile(filepath.Join(tmp, FileAdapterWeights), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("tssp: open: %w", err)
	}
	if err := p.Decrypt(ctx, identity, f); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("tssp: open: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("tssp: open: %w", err)
	}
	if err := os.Chmod(tmp, 0o700); err != nil {
		return fmt.Errorf("tssp: open: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("tssp: open: %w", err)
	}
	if d, err := os.Open(parent); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("tssp: open: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("tssp: open: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("tssp: open: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("tssp: open: %w", err)
	}
	return nil
}
