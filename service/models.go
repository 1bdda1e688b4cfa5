package service

import (
	"fmt"
	"path/filepath"
	"sort"
	"sync"

	"github.com/tensafe/tensafe/engine"
	"github.com/tensafe/tensafe/model"
	"github.com/tensafe/tensafe/tokenizer"
)

// baseModel is one registered base model, loaded on first use and shared by
// every client on it.
type baseModel struct {
	name string
	dir  string // "" for the built-in model

	once sync.Once
	m    *model.Model
	tok  tokenizer.Tokenizer // nil when the folder has none
	err  error
}

func (b *baseModel) load() (*model.Model, tokenizer.Tokenizer, error) {
	b.once.Do(func() {
		defer func() {
			if b.err == nil {
				b.err = warm(b.m)
			}
		}()
		if b.dir == "" {
			b.m, b.tok = model.Tiny(), tokenizer.NewByte()
			return
		}
		m, err := model.Load(b.dir)
		if err != nil {
			// The folder is the operator's, never shown to tenants.
			b.err = fmt.Errorf("service: load base model %q: %w", b.name, err)
			return
		}
		b.m = m
		if tok, err := tokenizer.LoadDir(b.dir); err == nil {
			b.tok = tok
		}
	})
	return b.m, b.tok, b.err
}

// warm runs one forward pass, which moves the frozen weights onto the
// shared compute backend. GoMLX materialises a tensor on a device lazily, on
// its first use, and that first use is a write to the tensor: two engines
// sharing the model must not race to make it (seen with -race in
// TestOrderedQueue). After this, engines only read the weights.
func warm(m *model.Model) error {
	if _, _, err := m.ComputeLogits([]int{0}); err != nil {
		return fmt.Errorf("service: warm base model %q: %w", m.Name, err)
	}
	return nil
}

// registry maps base-model names to models. Tenants name a model; only the
// operator (Config.Models) maps names to folders.
type registry struct {
	models map[string]*baseModel
}

func newRegistry(folders map[string]string) (*registry, error) {
	r := &registry{models: map[string]*baseModel{model.TinyName: {name: model.TinyName}}}
	for name, dir := range folders {
		if err := checkModelName(name); err != nil {
			return nil, fmt.Errorf("service: register model %q: %w", name, err)
		}
		if name == model.TinyName {
			return nil, fmt.Errorf("service: register model %q: the name is the built-in model's", name)
		}
		if dir == "" {
			return nil, fmt.Errorf("service: register model %q: empty folder", name)
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, fmt.Errorf("service: register model %q: %w", name, err)
		}
		r.models[name] = &baseModel{name: name, dir: abs}
	}
	return r, nil
}

func checkModelName(name string) error {
	if name == "" || len(name) > 128 {
		return fmt.Errorf("must be 1 to 128 characters")
	}
	for _, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '/'
		if !ok {
			return fmt.Errorf("must be letters, digits and - _ . / only")
		}
	}
	return nil
}

func (r *registry) get(name string) (*baseModel, bool) {
	b, ok := r.models[name]
	return b, ok
}

func (r *registry) names() []string {
	out := make([]string, 0, len(r.models))
	for n := range r.models {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// decoder adapts a tokenizer to engine.Decoder (nil when there is none).
func decoder(t tokenizer.Tokenizer) engine.Decoder {
	if t == nil {
		return nil
	}
	return t
}
