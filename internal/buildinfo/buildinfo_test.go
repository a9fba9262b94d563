package buildinfo

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestResolve(t *testing.T) {
	vcs := []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.time", Value: "2026-12-01T10:00:00Z"}, {Key: "vcs.modified", Value: "true"}}
	for name, c := range map[string]struct {
		version, commit, date string
		bi                    *debug.BuildInfo
		want                  Info
	}{
		"no build info":          {want: Info{Version: Dev}},
		"stamped":                {version: "v1.2.3", commit: "c0ffee", date: "2026-12-02T00:00:00Z", bi: &debug.BuildInfo{Main: debug.Module{Version: "v9.9.9"}, Settings: vcs}, want: Info{Version: "v1.2.3", Commit: "c0ffee", Date: "2026-12-02T00:00:00Z", Dirty: true}},
		"go install @v1.4.0":     {bi: &debug.BuildInfo{Main: debug.Module{Path: "github.com/cfbackup/cfbackup", Version: "v1.4.0"}}, want: Info{Version: "v1.4.0"}},
		"checkout, no tag":       {bi: &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs}, want: Info{Version: Dev, Commit: "abc123", Date: "2026-12-01T10:00:00Z", Dirty: true}},
		"pseudo-version":         {bi: &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261201100000-abc123abc123"}}, want: Info{Version: "v0.0.0-20261201100000-abc123abc123"}},
		"+incompatible":          {bi: &debug.BuildInfo{Main: debug.Module{Version: "v2.0.0+incompatible"}}, want: Info{Version: "v2.0.0"}},
		"goreleaser without git": {version: "v0.0.1-next", commit: "none", date: "0001-01-01T00:00:00Z", bi: &debug.BuildInfo{Settings: vcs[:2]}, want: Info{Version: "v0.0.1-next", Commit: "abc123", Date: "2026-12-01T10:00:00Z"}},
		"go run (no version)":    {bi: &debug.BuildInfo{}, want: Info{Version: Dev}},
	} {
		got := resolve(c.version, c.commit, c.date, c.bi)
		c.want.GoVersion, c.want.Platform = runtime.Version(), runtime.GOOS+"/"+runtime.GOARCH
		if got != c.want {
			t.Errorf("%s: %+v, want %+v", name, got, c.want)
		}
	}
}

// TestGet: the test binary has build info, so Get reports this toolchain and platform.
func TestGet(t *testing.T) {
	in := Get()
	if in.Version == "" || in.GoVersion != runtime.Version() || in.Platform != runtime.GOOS+"/"+runtime.GOARCH {
		t.Fatalf("%+v", in)
	}
}
