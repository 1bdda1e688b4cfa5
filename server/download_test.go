package server

import (
	"testing"

	"github.com/tensafe/tensafe/api"
)

// TestDownloadExt: a TSSP package downloads as .tssp, a checkpoint as .ckpt.
func TestDownloadExt(t *testing.T) {
	for _, c := range []struct{ kind, want string }{
		{api.ArtifactKindTSSP, ".tssp"},
		{"checkpoint", ".ckpt"},
		{"", ".ckpt"},
	} {
		if got := downloadExt(c.kind); got != c.want {
			t.Errorf("downloadExt(%q) = %q, want %q", c.kind, got, c.want)
		}
	}
}
