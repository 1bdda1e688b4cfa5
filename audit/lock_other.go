//go:build !unix

package audit

import (
	"errors"
	"os"
)

// lockFile fails: FileStore relies on flock(2) to keep a single writer, and
// this platform has none that we use.
func lockFile(f *os.File) error {
	return errors.New("file locking is implemented only on Unix systems")
}
