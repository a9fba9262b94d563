package approval

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/cfbackup/cfbackup/pkg/errclass"
)

// Sentinels of the restore gate: all class Protected (exit 12) but the missing plan.
var (
	// ErrPlanWritten: the restore wrote its plan and stopped; a second operator must approve it.
	ErrPlanWritten = errclass.New(errclass.Protected, "protected target: restore plan written, approval needed")
	// ErrNotApproved: the plan has no valid approval.
	ErrNotApproved = errclass.New(errclass.Protected, "protected target: no valid approval of the plan")
	// ErrPlanChanged: the restore asked for differs from the approved plan (which is then void).
	ErrPlanChanged = errclass.New(errclass.Protected, "protected target: the restore differs from the plan")
	// ErrPlanExpired: the plan is past its expiry, or was already carried out.
	ErrPlanExpired = errclass.New(errclass.Protected, "protected target: plan expired or already used")
	// ErrSelfApproval: the approver is the requester.
	ErrSelfApproval = errclass.New(errclass.Protected, "protected target: requester cannot approve own plan")
	// ErrGate: the test-restore gate found no passing test-restore.
	ErrGate = errclass.New(errclass.Protected, "protected target: no passing test-restore")
	// ErrPlanNotFound: no plan by that id, or a stored plan that does not hash to its id.
	ErrPlanNotFound = errclass.New(errclass.NotFound, "restore plan not found")
)

// PlanVersion is the format of Plan; a change of meaning bumps it.
const PlanVersion = 1

// Plan is what a restore into protected targets would do, without item names (the repository is
// plaintext to the store): snapshot, component, the sources read and targets written (names of
// databases, namespaces, buckets), counts and sizes, a hash of the exact request, who asked, and when
// it stops being valid. Its id is a prefix of the SHA-256 of its canonical JSON, so any change to any
// field makes another plan, and an approval (which signs the full hash) void.
type Plan struct {
	Version   int    `json:"version"`
	Snapshot  string `json:"snapshot"`
	Component string `json:"component"`
	// Sources are the snapshot's sources the restore reads; Targets the live ones it writes,
	// "component:name" ("d1:app").
	Sources []string `json:"sources"`
	Targets []string `json:"targets"`
	// Items and Bytes are what is written; Live counts live items replaced (0 when the component
	// does not know before writing).
	Items int64 `json:"items"`
	Bytes int64 `json:"bytes"`
	Live  int64 `json:"live"`
	// Request is the SHA-256 (hex) of the restore's options, values included: the same counts from
	// other tables or keys still make another plan, yet no name is stored.
	Request   string    `json:"request"`
	Requester Requester `json:"requester"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
}

// Requester is who asked for the restore: the audit trail's actor and host, and the fingerprint of
// the signing key of the requester's host when it has one (so that key cannot approve it either).
type Requester struct {
	Actor string `json:"actor"`
	Host  string `json:"host"`
	Key   string `json:"key,omitempty"`
}

// Canonical is the plan's JSON as hashed and stored: struct field order, times in UTC to the second.
func (p *Plan) Canonical() []byte {
	q := *p
	q.Created = q.Created.UTC().Truncate(time.Second)
	q.Expires = q.Expires.UTC().Truncate(time.Second)
	if q.Sources == nil {
		q.Sources = []string{}
	}
	if q.Targets == nil {
		q.Targets = []string{}
	}
	b, _ := json.Marshal(&q) // only strings, numbers and times: cannot fail
	return b
}

// Hash is the SHA-256 (hex) of the canonical plan: what an approval signs.
func (p *Plan) Hash() string {
	sum := sha256.Sum256(p.Canonical())
	return hex.EncodeToString(sum[:])
}

// IDLength is how many hex digits of the hash name a plan (80 bits; the approval signs all 256).
const IDLength = 20

// ID names the plan in commands and keys.
func (p *Plan) ID() string { return p.Hash()[:IDLength] }

var idPattern = regexp.MustCompile(`^[0-9a-f]{` + fmt.Sprint(IDLength) + `}$`)

// ValidID reports whether s has the form of a plan id.
func ValidID(s string) bool { return idPattern.MatchString(s) }

// Differences lists how the request q differs from the plan p, field by field ("" fields compared
// as given); who asked and when are not compared (the restore may run later, by another operator).
func (p *Plan) Differences(q *Plan) []string {
	var d []string
	cmp := func(name string, a, b any) {
		if fmt.Sprint(a) != fmt.Sprint(b) {
			d = append(d, fmt.Sprintf("%s: plan %v, now %v", name, a, b))
		}
	}
	cmp("version", p.Version, q.Version)
	cmp("snapshot", p.Snapshot, q.Snapshot)
	cmp("component", p.Component, q.Component)
	cmp("sources", strings.Join(p.Sources, ","), strings.Join(q.Sources, ","))
	cmp("targets", strings.Join(p.Targets, ","), strings.Join(q.Targets, ","))
	cmp("items", p.Items, q.Items)
	cmp("bytes", p.Bytes, q.Bytes)
	cmp("live items overwritten", p.Live, q.Live)
	if p.Request != q.Request {
		d = append(d, "restore options (tables, keys, prefixes, target flags) differ")
	}
	return d
}

// Normalize sorts the name lists, so the same request always makes the same plan.
func (p *Plan) Normalize() {
	slices.Sort(p.Sources)
	p.Sources = slices.Compact(p.Sources)
	slices.Sort(p.Targets)
	p.Targets = slices.Compact(p.Targets)
}

// SameActor reports whether an approver name is the requester: equal to the actor, or to its user
// part (alice is alice@host), case-insensitively.
func SameActor(approver, actor string) bool {
	a, ac := strings.ToLower(strings.TrimSpace(approver)), strings.ToLower(strings.TrimSpace(actor))
	if a == "" || ac == "" {
		return false
	}
	user, _, _ := strings.Cut(ac, "@")
	return a == ac || a == user
}
