package tssp

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// BaseModelHash returns the hash a manifest records for a Hugging Face
// model folder: the SHA-256 of the sha256sum(1) listing of config.json and
// every *.safetensors file in dir, sorted by name (bytewise), one line
// "<64 hex digits>  <name>\n" each. The same value comes from
//
//	cd DIR && sha256sum config.json *.safetensors | LC_ALL=C sort -k2 | sha256sum
func BaseModelHash(dir string) (string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("tssp: base model hash: %w", err)
	}
	var names []string
	for _, e := range ents {
		if e.Type().IsRegular() && (e.Name() == "config.json" || strings.HasSuffix(e.Name(), ".safetensors")) {
			names = append(names, e.Name())
		}
	}
	if !slices.Contains(names, "config.json") {
		return "", fmt.Errorf("tssp: base model hash: %s has no config.json", dir)
	}
	slices.Sort(names)
	list := sha256.New()
	for _, n := range names {
		f, err := os.Open(filepath.Join(dir, n))
		if err != nil {
			return "", fmt.Errorf("tssp: base model hash: %w", err)
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", fmt.Errorf("tssp: base model hash: %s: %w", n, err)
		}
		fmt.Fprintf(list, "%s  %s\n", hex.EncodeToString(h.Sum(nil)), n)
	}
	return hashString(list), nil
}
