package approval

import (
	"fmt"
	"regexp"
	"time"

	"github.com/cfbackup/cfbackup/pkg/errclass"
)

// ErrBadName: an approver name that cannot be a key part.
var ErrBadName = errclass.New(errclass.Usage, "invalid approver name")

var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._@-]{0,63}$`)

// CheckName refuses names that are not 1–64 of a-z 0-9 . _ @ - (they become object keys).
func CheckName(name string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("%w: %q: use 1-64 lower-case letters, digits, '.', '_', '@' or '-'", ErrBadName, name)
	}
	return nil
}

// Approver is an approver registered in the repository by an admin: the name, the public key, and
// the admin's key and signature over both. A restore host accepts it only when AddedBy is one of
// its pinned keys (approval.trusted_keys), so the repository alone can never introduce a signer.
type Approver struct {
	Name      string    `json:"name"`
	PublicKey string    `json:"public_key"`
	AddedBy   string    `json:"added_by"`
	Actor     string    `json:"actor"`
	Time      time.Time `json:"time"`
	Signature string    `json:"signature"`
}

func (a *Approver) message() []byte {
	return fmt.Appendf(nil, "cfbackup approver v1\nname %s\nkey %s\nadded-by %s\ntime %s\n", a.Name, a.PublicKey, a.AddedBy, a.Time.UTC().Format(time.RFC3339Nano))
}

// Register makes the registration of name with key pub, signed by admin.
func Register(admin *SigningKey, name string, pub PublicKey, actor string, now time.Time) (*Approver, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	a := &Approver{Name: name, PublicKey: pub.String(), AddedBy: admin.Public().String(), Actor: actor, Time: now.UTC()}
	a.Signature = admin.sign(a.message())
	return a, nil
}

// Verify checks the registration's signature and that its admin key is trusted; it returns the
// approver's public key.
func (a *Approver) Verify(trusted []PublicKey) (PublicKey, error) {
	admin, err := ParsePublicKey(a.AddedBy)
	if err != nil {
		return nil, err
	}
	pub, err := ParsePublicKey(a.PublicKey)
	if err != nil {
		return nil, err
	}
	if !verifySig(admin, a.message(), a.Signature) {
		return nil, fmt.Errorf("%w: the registration of approver %q does not verify (edited, or not signed by the key it names)", ErrUntrusted, a.Name)
	}
	if !contains(trusted, admin) {
		return nil, fmt.Errorf("%w: approver %q was registered by key %s, which this host does not trust (approval.trusted_keys)", ErrUntrusted, a.Name, admin.Fingerprint())
	}
	return pub, nil
}

func contains(keys []PublicKey, k PublicKey) bool {
	for _, t := range keys {
		if t.Equal(k) {
			return true
		}
	}
	return false
}

// Approval is an approver's signature over one plan's full hash, the approver's name and key, and
// the approval's expiry: it counts for that plan only, until then.
type Approval struct {
	Plan      string    `json:"plan"`
	PlanHash  string    `json:"plan_sha256"`
	Approver  string    `json:"approver"`
	PublicKey string    `json:"public_key"`
	Time      time.Time `json:"time"`
	Expires   time.Time `json:"expires"`
	Signature string    `json:"signature"`
}

func (a *Approval) message() []byte {
	return fmt.Appendf(nil, "cfbackup approval v1\nplan %s\napprover %s\nkey %s\nexpires %s\n", a.PlanHash, a.Approver, a.PublicKey, a.Expires.UTC().Format(time.RFC3339Nano))
}

// Approve signs plan p as approver with key k, valid until expires.
func Approve(k *SigningKey, approver string, p *Plan, now, expires time.Time) *Approval {
	a := &Approval{Plan: p.ID(), PlanHash: p.Hash(), Approver: approver, PublicKey: k.Public().String(), Time: now.UTC(), Expires: expires.UTC()}
	a.Signature = k.sign(a.message())
	return a
}

// verify checks the approval's own signature and that it is for plan p.
func (a *Approval) verify(p *Plan) (PublicKey, error) {
	pub, err := ParsePublicKey(a.PublicKey)
	if err != nil {
		return nil, err
	}
	if !verifySig(pub, a.message(), a.Signature) {
		return nil, fmt.Errorf("%w: the approval by %q does not verify (edited, or not signed by the key it names)", ErrUntrusted, a.Approver)
	}
	if a.PlanHash != p.Hash() {
		return nil, fmt.Errorf("%w: the approval by %q is for another plan (sha256 %.12s…)", ErrNotApproved, a.Approver, a.PlanHash)
	}
	return pub, nil
}
