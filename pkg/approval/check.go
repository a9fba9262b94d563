package approval

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cfbackup/cfbackup/pkg/store"
)

// Check finds a valid approval of plan p among approvals: signed by its key over p's full hash, by
// an approver whose registration verifies against a trusted key and names that same key, who is not
// the requester (by name or by key), and unexpired at now. It returns the first valid one, or nil
// and one line per approval saying why it does not count.
//
// executor is the registered key of the operator carrying the restore out (nil when only judging,
// as plans show does): an approval signed with it does not count either, so one person cannot both
// approve and carry out, whatever actor name the plan was requested under.
func Check(p *Plan, approvals []Approval, approvers []Approver, trusted []PublicKey, now time.Time, executor PublicKey) (*Approval, []string) {
	reg := map[string]Approver{}
	for _, a := range approvers {
		reg[a.Name] = a
	}
	var problems []string
	for i := range approvals {
		a := &approvals[i]
		if err := checkOne(p, a, reg, trusted, now, executor); err != nil {
			problems = append(problems, fmt.Sprintf("approval by %q: %v", a.Approver, err))
			continue
		}
		return a, problems
	}
	return nil, problems
}

func checkOne(p *Plan, a *Approval, reg map[string]Approver, trusted []PublicKey, now time.Time, executor PublicKey) error {
	pub, err := a.verify(p)
	if err != nil {
		return err
	}
	r, ok := reg[a.Approver]
	if !ok {
		return fmt.Errorf("%w: %q is not a registered approver ('cfbackup approvers add')", ErrUntrusted, a.Approver)
	}
	regKey, err := r.Verify(trusted)
	if err != nil {
		return err
	}
	if !regKey.Equal(pub) {
		return fmt.Errorf("%w: signed with key %s, but approver %q is registered with key %s", ErrUntrusted, pub.Fingerprint(), a.Approver, regKey.Fingerprint())
	}
	if SameActor(a.Approver, p.Requester.Actor) || (p.Requester.Key != "" && p.Requester.Key == pub.Fingerprint()) {
		return fmt.Errorf("%w: %q requested this restore", ErrSelfApproval, a.Approver)
	}
	if executor != nil && executor.Equal(pub) {
		return fmt.Errorf("%w: %q is carrying this restore out; a second operator must approve it", ErrSelfApproval, a.Approver)
	}
	if !now.Before(a.Expires) {
		return fmt.Errorf("%w: the approval expired at %s", ErrPlanExpired, a.Expires.UTC().Format(time.RFC3339))
	}
	return nil
}

// Authorize is the whole check a restore with --plan makes: the stored plan id exists and hashes to
// its id, the request derived now equals it, it is unexpired and unused, and it has a valid
// approval by someone other than the requester and the executor (the key of the operator carrying
// it out); then it marks the plan used. It returns the approval that authorised the restore.
func Authorize(ctx context.Context, st store.Store, id string, now *Plan, trusted []PublicKey, at time.Time, executor PublicKey) (*Plan, *Approval, error) {
	p, err := GetPlan(ctx, st, id)
	if err != nil {
		return nil, nil, err
	}
	if d := p.Differences(now); len(d) > 0 {
		return p, nil, fmt.Errorf("%w: plan %s no longer matches this restore, so its approval is void:\n  %s\nRerun the restore without --plan to write a new plan for approval", ErrPlanChanged, id, strings.Join(d, "\n  "))
	}
	if !at.Before(p.Expires) {
		return p, nil, fmt.Errorf("%w: plan %s expired at %s; rerun the restore without --plan to write a new one", ErrPlanExpired, id, p.Expires.UTC().Format(time.RFC3339))
	}
	if len(trusted) == 0 {
		return p, nil, fmt.Errorf("%w: this host trusts no signing key: pin the admin public key(s) in approval.trusted_keys (docs/APPROVAL.md)", ErrUntrusted)
	}
	approvals, err := ListApprovals(ctx, st, id)
	if err != nil {
		return p, nil, err
	}
	approvers, err := ListApprovers(ctx, st)
	if err != nil {
		return p, nil, err
	}
	a, problems := Check(p, approvals, approvers, trusted, at, executor)
	if a == nil {
		msg := "nobody approved it yet"
		if len(problems) > 0 {
			msg = strings.Join(problems, "\n  ")
		}
		return p, nil, fmt.Errorf("%w: plan %s:\n  %s\nA second operator approves it with: cfbackup approve %s", ErrNotApproved, id, msg, id)
	}
	if err := MarkUsed(ctx, st, id, p.Requester.Actor, at); err != nil {
		return p, a, err
	}
	return p, a, nil
}

// IsGateError reports whether err is one of this package's refusals (for callers that audit them).
func IsGateError(err error) bool {
	for _, s := range []error{ErrPlanWritten, ErrNotApproved, ErrPlanChanged, ErrPlanExpired, ErrSelfApproval, ErrGate, ErrUntrusted} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// RegisteredName is the name under which key pub is registered by a trusted admin key; an error
// when it is not, or when nothing is trusted.
func RegisteredName(approvers []Approver, pub PublicKey, trusted []PublicKey) (string, error) {
	if len(trusted) == 0 {
		return "", fmt.Errorf("%w: this host trusts no signing key: pin the admin public key(s) in approval.trusted_keys (docs/APPROVAL.md)", ErrUntrusted)
	}
	for i := range approvers {
		k, err := ParsePublicKey(approvers[i].PublicKey)
		if err != nil || !k.Equal(pub) {
			continue
		}
		if _, err := approvers[i].Verify(trusted); err != nil {
			return "", err
		}
		return approvers[i].Name, nil
	}
	return "", fmt.Errorf("%w: signing key %s is not registered in this repository: an admin runs 'cfbackup approvers add NAME --public-key FILE'", ErrUntrusted, pub.Fingerprint())
}
