package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/cfbackup/cfbackup/internal/config"
	"github.com/cfbackup/cfbackup/pkg/approval"
	"github.com/cfbackup/cfbackup/pkg/audit"
	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/layout"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/notify"
	"github.com/cfbackup/cfbackup/pkg/record"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/source"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// Restores into protected targets (docs/APPROVAL.md): the restore's Gate (engine.RestoreOptions)
// sees the decided plan before anything is confirmed or written. A target named in
// approval.protected needs, in order: a passing test-restore (when approval.require_test_restore),
// then an approved plan (--plan ID), unless --break-glass REASON bypasses both, loudly.

// addApprovalFlags binds restore's --plan and --break-glass.
func addApprovalFlags(fl *pflag.FlagSet, o *RestoreOptions) {
	fl.StringVar(&o.Plan, "plan", "", "carry out this approved restore plan (protected targets; docs/APPROVAL.md)")
	fl.StringVar(&o.BreakGlass, "break-glass", "", "restore into a protected target without approval, giving the reason: audited and notified (docs/APPROVAL.md)")
}

// checkApprovalFlags refuses an empty --break-glass reason and --break-glass with --plan.
func checkApprovalFlags(cmd *cobra.Command, o *RestoreOptions) error {
	if cmd.Flags().Changed("break-glass") && strings.TrimSpace(o.BreakGlass) == "" {
		return usageError{errors.New("--break-glass needs the reason, e.g. --break-glass 'INC-123: primary lost, approver unreachable'")}
	}
	if o.BreakGlass != "" && o.Plan != "" {
		return usageError{errors.New("give --plan ID (an approved plan) or --break-glass REASON, not both")}
	}
	return nil
}

// protectedTargets are the targets of w that the policy protects, as "component:name".
func protectedTargets(pol *config.ApprovalPolicy, component string, w *source.Overwrite) []string {
	var out []string
	if w == nil {
		return nil
	}
	for _, t := range w.Targets {
		if _, ok := pol.IsProtected(component, t); ok {
			out = append(out, component+":"+t)
		}
	}
	return out
}

// restoreGate is the Gate of one restore run; nil when nothing is protected and no approval flag is given.
func restoreGate(cmd *cobra.Command, o *RestoreOptions, comp source.Component) (func(context.Context, *manifest.Manifest, source.RestorePlan) error, error) {
	pol, err := o.f.cfg.ApprovalPolicy()
	if err != nil {
		return nil, err
	}
	if len(pol.Protected["d1"])+len(pol.Protected["do"])+len(pol.Protected["r2"]) == 0 && o.Plan == "" && o.BreakGlass == "" {
		return nil, nil
	}
	return func(ctx context.Context, m *manifest.Manifest, plan source.RestorePlan) error {
		var w *source.Overwrite
		if ow, ok := plan.(source.Overwriter); ok {
			w = ow.Overwrites()
		}
		protected := protectedTargets(pol, comp.Name(), w)
		if len(protected) == 0 {
			if o.Plan != "" || o.BreakGlass != "" {
				fmt.Fprintln(o.f.IO.Err, "Note: no target of this restore is protected (approval.protected); --plan / --break-glass not needed.")
			}
			return nil
		}
		if o.BreakGlass != "" {
			return breakGlass(ctx, o, m, comp.Name(), protected)
		}
		if pol.RequireTestRestore && m != nil {
			if err := testRestoreGate(ctx, o, m, comp.Name(), w, pol.TestRestoreWithin); err != nil {
				return err
			}
		}
		p := derivePlan(cmd, o, m, comp.Name(), w, pol)
		if o.Plan == "" {
			return writePlan(ctx, o, p, protected)
		}
		if c := plan.Confirm(); c != nil && !o.Yes {
			// Authorize marks the plan used: refuse now rather than after, at the engine's confirmation.
			return fmt.Errorf("%w: this restore replaces %s; carrying out plan %s needs --yes", engine.ErrRefused, c.Prompt, o.Plan)
		}
		r, err := o.f.Repo(ctx)
		if err != nil {
			return err
		}
		executor, err := executorKey(ctx, o, r.Store, pol.TrustedKeys)
		if err != nil {
			return err
		}
		_, a, err := approval.Authorize(ctx, r.Store, o.Plan, p, pol.TrustedKeys, time.Now(), executor)
		if err != nil {
			return err
		}
		fmt.Fprintf(o.f.IO.Err, "Plan %s approved by %s (key %s) at %s; restoring into %s.\n", o.Plan, a.Approver, shortKey(a.PublicKey), a.Time.UTC().Format(time.RFC3339), strings.Join(protected, ", "))
		return nil
	}, nil
}

func shortKey(pub string) string {
	if k, err := approval.ParsePublicKey(pub); err == nil {
		return k.Fingerprint()
	}
	return "?"
}

// derivePlan is the plan of this request: the same request always derives the same content.
func derivePlan(cmd *cobra.Command, o *RestoreOptions, m *manifest.Manifest, component string, w *source.Overwrite, pol *config.ApprovalPolicy) *approval.Plan {
	now := time.Now().UTC().Truncate(time.Second) // as stored (Plan.Canonical)
	p := &approval.Plan{Version: approval.PlanVersion, Component: component, Request: requestHash(cmd, o),
		Sources: append([]string{}, w.Sources...), Targets: nil, Items: w.Items, Bytes: w.Bytes, Live: w.Live,
		Requester: approval.Requester{Actor: audit.Actor(o.f.Getenv), Host: audit.Host()}, Created: now, Expires: now.Add(pol.PlanTTL)}
	if m != nil {
		p.Snapshot = m.ID
	}
	for _, t := range w.Targets {
		p.Targets = append(p.Targets, component+":"+t)
	}
	if o.f.cfg.SigningKeyFile != "" {
		if k, err := approval.ReadSigningKeyFile(o.f.cfg.SigningKeyFile); err == nil {
			p.Requester.Key = k.Public().Fingerprint()
		}
	}
	p.Normalize()
	return p
}

// requestFlagsIgnored are restore flags that do not change what is restored.
var requestFlagsIgnored = map[string]bool{"plan": true, "break-glass": true, "yes": true, "dry-run": true,
	"notify-on": true, "metrics-textfile": true, "metrics-push": true}

// requestHash is the SHA-256 of the restore's own flags as given (values included) and the point in
// time it rewinds to: the plan stores only the hash, never the names in them.
func requestHash(cmd *cobra.Command, o *RestoreOptions) string {
	var parts []string
	local := cmd.LocalNonPersistentFlags() // its Visit sees nothing: AddFlag does not carry "changed"
	cmd.Flags().Visit(func(fl *pflag.Flag) {
		if local.Lookup(fl.Name) != nil && !requestFlagsIgnored[fl.Name] {
			parts = append(parts, fl.Name+"="+fl.Value.String())
		}
	})
	if o.at != nil {
		parts = append(parts, "rewind-to="+o.at.UTC().Format(time.RFC3339Nano))
	}
	sort.Strings(parts)
	sum := sha256.Sum256([]byte(strings.Join(parts, "\n")))
	return hex.EncodeToString(sum[:])
}

// writePlan stores the plan, records it in the audit trail (command "plan"), prints what the second
// operator runs, and stops the restore (exit 12).
func writePlan(ctx context.Context, o *RestoreOptions, p *approval.Plan, protected []string) error {
	r, err := o.f.Repo(ctx)
	if err != nil {
		return err
	}
	id, err := approval.PutPlan(ctx, r.Store, p)
	if err != nil {
		return err
	}
	o.f.auditExtra(ctx, &audit.Record{Command: "plan", Args: []string{"plan", id}, Result: audit.ResultOK, Snapshots: nonEmpty(p.Snapshot), Components: []string{p.Component}})
	if o.f.jsonOut {
		_ = writeJSON(o.f.IO.Out, &PlanWrittenMessage{MessageType: msgPlanWritten, Plan: id, Approve: "cfbackup approve " + id, Content: p})
	}
	fmt.Fprintf(o.f.IO.Err, "%s is protected: this restore needs a second operator's approval.\nWrote restore plan %s (snapshot %s, %s, %d item(s), %s; requested by %s; expires %s).\nA second operator reviews and approves it with:\n  cfbackup plans show %s\n  cfbackup approve %s\nThen rerun this restore with --plan %s%s.\n",
		strings.Join(protected, ", "), id, p.Snapshot, strings.Join(p.Targets, ","), p.Items, source.HumanBytes(p.Bytes), p.Requester.Actor, p.Expires.Format(time.RFC3339), id, id, id, snapshotHint(p.Snapshot))
	return fmt.Errorf("%w: plan %s written; run 'cfbackup approve %s' as a second operator, then rerun with --plan %s", approval.ErrPlanWritten, id, id, id)
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// auditExtra appends a record of its own to the audit trail (a plan written); a failure is logged.
func (f *Factory) auditExtra(ctx context.Context, rec *audit.Record) {
	l, err := f.auditLog(ctx)
	if err != nil || l == nil {
		return
	}
	rec.Actor, rec.Host, rec.Run = audit.Actor(f.Getenv), audit.Host(), f.run.id
	if err := l.Append(ctx, rec); err != nil {
		f.Log().Warn("could not write the audit record", "command", rec.Command, "err", err)
	}
}

// breakGlass lets the restore through without approval: a warning on stderr, the reason in the
// restore's audit records (--break-glass is a shown flag) and a notification sent now, whatever
// notify_on says.
func breakGlass(ctx context.Context, o *RestoreOptions, m *manifest.Manifest, component string, protected []string) error {
	actor := audit.Actor(o.f.Getenv)
	reason := audit.RedactText(o.BreakGlass)
	fmt.Fprintf(o.f.IO.Err, "BREAK-GLASS: %s restores into protected %s WITHOUT APPROVAL. Reason: %s\nThis is recorded in the audit trail and notified.\n", actor, strings.Join(protected, ", "), reason)
	c := o.f.cfg
	var ns []notify.Notifier
	if c.NotifyWebhook != "" {
		ns = append(ns, notify.Webhook{URL: c.NotifyWebhook})
	}
	if c.SMTPHost != "" {
		ns = append(ns, o.f.smtp())
	}
	if len(ns) == 0 {
		o.f.Log().Warn("break-glass restore: no notification configured (CFBACKUP_NOTIFY_WEBHOOK or smtp_host): only the audit trail records it")
		return nil
	}
	ev := notify.Event{Command: "restore", Status: notify.StatusBreakGlass, Error: reason, Host: audit.Host(), Actor: actor, Time: time.Now().UTC(),
		Components: []string{component}, Snapshots: []string{}}
	if m != nil {
		ev.Snapshots = []string{m.ID}
	}
	if st, err := o.f.Store(ctx); err == nil {
		ev.Repository = st.Location()
	}
	for _, err := range notify.Send(ctx, ev, ns) {
		o.f.Log().Warn("break-glass notification failed", "err", audit.RedactText(err.Error()))
	}
	return nil
}

// testRestoreGate looks under verify/ for a passing test-restore of snapshot m, or (within > 0) of
// another snapshot holding the same source that passed within that long.
func testRestoreGate(ctx context.Context, o *RestoreOptions, m *manifest.Manifest, component string, w *source.Overwrite, within time.Duration) error {
	r, err := o.f.Repo(ctx)
	if err != nil {
		return err
	}
	var others map[string]*manifest.Manifest
	if within > 0 {
		if others, err = snapshotsByID(ctx, r); err != nil {
			return err
		}
	}
	since := time.Now().Add(-within)
	found := ""
	err = r.Store.List(ctx, layout.VerifyRecords, func(oi store.ObjectInfo) error {
		if found != "" || !strings.HasSuffix(oi.Key, layout.JSONSuffix) {
			return nil
		}
		mine := strings.HasSuffix(oi.Key, "-"+m.ID+layout.JSONSuffix)
		if !mine && within == 0 {
			return nil
		}
		v, err := readVerifyRecord(ctx, r.Store, oi.Key)
		if err != nil || !v.OK || !strings.HasPrefix(v.Mode, "test-restore") {
			return nil
		}
		if v.Snapshot == m.ID || (v.Time.After(since) && holdsSources(others[v.Snapshot], component, w.Sources)) {
			found = v.Snapshot
		}
		return nil
	})
	if err != nil {
		return err
	}
	if found != "" {
		fmt.Fprintf(o.f.IO.Err, "Test-restore gate: snapshot %s passed a test-restore.\n", found)
		return nil
	}
	what := "of snapshot " + m.ID
	if within > 0 {
		what += fmt.Sprintf(" (or, within %s, of another snapshot of %s)", within, strings.Join(w.Sources, ", "))
	}
	return fmt.Errorf("%w: approval.require_test_restore: no passing test-restore %s is recorded; run:\n  cfbackup test-restore %s --component %s\nthen rerun this restore", approval.ErrGate, what, m.ID, component)
}

func readVerifyRecord(ctx context.Context, st store.Store, key string) (*record.Verify, error) {
	rc, err := st.Open(ctx, key, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var v record.Verify
	if err := json.NewDecoder(rc).Decode(&v); err != nil {
		return nil, err
	}
	return &v, nil
}

func snapshotsByID(ctx context.Context, r *repo.Repo) (map[string]*manifest.Manifest, error) {
	snaps, _, err := r.ListSnapshots(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]*manifest.Manifest{}
	for _, s := range snaps {
		out[s.ID] = s
	}
	return out, nil
}

// holdsSources reports whether snapshot m holds every one of the component's sources named.
func holdsSources(m *manifest.Manifest, component string, names []string) bool {
	if m == nil || len(names) == 0 {
		return false
	}
	for _, n := range names {
		found := false
		for _, s := range m.Sources {
			if s.Component == component && s.Name == n {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// executorKey is the signing key of the operator carrying an approved plan out: it must be
// registered under a trusted admin key, and its holder cannot be the approver. Without it, one
// person could request under another actor name and approve the plan themselves.
func executorKey(ctx context.Context, o *RestoreOptions, st store.Store, trusted []approval.PublicKey) (approval.PublicKey, error) {
	k, err := o.f.signingKey("restore --plan (carrying out an approved plan)")
	if err != nil {
		return nil, err
	}
	regs, err := approval.ListApprovers(ctx, st)
	if err != nil {
		return nil, err
	}
	if _, err := approval.RegisteredName(regs, k.Public(), trusted); err != nil {
		return nil, fmt.Errorf("%w (the operator carrying out a plan needs a registered signing key)", err)
	}
	return k.Public(), nil
}

// snapshotHint reminds to name the snapshot by id: a new backup makes 'latest' another plan.
func snapshotHint(id string) string {
	if id == "" {
		return ""
	}
	return ", naming the snapshot as " + id + " (a newer backup makes 'latest' another plan)"
}
