// Package buildinfo says which build of cfbackup (or cfemu) is running: version, commit and build
// date, set with -ldflags -X by the Makefile, goreleaser and the Dockerfile, and otherwise read from
// the module and VCS information the Go toolchain embeds, so a `go install …@vX` build reports vX
// (and records it in manifests) instead of "dev".
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// Set with -ldflags "-X github.com/cfbackup/cfbackup/internal/buildinfo.version=v1.2.3" (and commit,
// date). Empty means "not stamped": Get falls back to debug.ReadBuildInfo.
var (
	version string
	commit  string
	date    string
)

// Dev is the version of a build that has neither a stamped version nor a module version (go run, go
// build in a checkout without VCS information).
const Dev = "dev"

// Info is one build's identity.
type Info struct {
	// Version is the release version (v1.2.3), the module version of a `go install …@v1.2.3` build,
	// or "dev".
	Version string `json:"version"`
	// Commit is the VCS revision the binary was built from ("" when unknown).
	Commit string `json:"commit,omitempty"`
	// Dirty is true when the checkout had uncommitted changes at build time.
	Dirty bool `json:"dirty,omitempty"`
	// Date is when the binary was built, RFC 3339 (for a build without a stamped date: the commit's
	// time); "" when unknown.
	Date string `json:"date,omitempty"`
	// GoVersion is the Go toolchain that built the binary.
	GoVersion string `json:"go_version"`
	// Platform is GOOS/GOARCH.
	Platform string `json:"platform"`
}

// Get is the running binary's build info: stamped values first, then the embedded module and VCS
// information.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return resolve(version, commit, date, bi)
}

// resolve merges the stamped values with bi (nil when the binary has no build info).
func resolve(version, commit, date string, bi *debug.BuildInfo) Info {
	// goreleaser stamps "none" and the zero time when it could not read the git state (a snapshot
	// in a clone without a remote): that is "unknown", not a commit.
	if commit == "none" {
		commit = ""
	}
	if strings.HasPrefix(date, "0001-01-01") {
		date = ""
	}
	in := Info{Version: version, Commit: commit, Date: date, GoVersion: runtime.Version(),
		Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi == nil {
		if in.Version == "" {
			in.Version = Dev
		}
		return in
	}
	if bi.GoVersion != "" {
		in.GoVersion = bi.GoVersion
	}
	if in.Version == "" {
		in.Version = moduleVersion(bi.Main.Version)
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if in.Commit == "" {
				in.Commit = s.Value
			}
		case "vcs.time":
			if in.Date == "" {
				in.Date = s.Value
			}
		case "vcs.modified":
			in.Dirty = s.Value == "true"
		}
	}
	return in
}

// moduleVersion is the main module's version, or Dev for a build outside module mode or from a
// working tree without a version ("(devel)").
func moduleVersion(v string) string {
	if v == "" || v == "(devel)" {
		return Dev
	}
	return strings.TrimSuffix(v, "+incompatible")
}

// Version is Get().Version: what manifests record after the tool name ("cfbackup v1.2.3").
func Version() string { return Get().Version }
