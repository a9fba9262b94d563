package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/pkg/doctor"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/source"
)

// DoctorOptions are the flags of 'doctor'.
type DoctorOptions struct {
	f          *Factory
	Components []string
	// Role is --role: check this host against a role's least privilege (docs/ROLES.md).
	Role string
}

// NewCmdDoctor checks what this host can do before a backup or a restore has to find out.
func NewCmdDoctor(f *Factory, runF func(*DoctorOptions) error) *cobra.Command {
	o := &DoctorOptions{f: f}
	cmd := &cobra.Command{
		Use:   "doctor [--component d1,do,r2,config,kv] [--role NAME]",
		Short: "Check what this host can do: token permissions, repository, keys, locks, clock, endpoints",
		Long: `Check, component by component, whether this host can back up and restore, and say how to fix
what it cannot. Every check is a finding: ok, warn, fail or skip, with what was checked and the fix.

  cloudflare   CLOUDFLARE_API_TOKEN set and valid (/user/tokens/verify)
  repository   reachable, format, config.json authenticated with the writer secret, the identity
               (--identity-file) one of the recipients, locks held or stale, the clock against the
               S3 server's Date header, the store's credentials (put, get, list, delete, conditional
               create on a scratch object under doctor/, always removed), Object Lock
  d1, kv, …    each component's token permissions, proven by harmless reads (a list of one item);
               a permission only a write could prove (D1 Edit, KV Write) is reported as unproven.
               do: the Worker module answers a signed request; r2: the R2 keys read the buckets

Without --component every component is checked: one not configured on this host is skipped and a
permission it lacks is a warning. A component named with --component must be configured and hold
its permissions: name the components this host serves. Nothing in the account is written; secrets
are never printed.

With --role NAME (backup-host, verifier, restorer, approver, admin, auditor; docs/ROLES.md) the
host is also checked against the role's least privilege: an age identity, a writer secret, a
Cloudflare token or a token permission group the role must not hold, S3 credentials that may write
or delete what the role must not, each a failure naming what to drop. Exits 0 when nothing failed (warnings do not fail), else with the exit code of the
first failure's class (docs/EXIT_CODES.md; docs/DOCTOR.md).`,
		Example: `  cfbackup doctor
  cfbackup doctor --component d1,r2 --identity-file ~/.config/cfbackup/key.txt
  cfbackup doctor --json | jq '.findings[] | select(.status == "fail")'
  cfbackup doctor --role backup-host --component d1,kv`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(o)
			}
			return doctorRun(cmd.Context(), o)
		},
	}
	cmd.Flags().StringSliceVar(&o.Components, "component", nil, "components to check (default: all: "+strings.Join(source.Names(), ",")+")")
	cmd.Flags().StringVar(&o.Role, "role", "", "also check that this host holds no more than role NAME needs: "+strings.Join(doctor.RoleNames(), ", ")+" (docs/ROLES.md)")
	return cmd
}

func doctorRun(ctx context.Context, o *DoctorOptions) error {
	f := o.f
	role, err := doctorRole(o.Role)
	if err != nil {
		return err
	}
	names, explicit, err := doctorComponents(o.Components)
	if err != nil {
		return err
	}
	if role != nil && (role.Token == doctor.Forbidden || role.Token == doctor.Optional && f.cfg.CloudflareAPIToken == "") {
		names, explicit = []string{}, false // a role without a token backs up and restores no component
	}
	var diags []source.Diagnoser
	usesAPI := false
	for _, n := range names {
		c, err := source.New(n)
		if err != nil {
			return usageError{err}
		}
		if d, ok := c.(source.Diagnoser); ok {
			diags = append(diags, d)
			if u, ok := d.(source.APIUser); ok && u.UsesCloudflareAPI() {
				usesAPI = true
			}
		}
	}
	var findings []source.Finding
	tokenOK := false
	if usesAPI {
		var cf []source.Finding
		cf, tokenOK = doctor.CheckCloudflare(ctx, doctor.CloudflareOptions{
			TokenSet: f.cfg.CloudflareAPIToken != "", AccountSet: f.cfg.CloudflareAccountID != "", Client: f.Cloudflare,
		})
		findings = append(findings, cf...)
	}
	findings = append(findings, doctorRepository(ctx, f, role)...)
	req := source.DiagnoseRequest{Env: f.Env(), TokenOK: tokenOK, Explicit: explicit}
	for _, d := range diags {
		findings = append(findings, d.Diagnose(ctx, req)...)
	}
	if role != nil {
		findings = append(findings, doctorRoleFindings(ctx, f, *role)...)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	msg := doctorMessage(names, findings)
	msg.Role = o.Role
	if f.jsonOut {
		if err := writeJSON(f.IO.Out, msg); err != nil {
			return err
		}
	} else {
		printDoctor(f.IO.Out, msg)
	}
	return doctorErr(findings)
}

// doctorComponents resolves --component (comma-separated or repeated); every registered one when empty.
func doctorComponents(flag []string) (names []string, explicit bool, err error) {
	for _, n := range flag {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if !source.Registered(n) {
			return nil, false, usageError{fmt.Errorf("--component %q: no such component; choose from %s", n, strings.Join(source.Names(), ", "))}
		}
		names = append(names, n)
	}
	if len(names) == 0 {
		return source.Names(), false, nil
	}
	return names, true, nil
}

// doctorRepository runs the repository checks with the same store, key lookup and identity every
// command uses.
func doctorRepository(ctx context.Context, f *Factory, role *doctor.Role) []source.Finding {
	st, err := f.Store(ctx)
	if err != nil {
		return []source.Finding{source.Fail(doctor.Repository, "reachable", classOr(err, errclass.Usage), err.Error(),
			"check --repo / CFBACKUP_REPOSITORY (a path, file://PATH or s3://BUCKET/PREFIX) and the S3 settings")}
	}
	o := doctor.RepoOptions{Store: st, Open: f.OpenRepo, Log: f.Log(), Role: role}
	if p := f.cfg.IdentityFile; p != "" {
		o.IdentitySource = "file " + filepath.Base(p)
		o.Identities, o.IdentityErr = f.Identities(true)
	}
	if strings.HasPrefix(f.cfg.Repository, "s3://") {
		o.Clock = &doctor.ClockCheck{URL: s3EndpointOf(f)}
	}
	return doctor.CheckRepository(ctx, o)
}

// s3EndpointOf is the S3 server the repository's requests go to (for its Date header).
func s3EndpointOf(f *Factory) string {
	if e := f.cfg.S3Endpoint; e != "" {
		if u, err := url.Parse(e); err == nil && u.Scheme != "" {
			return e
		}
		return "https://" + e
	}
	region := f.cfg.S3Region
	if region == "" {
		region = "us-east-1"
	}
	return "https://s3." + region + ".amazonaws.com"
}

func classOr(err error, c *errclass.Class) *errclass.Class {
	if x := errclass.Of(err); x != nil {
		return x
	}
	return c
}

func doctorMessage(names []string, findings []source.Finding) *DoctorMessage {
	msg := &DoctorMessage{MessageType: msgDoctor, OK: true, Components: names, Findings: []DoctorFinding{},
		Counts: map[string]int{string(source.StatusOK): 0, string(source.StatusWarn): 0, string(source.StatusFail): 0, string(source.StatusSkip): 0}}
	for _, x := range findings {
		df := DoctorFinding{Finding: x}
		if x.Status == source.StatusFail {
			msg.OK = false
			df.Class = classOf(x).Name()
		}
		msg.Counts[string(x.Status)]++
		msg.Findings = append(msg.Findings, df)
	}
	return msg
}

func classOf(x source.Finding) *errclass.Class {
	if x.Class == nil {
		return errclass.Failure
	}
	return x.Class
}

// doctorErr is nil when no check failed, else an error of the most specific class among the
// failures (errclass.Classes order), so the exit code says what kind of problem blocks this host.
func doctorErr(findings []source.Finding) error {
	var failed []source.Finding
	for _, x := range findings {
		if x.Status == source.StatusFail {
			failed = append(failed, x)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	for _, c := range errclass.Classes() {
		for _, x := range failed {
			if classOf(x) == c {
				return errclass.Wrap(c, fmt.Errorf("doctor: %d check(s) failed; first of class %q: %s %s", len(failed), c.Name(), x.Component, x.Check))
			}
		}
	}
	return errors.New("doctor: checks failed")
}

// printDoctor writes the findings as a checklist, grouped by what they are about.
func printDoctor(w io.Writer, msg *DoctorMessage) {
	mark := map[source.Status]string{source.StatusOK: "[ok]  ", source.StatusWarn: "[warn]", source.StatusFail: "[FAIL]", source.StatusSkip: "[skip]"}
	last := ""
	for _, x := range msg.Findings {
		if x.Component != last {
			if last != "" {
				fmt.Fprintln(w)
			}
			fmt.Fprintln(w, x.Component)
			last = x.Component
		}
		fmt.Fprintf(w, "  %s %s: %s\n", mark[x.Status], x.Check, x.Detail)
		if x.Fix != "" && (x.Status == source.StatusFail || x.Status == source.StatusWarn) {
			fmt.Fprintf(w, "         fix: %s\n", x.Fix)
		}
	}
	c := msg.Counts
	verdict := "this host is ready"
	if !msg.OK {
		verdict = "this host is NOT ready: fix the failures above"
	}
	fmt.Fprintf(w, "\n%d ok, %d warning(s), %d failure(s), %d skipped: %s\n", c["ok"], c["warn"], c["fail"], c["skip"], verdict)
}
