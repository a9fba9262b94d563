package source

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/cfbackup/cfbackup/pkg/cloudflare"
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
	// Explicit is true when the operator named the component (--component): a component that is
	// not configured on this host then fails instead of being skipped.
	Explicit bool
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

// APIUser is implemented by a Diagnoser whose component calls the Cloudflare REST API, so doctor
// checks the token (present, valid) only when a selected component needs one.
type APIUser interface {
	UsesCloudflareAPI() bool
}

// ProbeRequest is one harmless read that proves a token permission.
type ProbeRequest struct {
	Component string
	// Path is relative to accounts/<id>/ ("d1/database"); it is listed with per_page=1.
	Path       string
	Permission string
	Needed     []Verb
	// Severity is the status when the permission is missing (default StatusFail).
	Severity Status
	// Optional makes a missing permission a warning: the operator did not name the component, so this
	// host may not back it up at all.
	Optional bool
}

// Probe lists one item of an account endpoint with the token and turns the answer into a finding
// that names the permission: ok when the listing works, fail (or p.Severity) naming the permission
// to add when Cloudflare refuses it (403, codes 10000 / 9109).
func Probe(ctx context.Context, cl *cloudflare.Client, p ProbeRequest) Finding {
	check := "permission." + strings.ToLower(strings.ReplaceAll(p.Permission, " ", "_"))
	q := url.Values{"per_page": {"1"}}
	err := cl.Probe(ctx, p.Path, q)
	f := Finding{Component: p.Component, Check: check, Permission: p.Permission, Needed: p.Needed}
	switch {
	case err == nil:
		f.Status, f.Detail = StatusOK, "the token holds "+p.Permission+" (GET "+p.Path+"?per_page=1 answered)"
		return f
	case errors.Is(err, cloudflare.ErrAuth):
		f.Detail = "the token lacks " + p.Permission + ": " + err.Error()
		f.Fix = fmt.Sprintf("add the permission %q to the API token (dashboard → My Profile → API Tokens → Edit), for account %s", p.Permission, cl.AccountID())
		f.Class = errclass.Remote
		if p.Optional && p.Severity == "" {
			p.Severity = StatusWarn
			f.Detail += " (needed only if this host backs up or restores " + p.Component + "; name it with --component to require it)"
		}
	default:
		f.Detail = "could not check " + p.Permission + ": " + err.Error()
		f.Fix = "check network access to the Cloudflare API and CLOUDFLARE_ACCOUNT_ID"
		f.Class = errclass.Of(err)
		if f.Class == nil {
			f.Class = errclass.Remote
		}
	}
	f.Status = StatusFail
	if p.Severity != "" {
		f.Status = p.Severity
	}
	if f.Status != StatusFail {
		f.Class = nil
	}
	return f
}

// Unprovable is the honest finding for a permission that only a write could prove (D1 Edit, KV
// Write): doctor writes nothing to the account, so the first backup or restore that needs it is
// the check.
func Unprovable(component, permission string, needed []Verb, why string) Finding {
	return Finding{Component: component, Check: "permission." + strings.ToLower(strings.ReplaceAll(permission, " ", "_")), Status: StatusSkip,
		Permission: permission, Needed: needed,
		Detail: permission + " is not checkable without writing (" + why + "); it will be checked by the first run that needs it"}
}

// NotConfigured is the finding for a component whose settings are missing on this host: a skip when
// doctor checks every component, a failure when the operator named it with --component.
func NotConfigured(req DiagnoseRequest, component, check, detail, fix string) Finding {
	if req.Explicit {
		return Fail(component, check, errclass.Usage, detail, fix)
	}
	f := Skip(component, check, detail+" (not configured on this host; name it with --component to require it)")
	f.Fix = fix
	return f
}

// NoToken is the finding a component returns instead of its API probes when the token is missing or
// rejected: the cloudflare findings say what to fix.
func NoToken(component string) Finding {
	return Skip(component, "permissions", "not probed: the Cloudflare API token is missing or rejected (see the cloudflare findings)")
}

// ProbeAll runs a component's permission probes with the run's Cloudflare client and appends the
// permissions only a write could prove; with no usable token it returns NoToken instead.
func ProbeAll(ctx context.Context, req DiagnoseRequest, component string, probes []ProbeRequest, unprovable ...Finding) []Finding {
	if !req.TokenOK {
		return []Finding{NoToken(component)}
	}
	cl, err := req.Env.Cloudflare()
	if err != nil {
		return []Finding{Fail(component, "permissions", errclass.Remote, err.Error(), "set CLOUDFLARE_API_TOKEN and CLOUDFLARE_ACCOUNT_ID")}
	}
	var out []Finding
	for _, p := range probes {
		p.Component = component
		// Not every host backs up every component: unasked, a missing permission is a warning.
		p.Optional = p.Optional || !req.Explicit
		out = append(out, Probe(ctx, cl, p))
	}
	return append(out, unprovable...)
}
