package tssp

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

const benchWeightsSize = 100 << 20

// benchPackage writes a package holding 100 MiB of weights to a file.
func benchPackage(b *testing.B) (*fixture, string) {
	b.Helper()
	f := newFixture(b)
	f.weights = make([]byte, benchWeightsSize)
	rand.NewChaCha8([32]byte{1}).Read(f.weights)
	o := f.opts()
	o.Certificate = nil
	path := filepath.Join(b.TempDir(), "bench.tssp")
	out, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := Create(context.Background(), out, o); err != nil {
		b.Fatal(err)
	}
	if err := out.Close(); err != nil {
		b.Fatal(err)
	}
	return f, path
}

// BenchmarkCreate100MiB: encrypt, hash, sign and write a package with a
// 100 MiB adapter to a file.
func BenchmarkCreate100MiB(b *testing.B) {
	f := newFixture(b)
	f.weights = make([]byte, benchWeightsSize)
	o := f.opts()
	o.Certificate = nil
	dir := b.TempDir()
	o.TempDir = dir
	b.SetBytes(benchWeightsSize)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		o.Weights = bytes.NewReader(f.weights)
		out, err := os.Create(filepath.Join(dir, strconv.Itoa(i)))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Create(context.Background(), out, o); err != nil {
			b.Fatal(err)
		}
		out.Close()
		os.Remove(out.Name())
	}
}

// BenchmarkVerify100MiB: read and verify a package file (signature, every
// member's SHA-256), no decryption.
func BenchmarkVerify100MiB(b *testing.B) {
	f, path := benchPackage(b)
	b.SetBytes(benchWeightsSize)
	b.ReportAllocs()
	for b.Loop() {
		p, closeFile, err := ReadFile(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := p.Verify(context.Background(), f.trusted()); err != nil {
			b.Fatal(err)
		}
		closeFile()
	}
}

// BenchmarkOpen100MiB: verify, decrypt and write the adapter folder.
func BenchmarkOpen100MiB(b *testing.B) {
	f, path := benchPackage(b)
	dir := b.TempDir()
	b.SetBytes(benchWeightsSize)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		p, closeFile, err := ReadFile(path)
		if err != nil {
			b.Fatal(err)
		}
		out := filepath.Join(dir, strconv.Itoa(i))
		if err := OpenDir(context.Background(), p, f.trusted(), RecipientIdentity(f.recipients[0]), out); err != nil {
			b.Fatal(err)
		}
		closeFile()
		os.RemoveAll(out)
	}
}

// BenchmarkDecrypt100MiB: verify and decrypt to io.Discard, no disk
// writes: the cost of the cryptography alone.
func BenchmarkDecrypt100MiB(b *testing.B) {
	f, path := benchPackage(b)
	b.SetBytes(benchWeightsSize)
	b.ReportAllocs()
	for b.Loop() {
		p, closeFile, err := ReadFile(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := p.Verify(context.Background(), f.trusted()); err != nil {
			b.Fatal(err)
		}
		if err := p.Decrypt(context.Background(), RecipientIdentity(f.recipients[0]), io.Discard); err != nil {
			b.Fatal(err)
		}
		closeFile()
	}
}
