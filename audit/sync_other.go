//go:build !linux

package audit

import "os"

// syncData flushes f to stable storage (fsync; on macOS Go's File.Sync uses
// F_FULLFSYNC).
func syncData(f *os.File) error { return f.Sync() }
