package seal

import (
	"encoding/base64"
	"fmt"
	"strings"
)

// b64 is the alphabet of every text encoding in this package: unpadded
// base64url (RFC 4648 §5), strict (no line breaks, canonical trailing bits).
var b64 = base64.RawURLEncoding.Strict()

// decodeText strips prefix from s (after trimming white space) and decodes
// the rest. Errors never quote the input, which may be a secret key.
func decodeText(s, prefix string) ([]byte, error) {
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return nil, fmt.Errorf("text form must start with %q", prefix)
	}
	b, err := b64.DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("text form after %q is not unpadded base64url", prefix)
	}
	return b, nil
}
