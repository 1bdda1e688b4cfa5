//go:build !unix

package store

// lockPath is a no-op where flock(2) is not available: one process per
// database is then the operator's responsibility.
func lockPath(path string) (release func() error, err error) {
	return func() error { return nil }, nil
}
