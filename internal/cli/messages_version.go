package cli

// msgVersion is the message_type of `version --json`.
const msgVersion = "version"

// VersionMessage is what `version --json` prints: which build is running, for bug reports and for
// checking a fleet runs the release it should. Version is also what manifests record as the tool
// ("cfbackup v1.2.3").
type VersionMessage struct {
	// MessageType is "version".
	MessageType string `json:"message_type"`
	// Version is the release version (v1.2.3), the module version of a `go install …@v1.2.3` build,
	// or "dev" for a build from a checkout without a version.
	Version string `json:"version"`
	// Commit is the VCS revision the binary was built from; absent when unknown (go install).
	Commit string `json:"commit,omitempty"`
	// Dirty is true when the checkout had uncommitted changes at build time.
	Dirty bool `json:"dirty,omitempty"`
	// Date is the build time (RFC 3339; without a stamped date, the commit's time); absent when unknown.
	Date string `json:"date,omitempty"`
	// GoVersion is the Go toolchain that built the binary.
	GoVersion string `json:"go_version"`
	// Platform is GOOS/GOARCH.
	Platform string `json:"platform"`
}
