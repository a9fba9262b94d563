package main

import (
	"bytes"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/cfbackup/cfbackup/internal/buildinfo"
)

// TestVersion: --version prints the build info (the release's version when stamped) and exits 0
// without starting a server.
func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if code := Main([]string{"--version"}, &out, io.Discard); code != 0 {
		t.Fatalf("exit %d", code)
	}
	want := "cfemu " + buildinfo.Version() + " (commit "
	if !strings.HasPrefix(out.String(), want) || !strings.Contains(out.String(), runtime.GOOS+"/"+runtime.GOARCH) {
		t.Fatalf("--version printed %q, want %q…", out.String(), want)
	}
	if got := versionLine(buildinfo.Info{Version: "v1.2.3", Commit: "abc", Date: "2026-12-03T00:00:00Z", GoVersion: "go1.26.8", Platform: "linux/arm64"}); got != "cfemu v1.2.3 (commit abc, built 2026-12-03T00:00:00Z, go1.26.8, linux/arm64)\n" {
		t.Fatalf("versionLine: %q", got)
	}
}
