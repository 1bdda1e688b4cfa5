package tssp

import (
	"archive/tar"
	"bytes"
	"fmt"
	"time"
)

// The container is a USTAR archive (POSIX.1-1988) in which every header is
// fixed but for the member's name and size: regular file, mode 0644, uid and
// gid 0, no user or group names, modification time 0 (1970-01-01). Each
// member's data is padded with zeros to a multiple of 512 bytes, and two
// zero blocks end the archive; nothing follows them. Any tar tool lists and
// extracts a package; a reader accepts only this one spelling.

const blockSize = 512

// memberHeader returns the 512-byte USTAR header of a member.
func memberHeader(name string, size int64) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Size:     size,
		Mode:     0o644,
		ModTime:  time.Unix(0, 0),
		Format:   tar.FormatUSTAR,
	})
	if err != nil {
		return nil, fmt.Errorf("tssp: archive header for %s: %w", name, err)
	}
	// The header is flushed by WriteHeader; data and the end blocks are not
	// written.
	if buf.Len() != blockSize {
		return nil, fmt.Errorf("tssp: archive header for %s is %d bytes", name, buf.Len())
	}
	return buf.Bytes(), nil
}

// parseHeader reads the name and size of a member header and checks that
// the header is exactly the one memberHeader writes.
func parseHeader(h []byte) (name string, size int64, err error) {
	if len(h) != blockSize {
		return "", 0, fmt.Errorf("%w: header is %d bytes", ErrMalformed, len(h))
	}
	n := bytes.IndexByte(h[:100], 0)
	if n <= 0 {
		return "", 0, fmt.Errorf("%w: header name field", ErrMalformed)
	}
	name = string(h[:n])
	// Size: 11 octal digits and a NUL, as archive/tar writes USTAR.
	f := h[124:136]
	if f[11] != 0 {
		return "", 0, fmt.Errorf("%w: member %q: size field", ErrMalformed, name)
	}
	for _, c := range f[:11] {
		if c < '0' || c > '7' {
			return "", 0, fmt.Errorf("%w: member %q: size field", ErrMalformed, name)
		}
		size = size<<3 | int64(c-'0')
	}
	want, err := memberHeader(name, size)
	if err != nil {
		return "", 0, fmt.Errorf("%w: member %q: %v", ErrMalformed, name, err)
	}
	if !bytes.Equal(h, want) {
		return "", 0, fmt.Errorf("%w: member %q: header is not the canonical USTAR header", ErrMalformed, name)
	}
	return name, size, nil
}

// padding returns the number of zero bytes after size bytes of data.
func padding(size int64) int64 {
	return (blockSize - size%blockSize) % blockSize
}
