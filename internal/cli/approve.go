package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/pkg/approval"
	"github.com/cfbackup/cfbackup/pkg/audit"
	"github.com/cfbackup/cfbackup/pkg/source"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/timespec"
)

// The approval commands (docs/APPROVAL.md): approve, plans list|show, approvers keygen|add|list.

// signingKey reads this operator's signing key (signing_key_file / CFBACKUP_SIGNING_KEY_FILE).
func (f *Factory) signingKey(what string) (*approval.SigningKey, error) {
	path := f.cfg.SigningKeyFile
	if path == "" {
		return nil, fmt.Errorf("%w: %s needs your signing key: set CFBACKUP_SIGNING_KEY_FILE or signing_key_file (make one with 'cfbackup approvers keygen -o FILE')", approval.ErrBadKey, what)
	}
	k, err := approval.ReadSigningKeyFile(path)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		f.Log().Warn("signing key file is readable by others (want mode 0600)", "path", path)
	}
	return k, nil
}

// trustedKeys are this host's pinned admin keys (Validate parsed them already).
func (f *Factory) trustedKeys() []approval.PublicKey {
	pol, err := f.cfg.ApprovalPolicy()
	if err != nil {
		return nil
	}
	return pol.TrustedKeys
}

// NewCmdApprove signs a restore plan as a second operator.
func NewCmdApprove(f *Factory) *cobra.Command {
	var expires string
	cmd := &cobra.Command{
		Use:   "approve PLAN-ID",
		Short: "Approve another operator's restore plan for a protected target, with your signing key",
		Long: `Sign the restore plan PLAN-ID (written by a restore into a protected target) with your signing key
(signing_key_file or CFBACKUP_SIGNING_KEY_FILE), after showing what it overwrites. Your key must be
registered as an approver in the repository by an admin ('cfbackup approvers add'), and you cannot
approve a plan you requested. The approval counts for exactly this plan (its full SHA-256), until
--expires or the plan's own expiry, whichever comes first; the requester then reruns the restore
with --plan PLAN-ID. Review first with 'cfbackup plans show PLAN-ID' (docs/APPROVAL.md).`,
		Example: `  cfbackup plans show 3f9c0a1b2c3d4e5f6a7b
  cfbackup approve 3f9c0a1b2c3d4e5f6a7b
  cfbackup approve 3f9c0a1b2c3d4e5f6a7b --expires 2h`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return approveRun(cmd.Context(), f, args[0], expires)
		},
	}
	mutating(cmd)
	cmd.Flags().StringVar(&expires, "expires", "", "the approval lapses after this long (4h, 1d; default: when the plan expires)")
	return cmd
}

func approveRun(ctx context.Context, f *Factory, id, expires string) error {
	var ttl time.Duration
	if expires != "" {
		d, err := timespec.ParseDuration(expires)
		if err != nil || d <= 0 {
			return usageError{fmt.Errorf("--expires %q: give a positive duration such as 4h or 1d", expires)}
		}
		ttl = d
	}
	k, err := f.signingKey("approve")
	if err != nil {
		return err
	}
	r, err := f.Repo(ctx)
	if err != nil {
		return err
	}
	p, err := approval.GetPlan(ctx, r.Store, id)
	if err != nil {
		return err
	}
	name, err := approverName(ctx, f, r.Store, k.Public())
	if err != nil {
		return err
	}
	now := time.Now()
	if approval.SameActor(name, p.Requester.Actor) || p.Requester.Key == k.Public().Fingerprint() {
		return fmt.Errorf("%w: plan %s was requested by %s; a second operator must approve it", approval.ErrSelfApproval, id, p.Requester.Actor)
	}
	if used, err := approval.Used(ctx, r.Store, id); err != nil || used || !now.Before(p.Expires) {
		if err != nil {
			return err
		}
		return fmt.Errorf("%w: plan %s expired at %s or was already carried out; the requester writes a new one", approval.ErrPlanExpired, id, p.Expires.UTC().Format(time.RFC3339))
	}
	until := p.Expires
	if ttl > 0 && now.Add(ttl).Before(until) {
		until = now.Add(ttl)
	}
	a := approval.Approve(k, name, p, now, until)
	if err := approval.PutApproval(ctx, r.Store, a); err != nil {
		return err
	}
	if f.jsonOut {
		return writeJSON(f.IO.Out, &ApprovalMessage{MessageType: msgApproval, Plan: id, Approver: name, Key: k.Public().Fingerprint(), Expires: until.UTC()})
	}
	printPlan(f, id, p)
	fmt.Fprintf(f.IO.Out, "Approved plan %s as %s (key %s), valid until %s.\nThe requester runs the restore again with --plan %s.\n", id, name, k.Public().Fingerprint(), until.UTC().Format(time.RFC3339), id)
	return nil
}

// approverName finds the registration of key pub; when this host pins admin keys, it must verify.
func approverName(ctx context.Context, f *Factory, st store.Store, pub approval.PublicKey) (string, error) {
	regs, err := approval.ListApprovers(ctx, st)
	if err != nil {
		return "", err
	}
	trusted := f.trustedKeys()
	for i := range regs {
		k, err := approval.ParsePublicKey(regs[i].PublicKey)
		if err != nil || !k.Equal(pub) {
			continue
		}
		if len(trusted) > 0 {
			if _, err := regs[i].Verify(trusted); err != nil {
				return "", err
			}
		}
		return regs[i].Name, nil
	}
	return "", fmt.Errorf("%w: your signing key %s is not registered as an approver in this repository: an admin runs 'cfbackup approvers add NAME --public-key FILE' with your public key", approval.ErrUntrusted, pub.Fingerprint())
}

func printPlan(f *Factory, id string, p *approval.Plan) {
	out := f.IO.Out
	fmt.Fprintf(out, "Plan %s (sha256 %s)\n", id, p.Hash())
	fmt.Fprintf(out, "  restore   %s from snapshot %s (sources %s)\n", p.Component, p.Snapshot, strings.Join(p.Sources, ", "))
	fmt.Fprintf(out, "  into      %s\n", strings.Join(p.Targets, ", "))
	fmt.Fprintf(out, "  writes    %d item(s), %s; %d live item(s) overwritten\n", p.Items, source.HumanBytes(p.Bytes), p.Live)
	fmt.Fprintf(out, "  requested by %s on %s at %s; expires %s\n", p.Requester.Actor, p.Requester.Host, p.Created.UTC().Format(time.RFC3339), p.Expires.UTC().Format(time.RFC3339))
}

// NewCmdPlans lists and shows restore plans.
func NewCmdPlans(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "plans",
		Short: "List and show restore plans waiting for approval (protected targets)",
		Long: `Restore plans are written by a restore into a protected target (docs/APPROVAL.md). 'plans list'
lists them; 'plans show PLAN-ID' prints one with its approvals, each checked as a restore on this
host would check it (its signature, its approver's registration against approval.trusted_keys,
requester, expiry).`,
	}
	cmd.AddCommand(&cobra.Command{
		Use: "list", Short: "List restore plans, oldest first", Args: cobra.NoArgs,
		Example: `  cfbackup plans list
  cfbackup plans list --json`,
		RunE: func(cmd *cobra.Command, _ []string) error { return plansList(cmd.Context(), f) },
	}, &cobra.Command{
		Use: "show PLAN-ID", Short: "Show a restore plan and its approvals", Args: cobra.ExactArgs(1),
		Example: `  cfbackup plans show 3f9c0a1b2c3d4e5f6a7b`,
		RunE:    func(cmd *cobra.Command, args []string) error { return plansShow(cmd.Context(), f, args[0]) },
	})
	return cmd
}

func plansList(ctx context.Context, f *Factory) error {
	r, err := f.Repo(ctx)
	if err != nil {
		return err
	}
	ids, err := approval.ListPlans(ctx, r.Store)
	if err != nil {
		return err
	}
	msg := &PlansMessage{MessageType: msgPlans, Plans: []PlanEntry{}}
	now := time.Now()
	for _, id := range ids {
		p, err := approval.GetPlan(ctx, r.Store, id)
		if err != nil {
			fmt.Fprintf(f.IO.Err, "warning: %v\n", err)
			continue
		}
		as, err := approval.ListApprovals(ctx, r.Store, id)
		if err != nil {
			return err
		}
		used, err := approval.Used(ctx, r.Store, id)
		if err != nil {
			return err
		}
		msg.Plans = append(msg.Plans, PlanEntry{ID: id, Snapshot: p.Snapshot, Component: p.Component, Targets: p.Targets, Requester: p.Requester.Actor,
			Created: p.Created, Expires: p.Expires, Approvals: len(as), Used: used, Expired: !now.Before(p.Expires)})
	}
	if f.jsonOut {
		return writeJSON(f.IO.Out, msg)
	}
	for _, e := range msg.Plans {
		state := "waiting"
		switch {
		case e.Used:
			state = "used"
		case e.Expired:
			state = "expired"
		case e.Approvals > 0:
			state = fmt.Sprintf("%d approval(s)", e.Approvals)
		}
		fmt.Fprintf(f.IO.Out, "%s  %s  %-4s %-30s by %-20s %s\n", e.ID, e.Created.UTC().Format(time.RFC3339), e.Component, strings.Join(e.Targets, ","), e.Requester, state)
	}
	return nil
}

func plansShow(ctx context.Context, f *Factory, id string) error {
	r, err := f.Repo(ctx)
	if err != nil {
		return err
	}
	p, err := approval.GetPlan(ctx, r.Store, id)
	if err != nil {
		return err
	}
	as, err := approval.ListApprovals(ctx, r.Store, id)
	if err != nil {
		return err
	}
	regs, err := approval.ListApprovers(ctx, r.Store)
	if err != nil {
		return err
	}
	used, err := approval.Used(ctx, r.Store, id)
	if err != nil {
		return err
	}
	now := time.Now()
	msg := &PlanShowMessage{MessageType: msgPlanShow, ID: id, SHA256: p.Hash(), Plan: p, Approvals: []ApprovalStatus{}, Used: used, Expired: !now.Before(p.Expires)}
	for _, a := range as {
		st := ApprovalStatus{Approver: a.Approver, Key: shortKey(a.PublicKey), Time: a.Time, Expires: a.Expires, Valid: true}
		if ok, problems := approval.Check(p, []approval.Approval{a}, regs, f.trustedKeys(), now, nil); ok == nil {
			st.Valid, st.Problem = false, strings.Join(problems, "; ")
		}
		msg.Approvals = append(msg.Approvals, st)
	}
	if f.jsonOut {
		return writeJSON(f.IO.Out, msg)
	}
	printPlan(f, id, p)
	if used {
		fmt.Fprintln(f.IO.Out, "  already carried out")
	}
	if len(msg.Approvals) == 0 {
		fmt.Fprintf(f.IO.Out, "  no approval yet: a second operator runs 'cfbackup approve %s'\n", id)
	}
	for _, a := range msg.Approvals {
		verdict := "valid on this host"
		if !a.Valid {
			verdict = "does not count: " + a.Problem
		}
		fmt.Fprintf(f.IO.Out, "  approved by %s (key %s) at %s, until %s: %s\n", a.Approver, a.Key, a.Time.UTC().Format(time.RFC3339), a.Expires.UTC().Format(time.RFC3339), verdict)
	}
	return nil
}

// errKeyExists: approvers keygen never overwrites a key file.
var errKeyExists = errors.New("file exists")

// NewCmdApprovers manages signing keys and the approver registry.
func NewCmdApprovers(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "approvers",
		Short: "Signing keys and the approvers registered in the repository (two-person restore approval)",
		Long: `Approvers sign restore plans for protected targets (docs/APPROVAL.md). 'approvers keygen' makes a
signing key; an admin registers each approver's public key with 'approvers add', signing the
registration with the admin's own signing key; restore hosts accept only registrations signed by a
key pinned in their approval.trusted_keys, so the repository (and a backup host that can write to it)
can never introduce an approver by itself.`,
	}
	cmd.AddCommand(newCmdApproversKeygen(f), newCmdApproversAdd(f), newCmdApproversList(f))
	return cmd
}

func newCmdApproversKeygen(f *Factory) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "keygen -o FILE",
		Short: "Make an ed25519 signing key (mode 0600); print its public key",
		Long: `Write a new ed25519 signing key to FILE (mode 0600; an existing file is never overwritten) and print
its public key on stdout. Keep the file on your own machine: it is not the data identity and never
goes into the repository. Point signing_key_file or CFBACKUP_SIGNING_KEY_FILE at it.`,
		Example: `  cfbackup approvers keygen -o ~/.config/cfbackup/signing.key > bob.pub`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usageError{errors.New("-o FILE is required: where to write the private signing key")}
			}
			k, text, err := approval.GenerateKey()
			if err != nil {
				return err
			}
			fh, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				if errors.Is(err, os.ErrExist) {
					return fmt.Errorf("%w: %s: %w (choose another -o, or remove it if you mean to replace that key)", approval.ErrBadKey, out, errKeyExists)
				}
				return err
			}
			if _, err := fh.WriteString(text); err != nil {
				fh.Close()
				return err
			}
			if err := fh.Close(); err != nil {
				return err
			}
			if f.jsonOut {
				return writeJSON(f.IO.Out, &SigningKeyMessage{MessageType: msgSigningKey, File: out, PublicKey: k.Public().String(), Fingerprint: k.Public().Fingerprint()})
			}
			fmt.Fprintln(f.IO.Out, k.Public().String())
			fmt.Fprintf(f.IO.Err, "Wrote signing key %s (mode 0600), fingerprint %s.\n", out, k.Public().Fingerprint())
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the private signing key to this file")
	return cmd
}

func newCmdApproversAdd(f *Factory) *cobra.Command {
	var pubFile string
	cmd := &cobra.Command{
		Use:   "add NAME --public-key FILE",
		Short: "Register an approver's public key, signed with your (admin) signing key",
		Long: `Register NAME as an approver with the public key in FILE ('approvers keygen' printed it). The
registration is signed with your signing key (signing_key_file / CFBACKUP_SIGNING_KEY_FILE), which
restore hosts must pin in approval.trusted_keys; when this host pins keys, yours must be among them.
A name is registered once (records are never rewritten).`,
		Example: `  cfbackup approvers add bob --public-key bob.pub`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return approversAdd(cmd.Context(), f, args[0], pubFile)
		},
	}
	mutating(cmd)
	cmd.Flags().StringVar(&pubFile, "public-key", "", "file holding the approver's public key (cfbackup-ed25519-pub:…)")
	return cmd
}

func approversAdd(ctx context.Context, f *Factory, name, pubFile string) error {
	if pubFile == "" {
		return usageError{errors.New("--public-key FILE is required (the approver's 'approvers keygen' output)")}
	}
	if err := approval.CheckName(name); err != nil {
		return err
	}
	pub, err := approval.ReadPublicKeyFile(pubFile)
	if err != nil {
		return err
	}
	admin, err := f.signingKey("approvers add")
	if err != nil {
		return err
	}
	trusted := f.trustedKeys()
	if len(trusted) > 0 && !containsKey(trusted, admin.Public()) {
		return fmt.Errorf("%w: your signing key %s is not in this host's approval.trusted_keys: restore hosts would ignore an approver it registers", approval.ErrUntrusted, admin.Public().Fingerprint())
	}
	r, err := f.Repo(ctx)
	if err != nil {
		return err
	}
	reg, err := approval.Register(admin, name, pub, audit.Actor(f.Getenv), time.Now())
	if err != nil {
		return err
	}
	if err := approval.PutApprover(ctx, r.Store, reg); err != nil {
		return err
	}
	if len(trusted) == 0 {
		fmt.Fprintf(f.IO.Err, "Note: restore hosts accept this approver only when they pin your key in approval.trusted_keys:\n  %s\n", admin.Public())
	}
	if f.jsonOut {
		return writeJSON(f.IO.Out, &ApproverAddedMessage{MessageType: msgApproverAdded, Name: name, Key: pub.Fingerprint(), AddedBy: admin.Public().Fingerprint()})
	}
	fmt.Fprintf(f.IO.Out, "Registered approver %s (key %s), signed by %s.\n", name, pub.Fingerprint(), admin.Public().Fingerprint())
	return nil
}

func containsKey(keys []approval.PublicKey, k approval.PublicKey) bool {
	for _, t := range keys {
		if t.Equal(k) {
			return true
		}
	}
	return false
}

func newCmdApproversList(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List registered approvers and whether this host trusts each",
		Example: `  cfbackup approvers list
  cfbackup approvers list --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := f.Repo(cmd.Context())
			if err != nil {
				return err
			}
			regs, err := approval.ListApprovers(cmd.Context(), r.Store)
			if err != nil {
				return err
			}
			msg := &ApproversMessage{MessageType: msgApprovers, Approvers: []ApproverEntry{}}
			for _, a := range regs {
				e := ApproverEntry{Name: a.Name, Key: shortKey(a.PublicKey), AddedBy: shortKey(a.AddedBy), Time: a.Time, Trusted: true}
				if _, err := a.Verify(f.trustedKeys()); err != nil {
					e.Trusted, e.Problem = false, err.Error()
				}
				msg.Approvers = append(msg.Approvers, e)
			}
			if f.jsonOut {
				return writeJSON(f.IO.Out, msg)
			}
			for _, e := range msg.Approvers {
				verdict := "trusted"
				if !e.Trusted {
					verdict = "NOT trusted here: " + e.Problem
				}
				fmt.Fprintf(f.IO.Out, "%-20s key %s added by %s at %s: %s\n", e.Name, e.Key, e.AddedBy, e.Time.UTC().Format(time.RFC3339), verdict)
			}
			return nil
		},
	}
}
