package source

import (
	"context"

	"github.com/cfbackup/cfbackup/pkg/errclass"
)

// Status is the outcome of one doctor check.
type Status string

// The statuses of a Finding, from harmless to blocking.
const (
	// StatusOK: the check passed.
	StatusOK Status = "ok"
	// StatusSkip: the check did not apply, or could not be made without writing (the detail says
	// which); nothing was proven either way.
	StatusSkip Status = "skip"
	// StatusWarn: works today, but something will bite (a stale lock, a clock drifting).
	StatusWarn Status = "warn"
	// StatusFail: a backup or restore on this host would fail; doctor exits non-zero.
	StatusFail Status = "fail"
)

// Finding is one check of 'cfbackup doctor': what was checked, what was found and what to do about
// it. Findings are data, not text, so a later check per role (which permissions a role needs) can
// filter them by Component, Permission and Needed.
type Finding struct {
	// Component is what the finding is about: "cloudflare", "repository" or a component name.
	Component string `json:"component"`
	// Check is a stable identifier of the check ("token.verify", "permission.d1.read", "s3.put").
	Check  string `json:"check"`
	Status Status `json:"status"`
	// Detail says what was checked and what was found; never a secret's value.
	Detail string `json:"detail"`
	// Fix says what to do when Status is warn or fail.
	Fix string `json:"fix,omitempty"`
	// Permission is the Cloudflare token permission the check proves or lacks ("D1 Read"), if any.
	Permission string `json:"permission,omitempty"`
	// Needed lists the verbs that need what was checked ("backup", "restore").
	Needed []Verb `json:"needed_for,omitempty"`
	// Class is the error class of a failure (its exit code); nil for anything but StatusFail.
	Class *errclass.Class `json:"-"`
}

// DiagnoseRequest is what doctor hands each component.
type DiagnoseRequest struct {
	// Env gives the settings and the Cloudflare client, as for a backup.
	Env Env
	// TokenOK is false when the Cloudflare token is missing or was rejected: the component then
	// skips its API probes (the cloudflare findings already say what to fix).
	TokenOK bool
}

// Diagnoser is implemented by a component that can check, without writing anything, that this host
// can back it up and restore it: the API permissions it needs, the endpoints it talks to. doctor
// iterates the registry and asks each component that implements it.
type Diagnoser interface {
	Diagnose(ctx context.Context, req DiagnoseRequest) []Finding
}

// OK makes a passing finding.
func OK(component, check, detail string) Finding {
	return Finding{Component: component, Check: check, Status: StatusOK, Detail: detail}
}

// Fail makes a blocking finding of class c with its fix.
func Fail(component, check string, c *errclass.Class, detail, fix string) Finding {
	return Finding{Component: component, Check: check, Status: StatusFail, Detail: detail, Fix: fix, Class: c}
}

// Warn makes a finding that does not block but needs attention.
func Warn(component, check, detail, fix string) Finding {
	return Finding{Component: component, Check: check, Status: StatusWarn, Detail: detail, Fix: fix}
}

// Skip makes a finding for a check that did not apply or cannot be made without writing.
func Skip(component, check, detail string) Finding {
	return Finding{Component: component, Check: check, Status: StatusSkip, Detail: detail}
}
