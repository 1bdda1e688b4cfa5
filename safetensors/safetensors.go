// Package safetensors reads and writes the safetensors file format used by
// Hugging Face for model weights and by PEFT for LoRA adapters.
//
// The format is an 8-byte little-endian header length, a JSON header that maps
// tensor names to dtype, shape and byte offsets (plus an optional
// "__metadata__" map of strings), then the raw little-endian tensor bytes.
// See https://github.com/huggingface/safetensors. Files come from outside
// (user checkpoints, adapters), so the reader checks every offset, size and
// shape before it trusts them.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
)

// MaxHeaderSize bounds the JSON header a reader accepts (100 MB, the limit
// the reference implementation uses).
const MaxHeaderSize = 100 << 20

// DType names a tensor element type as the header spells it.
type DType string

// Element types TenSafe understands.
const (
	F32  DType = "F32"
	F16  DType = "F16"
	BF16 DType = "BF16"
	F64  DType = "F64"
	I64  DType = "I64"
	I32  DType = "I32"
	U8   DType = "U8"
	BOOL DType = "BOOL"
)

// Size returns the byte size of one element, or 0 for an unknown dtype.
func (d DType) Size() int {
	switch d {
	case F64, I64:
		return 8
	case F32, I32:
		return 4
	case F16, BF16:
		return 2
	case U8, BOOL:
		return 1
	}
	return 0
}

// Tensor is one named tensor: its dtype, shape and raw little-endian bytes.
type Tensor struct {
	DType DType
	Shape []int
	Data  []byte
}

// NumElements returns the product of the shape's dimensions.
func (t *Tensor) NumElements() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Float32 converts the tensor's elements to float32. F32, F16, BF16 and F64
// are supported.
func (t *Tensor) Float32() ([]float32, error) {
	n := t.NumElements()
	out := make([]float32, n)
	switch t.DType {
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
		}
	case BF16:
		for i := range out {
			out[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(t.Data[2*i:])) << 16)
		}
	case F16:
		for i := range out {
			out[i] = halfToFloat32(binary.LittleEndian.Uint16(t.Data[2*i:]))
		}
	case F64:
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(t.Data[8*i:])))
		}
	default:
		return nil, fmt.Errorf("safetensors: dtype %s is not a floating-point type", t.DType)
	}
	return out, nil
}

// FromFloat32 makes an F32 tensor.
func FromFloat32(shape []int, values []float32) *Tensor {
	data := make([]byte, 4*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v))
	}
	return &Tensor{DType: F32, Shape: slices.Clone(shape), Data: data}
}

func halfToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	frac := uint32(h) & 0x3ff
	switch {
	case exp == 0 && frac == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal
		f := float32(frac) / 1024 * float32(math.Pow(2, -14))
		if sign != 0 {
			return -f
		}
		return f
	case exp == 0x1f:
		return math.Float32frombits(sign | 0xff<<23 | frac<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | frac<<13)
}

// File is a parsed safetensors file.
type File struct {
	Metadata map[string]string
	Tensors  map[string]*Tensor
}

// Names returns the tensor names in sorted order.
func (f *File) Names() []string {
	names := make([]string, 0, len(f.Tensors))
	for n := range f.Tensors {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

type headerEntry struct {
	DType       DType    `json:"dtype"`
	Shape       []int    `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"`
}

// ReadFile reads and parses a safetensors file.
func ReadFile(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	f, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	return f, nil
}

// Parse parses a whole safetensors file held in memory. Tensor data slices
// alias data.
func Parse(data []byte) (*File, error) {
	if len(data) < 8 {
		return nil, errors.New("safetensors: file shorter than its 8-byte header length")
	}
	n := binary.LittleEndian.Uint64(data)
	if n > MaxHeaderSize || n > uint64(len(data)-8) {
		return nil, fmt.Errorf("safetensors: header length %d exceeds the file or the %d-byte limit", n, MaxHeaderSize)
	}
	header := data[8 : 8+n]
	body := data[8+n:]
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(header, &raw); err != nil {
		return nil, fmt.Errorf("safetensors: header: %w", err)
	}
	f := &File{Tensors: make(map[string]*Tensor, len(raw))}
	type span struct {
		name       string
		start, end int64
	}
	var spans []span
	for name, msg := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &f.Metadata); err != nil {
				return nil, fmt.Errorf("safetensors: __metadata__ must map strings to strings: %w", err)
			}
			continue
		}
		var e headerEntry
		dec := json.NewDecoder(bytes.NewReader(msg))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			return nil, fmt.Errorf("safetensors: tensor %q: %w", name, err)
		}
		size := e.DType.Size()
		if size == 0 {
			return nil, fmt.Errorf("safetensors: tensor %q: unsupported dtype %q", name, e.DType)
		}
		elems := int64(1)
		for _, d := range e.Shape {
			if d < 0 || (d > 0 && elems > math.MaxInt32*int64(256)/int64(d)) {
				return nil, fmt.Errorf("safetensors: tensor %q: invalid shape %v", name, e.Shape)
			}
			elems *= int64(d)
		}
		start, end := e.DataOffsets[0], e.DataOffsets[1]
		if start < 0 || end < start || end > int64(len(body)) {
			return nil, fmt.Errorf("safetensors: tensor %q: data offsets [%d, %d] outside the %d-byte body", name, start, end, len(body))
		}
		if end-start != elems*int64(size) {
			return nil, fmt.Errorf("safetensors: tensor %q: %d bytes for shape %v of %s", name, end-start, e.Shape, e.DType)
		}
		f.Tensors[name] = &Tensor{DType: e.DType, Shape: e.Shape, Data: body[start:end]}
		spans = append(spans, span{name, start, end})
	}
	// Tensors must not overlap (the reference implementation also requires
	// them to cover the body contiguously).
	sort.Slice(spans, func(i, j int) bool { return spans[i].start < spans[j].start })
	var pos int64
	for _, s := range spans {
		if s.start != pos {
			return nil, fmt.Errorf("safetensors: tensor %q starts at %d, expected %d (gap or overlap)", s.name, s.start, pos)
		}
		pos = s.end
	}
	if pos != int64(len(body)) {
		return nil, fmt.Errorf("safetensors: %d trailing bytes after the last tensor", int64(len(body))-pos)
	}
	return f, nil
}

// Write writes tensors (sorted by name, so the output is deterministic) and
// metadata in safetensors format.
func Write(w io.Writer, tensors map[string]*Tensor, metadata map[string]string) error {
	names := make([]string, 0, len(tensors))
	for n := range tensors {
		names = append(names, n)
	}
	sort.Strings(names)
	header := make(map[string]any, len(names)+1)
	if len(metadata) > 0 {
		header["__metadata__"] = metadata
	}
	var off int64
	for _, n := range names {
		t := tensors[n]
		if len(t.Data) != t.NumElements()*t.DType.Size() {
			return fmt.Errorf("safetensors: write %q: %d bytes for shape %v of %s", n, len(t.Data), t.Shape, t.DType)
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		header[n] = headerEntry{DType: t.DType, Shape: shape, DataOffsets: [2]int64{off, off + int64(len(t.Data))}}
		off += int64(len(t.Data))
	}
	hb, err := json.Marshal(header) // encoding/json sorts map keys
	if err != nil {
		return fmt.Errorf("safetensors: write header: %w", err)
	}
	// Pad the header with spaces to an 8-byte boundary, as the reference does.
	for len(hb)%8 != 0 {
		hb = append(hb, ' ')
	}
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(hb)))
	if _, err := w.Write(lenBuf[:]); err != nil {
		return fmt.Errorf("safetensors: write: %w", err)
	}
	if _, err := w.Write(hb); err != nil {
		return fmt.Errorf("safetensors: write: %w", err)
	}
	for _, n := range names {
		if _, err := w.Write(tensors[n].Data); err != nil {
			return fmt.Errorf("safetensors: write %q: %w", n, err)
		}
	}
	return nil
}
