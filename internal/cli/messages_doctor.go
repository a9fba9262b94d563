package cli

import "github.com/cfbackup/cfbackup/pkg/source"

// msgDoctor is the message_type of 'doctor --json'.
const msgDoctor = "doctor"

// DoctorMessage is what `doctor --json` prints: every check made, in order, each with its status
// and fix. OK is false when a check failed (the run then exits with the failure's code).
type DoctorMessage struct {
	// MessageType is "doctor".
	MessageType string `json:"message_type"`
	OK          bool   `json:"ok"`
	// Role is the role checked with --role (docs/ROLES.md); empty without it.
	Role string `json:"role,omitempty"`
	// Components are the components checked (besides the repository and the Cloudflare token).
	Components []string `json:"components"`
	// Counts of findings by status: ok, warn, fail, skip.
	Counts map[string]int `json:"counts"`
	// Findings are the checks, grouped by what they are about: cloudflare, repository, then each component.
	Findings []DoctorFinding `json:"findings"`
	RunError
}

// DoctorFinding is one check: what it is about, what was checked and found, and the fix.
type DoctorFinding struct {
	source.Finding
	// Class is the error class of a failure ("key problem", "remote API problem"), which sets the
	// exit code (docs/EXIT_CODES.md); empty for anything but status fail.
	Class string `json:"class,omitempty"`
}
