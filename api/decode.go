package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// MaxRequestBytes is the default bound on a request body.
const MaxRequestBytes = 8 << 20

// ErrTooLarge is matched by the *DecodeError of a body over the limit
// (HTTP 413, code request_too_large).
var ErrTooLarge = errors.New("api: request body too large")

// DecodeError reports a request body that does not decode. Field is the
// JSON path of the offending field when there is one. It never quotes the
// body.
type DecodeError struct {
	Field  string
	Reason string
	tooBig bool
}

func (e *DecodeError) Error() string {
	if e.Field != "" {
		return "field " + e.Field + ": " + e.Reason
	}
	return e.Reason
}

// Is makes a body over the limit match ErrTooLarge.
func (e *DecodeError) Is(target error) bool { return e.tooBig && target == ErrTooLarge }

// Decode reads one JSON object from r, at most max bytes (max ≤ 0 means
// MaxRequestBytes), into v. It is strict: unknown fields, trailing data,
// a body that is not an object and values of the wrong type are errors
// naming the field. Errors are *DecodeError.
func Decode(r io.Reader, max int64, v any) error {
	if max <= 0 {
		max = MaxRequestBytes
	}
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return &DecodeError{Reason: "reading the body: " + err.Error()}
	}
	if int64(len(data)) > max {
		return &DecodeError{Reason: fmt.Sprintf("body exceeds %d bytes", max), tooBig: true}
	}
	return DecodeBytes(data, v)
}

// DecodeBytes is Decode of a body already read.
func DecodeBytes(data []byte, v any) error {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 {
		return &DecodeError{Reason: "body is empty; send a JSON object"}
	}
	if trimmed[0] != '{' {
		return &DecodeError{Reason: "body is not a JSON object"}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeErr(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return &DecodeError{Reason: "trailing data after the JSON object"}
	}
	return nil
}

func decodeErr(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return &DecodeError{Reason: fmt.Sprintf("malformed JSON at byte %d", syn.Offset)}
	case errors.As(err, &typ):
		want := typ.Type.String()
		switch typ.Type.Kind().String() {
		case "int", "int64", "uint64", "int32":
			want = "an integer"
		case "float64":
			want = "a number"
		case "string":
			want = "a string"
		case "slice":
			want = "an array"
		case "struct", "map":
			want = "an object"
		case "bool":
			want = "true or false"
		}
		return &DecodeError{Field: typ.Field, Reason: fmt.Sprintf("must be %s, got %s", want, typ.Value)}
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return &DecodeError{Reason: "malformed JSON: unexpected end of the body"}
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return &DecodeError{Field: strings.Trim(f, `"`), Reason: "unknown field"}
	}
	return &DecodeError{Reason: "malformed request: " + strings.TrimPrefix(msg, "json: ")}
}
