// Package retention decides which snapshots a retention policy keeps, and why.
//
// It is pure: no store, no clock, no I/O. The engine hands it snapshot summaries (time, labels and the
// component/source groups each snapshot holds) and a policy per component or source; it answers with
// every kept snapshot's reasons and every snapshot the policy lets go, so prune can print its plan,
// write its record and be tested table by table. Calendar rules (hourly … yearly) are evaluated in
// an explicit time zone, so "daily" means the operator's days, not the server's.
package retention

import (
	"fmt"
	"sort"
	"time"

	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/timespec"
)

// ErrPolicy: a policy or retention setting is malformed; the message names it and the fix.
var ErrPolicy = errclass.New(errclass.Usage, "invalid retention policy")

// Rule names, in the order reasons are reported.
const (
	RuleLast    = "last"
	RuleHourly  = "hourly"
	RuleDaily   = "daily"
	RuleWeekly  = "weekly"
	RuleMonthly = "monthly"
	RuleYearly  = "yearly"
	RuleWithin  = "within"
	RuleLabel   = "label"
	// RuleNoPolicy keeps a group's snapshots when no policy applies to it (see Policies.AllowRemoveAll).
	RuleNoPolicy = "no-policy"
)

// Policy is one set of keep rules. A snapshot is kept when any rule keeps it. Counts of zero mean
// "rule not used"; a negative count is invalid.
type Policy struct {
	Last    int `json:"keep_last,omitempty"`
	Hourly  int `json:"keep_hourly,omitempty"`
	Daily   int `json:"keep_daily,omitempty"`
	Weekly  int `json:"keep_weekly,omitempty"`
	Monthly int `json:"keep_monthly,omitempty"`
	Yearly  int `json:"keep_yearly,omitempty"`
	// Within keeps every snapshot younger than this, measured from the group's newest snapshot (so a
	// backup schedule that stopped never lets prune remove everything).
	Within time.Duration `json:"keep_within,omitempty"`
	// Labels keeps every snapshot carrying any of these key=value labels.
	Labels map[string]string `json:"keep_label,omitempty"`
	// RequireWithin (enforcement, not a keep rule): the group's newest snapshot must be younger than
	// this at evaluation time, or Evaluate reports a violation.
	RequireWithin time.Duration `json:"require_within,omitempty"`
}

// Empty reports whether the policy has no keep rule at all (it would remove everything).
func (p Policy) Empty() bool {
	return p.Last == 0 && p.Hourly == 0 && p.Daily == 0 && p.Weekly == 0 && p.Monthly == 0 && p.Yearly == 0 &&
		p.Within == 0 && len(p.Labels) == 0
}

// Validate refuses negative counts and durations.
func (p Policy) Validate() error {
	for _, c := range []struct {
		name string
		n    int
	}{{"keep_last", p.Last}, {"keep_hourly", p.Hourly}, {"keep_daily", p.Daily}, {"keep_weekly", p.Weekly}, {"keep_monthly", p.Monthly}, {"keep_yearly", p.Yearly}} {
		if c.n < 0 {
			return fmt.Errorf("%w: %s is %d: counts must be 0 (unused) or more", ErrPolicy, c.name, c.n)
		}
	}
	if p.Within < 0 {
		return fmt.Errorf("%w: keep_within is negative", ErrPolicy)
	}
	if p.RequireWithin < 0 {
		return fmt.Errorf("%w: require_within is negative", ErrPolicy)
	}
	for k := range p.Labels {
		if k == "" {
			return fmt.Errorf("%w: keep_label needs key=value", ErrPolicy)
		}
	}
	return nil
}

// Group names what a snapshot holds for one source: component "d1", source "app".
type Group struct {
	Component string
	Source    string
}

// String is "component/source".
func (g Group) String() string { return g.Component + "/" + g.Source }

// Snapshot is what retention needs to know about a snapshot.
type Snapshot struct {
	ID     string
	Time   time.Time
	Labels map[string]string
	// Groups are the (component, source) pairs the snapshot holds; a snapshot with none is evaluated
	// in one group of its own kind, Group{}.
	Groups []Group
}

// Policies picks the policy for each group: Sources["d1/app"], else Components["d1"], else Default.
type Policies struct {
	Default    Policy
	Components map[string]Policy
	Sources    map[string]Policy
	// Location is the time zone of the calendar rules (default UTC).
	Location *time.Location
	// AllowRemoveAll lets an empty policy remove a group's snapshots. Without it a group whose policy
	// is empty keeps everything (reason "no-policy"), so configuring d1 alone never wipes r2.
	AllowRemoveAll bool
}

// For returns the policy that applies to g.
func (ps Policies) For(g Group) Policy {
	if p, ok := ps.Sources[g.String()]; ok {
		return p
	}
	if p, ok := ps.Components[g.Component]; ok {
		return p
	}
	return ps.Default
}

// Empty reports whether every policy is empty.
func (ps Policies) Empty() bool {
	if !ps.Default.Empty() {
		return false
	}
	for _, p := range ps.Components {
		if !p.Empty() {
			return false
		}
	}
	for _, p := range ps.Sources {
		if !p.Empty() {
			return false
		}
	}
	return true
}

// Validate checks every policy.
func (ps Policies) Validate() error {
	if err := ps.Default.Validate(); err != nil {
		return err
	}
	for k, p := range ps.Components {
		if err := p.Validate(); err != nil {
			return fmt.Errorf("retention.%s: %w", k, err)
		}
	}
	for k, p := range ps.Sources {
		if err := p.Validate(); err != nil {
			return fmt.Errorf("retention.%s: %w", k, err)
		}
	}
	return nil
}

// Kept is a snapshot the policy keeps and every rule that keeps it.
type Kept struct {
	ID      string    `json:"snapshot"`
	Time    time.Time `json:"time"`
	Reasons []string  `json:"reasons"`
	// ByGroup says which rules keep it in which group ("d1/app": ["daily"]).
	ByGroup map[string][]string `json:"by_group,omitempty"`
}

// Violation is a broken enforcement rule: a required snapshot is missing.
type Violation struct {
	Group   string `json:"group"`
	Rule    string `json:"rule"`
	Message string `json:"message"`
}

// Result is the outcome of Evaluate. Keep and Remove together hold every snapshot once, newest first.
type Result struct {
	Keep       []Kept      `json:"kept"`
	Remove     []Snapshot  `json:"-"`
	Violations []Violation `json:"violations,omitempty"`
}

// Evaluate applies the policies to the snapshots at time now. A snapshot is kept when any rule keeps
// it in any of its groups; only snapshots no rule keeps anywhere are in Remove.
func Evaluate(snaps []Snapshot, ps Policies, now time.Time) Result {
	loc := ps.Location
	if loc == nil {
		loc = time.UTC
	}
	sorted := newestFirst(snaps)
	groups, members := groupMembers(sorted)
	k := keeper{reasons: make([]map[string]bool, len(sorted)), byGroup: make([]map[string][]string, len(sorted))}
	var res Result
	for _, g := range groups {
		p := ps.For(g)
		idx := members[g]
		k.apply(g, p, idx, sorted, loc, !ps.AllowRemoveAll)
		if v, bad := requireWithin(g, p, idx, sorted, now); bad {
			res.Violations = append(res.Violations, v)
		}
	}
	order := []string{RuleLast, RuleHourly, RuleDaily, RuleWeekly, RuleMonthly, RuleYearly, RuleWithin, RuleLabel, RuleNoPolicy}
	for i, s := range sorted {
		if k.reasons[i] == nil {
			res.Remove = append(res.Remove, s)
			continue
		}
		kept := Kept{ID: s.ID, Time: s.Time, ByGroup: k.byGroup[i]}
		for _, r := range order {
			if k.reasons[i][r] {
				kept.Reasons = append(kept.Reasons, r)
			}
		}
		res.Keep = append(res.Keep, kept)
	}
	return res
}

// newestFirst sorts a copy of snaps newest first (ties by id, so the order is total).
func newestFirst(snaps []Snapshot) []Snapshot {
	sorted := append([]Snapshot(nil), snaps...)
	sort.SliceStable(sorted, func(i, j int) bool {
		if !sorted[i].Time.Equal(sorted[j].Time) {
			return sorted[i].Time.After(sorted[j].Time)
		}
		return sorted[i].ID > sorted[j].ID
	})
	return sorted
}

// groupMembers lists the groups (sorted by name) and, per group, the indexes of its snapshots newest
// first; a snapshot without groups is in the empty group.
func groupMembers(sorted []Snapshot) ([]Group, map[Group][]int) {
	members := map[Group][]int{}
	var groups []Group
	for i, s := range sorted {
		gs := s.Groups
		if len(gs) == 0 {
			gs = []Group{{}}
		}
		seen := map[Group]bool{}
		for _, g := range gs {
			if seen[g] {
				continue
			}
			seen[g] = true
			if _, ok := members[g]; !ok {
				groups = append(groups, g)
			}
			members[g] = append(members[g], i)
		}
	}
	sort.Slice(groups, func(i, j int) bool { return groups[i].String() < groups[j].String() })
	return groups, members
}

// keeper collects, per snapshot, the rules that keep it and in which group.
type keeper struct {
	reasons []map[string]bool
	byGroup []map[string][]string
}

func (k *keeper) keep(i int, g Group, rule string) {
	if k.reasons[i] == nil {
		k.reasons[i] = map[string]bool{}
		k.byGroup[i] = map[string][]string{}
	}
	k.reasons[i][rule] = true
	if !contains(k.byGroup[i][g.String()], rule) {
		k.byGroup[i][g.String()] = append(k.byGroup[i][g.String()], rule)
	}
}

// periodRules are the calendar rules: the newest snapshot of each of the last n periods is kept.
var periodRules = []struct {
	rule string
	n    func(Policy) int
	key  func(time.Time) string
}{
	{RuleHourly, func(p Policy) int { return p.Hourly }, func(t time.Time) string { return t.Format("2006-01-02T15") }},
	{RuleDaily, func(p Policy) int { return p.Daily }, func(t time.Time) string { return t.Format("2006-01-02") }},
	{RuleWeekly, func(p Policy) int { return p.Weekly }, func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprintf("%d-W%02d", y, w) }},
	{RuleMonthly, func(p Policy) int { return p.Monthly }, func(t time.Time) string { return t.Format("2006-01") }},
	{RuleYearly, func(p Policy) int { return p.Yearly }, func(t time.Time) string { return t.Format("2006") }},
}

// apply keeps what policy p keeps of group g's snapshots idx (newest first).
func (k *keeper) apply(g Group, p Policy, idx []int, sorted []Snapshot, loc *time.Location, keepUnpolicied bool) {
	if p.Empty() && keepUnpolicied {
		for _, i := range idx {
			k.keep(i, g, RuleNoPolicy)
		}
	}
	for n, i := range idx {
		if n < p.Last {
			k.keep(i, g, RuleLast)
		}
	}
	for _, b := range periodRules {
		n := b.n(p)
		last, count := "", 0
		for _, i := range idx {
			if count >= n {
				break
			}
			if key := b.key(sorted[i].Time.In(loc)); key != last {
				last = key
				k.keep(i, g, b.rule) // the newest snapshot of each period
				count++
			}
		}
	}
	if p.Within > 0 && len(idx) > 0 {
		newest := sorted[idx[0]].Time
		for _, i := range idx {
			if newest.Sub(sorted[i].Time) < p.Within {
				k.keep(i, g, RuleWithin)
			}
		}
	}
	for _, i := range idx {
		for key, v := range p.Labels {
			if sv, ok := sorted[i].Labels[key]; ok && sv == v {
				k.keep(i, g, RuleLabel)
			}
		}
	}
}

// requireWithin is the violation of p's require_within in group g, if any.
func requireWithin(g Group, p Policy, idx []int, sorted []Snapshot, now time.Time) (Violation, bool) {
	if p.RequireWithin <= 0 || len(idx) > 0 && now.Sub(sorted[idx[0]].Time) <= p.RequireWithin {
		return Violation{}, false
	}
	age := "no snapshot"
	if len(idx) > 0 {
		age = "newest is " + now.Sub(sorted[idx[0]].Time).Round(time.Minute).String() + " old"
	}
	return Violation{Group: g.String(), Rule: "require_within",
		Message: fmt.Sprintf("%s: no snapshot within %s (%s)", g, FormatDuration(p.RequireWithin), age)}, true
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// ParseDuration reads a duration in cfbackup's one grammar (pkg/timespec: 26h, 30d, 2w, 1d12h, 1.5d);
// errors wrap ErrPolicy.
func ParseDuration(s string) (time.Duration, error) {
	d, err := timespec.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrPolicy, err)
	}
	return d, nil
}

// FormatDuration prints whole days as "30d" and anything else as Go does.
func FormatDuration(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}
