// Package report assembles the compliance report: what was backed up (and what failed), what
// retention kept and deleted, what is on legal hold, what was verified or test-restored, whether the
// audit chain is intact, and to whom the data is encrypted. It reads only plaintext objects — manifest
// summaries, audit/, prune/, holds/, verify/ and config.json — so it needs no identity, and renders
// the result as JSON, CSV or one self-contained HTML file with inline SVG charts.
package report

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/cfbackup/cfbackup/pkg/audit"
	"github.com/cfbackup/cfbackup/pkg/layout"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/record"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/stats"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// Options choose the report's window.
type Options struct {
	// Since is the start of the window; zero means everything.
	Since time.Time
	// Now is the report's time (tests inject it); default time.Now.
	Now time.Time
	// PolicyViolations are what the configured retention policy finds wrong now (snapshots that
	// outlive it, required snapshots missing): evaluated by the caller with a dry-run prune.
	PolicyViolations []string
	// PolicyEvaluated says a retention policy is configured and was evaluated.
	PolicyEvaluated bool
}

// Report is the whole report; its JSON encoding is a documented contract (docs/CLI_JSON_OUTPUT.md).
type Report struct {
	Generated    time.Time          `json:"generated"`
	Since        *time.Time         `json:"since"`
	Repository   string             `json:"repository"`
	RepositoryID string             `json:"repository_id"`
	Recipients   []repo.Recipient   `json:"recipients"`
	Components   []ComponentSummary `json:"components"`
	Backups      []Backup           `json:"backups"`
	Failures     []Failure          `json:"failures"`
	// Activity is what the audit trail says besides backups: restores, test-restores, copies,
	// approvals and break-glass restores, each counted and listed (activity.go).
	Activity Activity `json:"activity"`
	// Drills is, per component, when it last passed a drill (a successful test-restore of it).
	Drills       []Drill      `json:"drills"`
	Retention    Retention    `json:"retention"`
	Holds        []Hold       `json:"holds"`
	Verification Verification `json:"verification"`
	Audit        audit.Status `json:"audit"`
	// Storage is what the repository stores and how fast it grows: the figures of `cfbackup stats`
	// (pkg/stats, one implementation), without source names.
	Storage Storage `json:"storage"`
	// Warnings name objects the report could not read (it reports what it can).
	Warnings []string `json:"warnings"`
}

// ComponentSummary is one component's backups in the window.
type ComponentSummary struct {
	Component string `json:"component"`
	// Backups counts the successful backup runs of the component: "ok" backup records of the audit
	// trail, plus snapshots (kept or pruned) that no audited run names (written before the trail, or
	// copied in from another repository), so retention removing snapshots never lowers it. Failures
	// counts backup runs that recorded an error; Unfinished backup runs that started and never
	// recorded an end (killed or crashed).
	Backups    int `json:"backups"`
	Failures   int `json:"failures"`
	Unfinished int `json:"unfinished"`
	// Snapshots counts the window's snapshots of the component that still exist; Pruned those that
	// prune removed (their figures come from the prune records).
	Snapshots int `json:"snapshots"`
	Pruned    int `json:"pruned"`
	// LastDrillPass is when the component last passed a drill (Drills), whenever that was.
	LastDrillPass *time.Time `json:"last_drill_pass"`
	// SuccessRate is Backups / (Backups + Failures + Unfinished); null when there was no run.
	SuccessRate        *float64   `json:"success_rate"`
	LastSuccess        *time.Time `json:"last_success"`
	LastFailure        *time.Time `json:"last_failure"`
	LastSize           int64      `json:"last_size"`
	AvgDurationSeconds float64    `json:"avg_duration_seconds"`
}

// Storage is the report's storage section: pkg/stats' figures for the whole repository (not only the
// window), by prefix and component, and the growth of the snapshots in the window.
type Storage struct {
	TotalObjects      int64             `json:"total_objects"`
	TotalBytes        int64             `json:"total_bytes"`
	Prefixes          []stats.Prefix    `json:"prefixes"`
	LogicalBytes      int64             `json:"logical_bytes"`
	ReferencedBytes   int64             `json:"referenced_bytes"`
	UnreferencedBytes int64             `json:"unreferenced_bytes"`
	SavingsRatio      float64           `json:"savings_ratio"`
	Components        []stats.Component `json:"components"`
	Growth            stats.Growth      `json:"growth"`
}

// Backup is one snapshot in the window.
type Backup struct {
	Snapshot        string            `json:"snapshot"`
	Time            time.Time         `json:"time"`
	Components      []string          `json:"components"`
	ComponentSizes  map[string]int64  `json:"component_sizes"`
	Items           int64             `json:"items"`
	Size            int64             `json:"size"`
	StoredSize      int64             `json:"stored_size"`
	DurationSeconds float64           `json:"duration_seconds"`
	Labels          map[string]string `json:"labels,omitempty"`
	Host            string            `json:"host,omitempty"`
	Actor           string            `json:"actor,omitempty"`
	Verified        bool              `json:"verified"`
	ReadDataChecked bool              `json:"read_data_verified"`
	TestRestored    bool              `json:"test_restored"`
	Held            bool              `json:"held"`
	// Pruned: retention removed the snapshot at PrunedAt; its figures come from that prune record
	// (records older than those figures give only the stored size).
	Pruned   bool       `json:"pruned"`
	PrunedAt *time.Time `json:"pruned_at,omitempty"`
	// Sharded is the run of a merged sharded snapshot: its id, shard count and what each shard did
	// (ShardedRun; docs/SHARDING.md). Omitted for other snapshots, and for pruned ones.
	Sharded *ShardedRun `json:"sharded,omitempty"`
}

// Failure is a failed or unfinished run from the audit trail.
type Failure struct {
	Seq        int64     `json:"seq"`
	Time       time.Time `json:"time"`
	Command    string    `json:"command"`
	Kind       string    `json:"kind"` // "error" | "unfinished"
	Actor      string    `json:"actor"`
	Host       string    `json:"host"`
	Components []string  `json:"components"`
	Error      string    `json:"error"`
	ExitCode   int       `json:"exit_code"`
}

// Retention is what prune runs recorded under prune/ in the window.
type Retention struct {
	// Policy is the newest prune run's policy (flags as given); null when prune never ran.
	Policy  map[string]any `json:"policy"`
	LastRun *time.Time     `json:"last_run"`
	Runs    []PruneRun     `json:"runs"`
	// Evaluated: the configured policy was checked against the repository when the report was made;
	// Violations lists what it found (empty: compliant).
	Evaluated  bool     `json:"evaluated"`
	Violations []string `json:"violations"`
}

// PruneRun is one prune/ record as the engine wrote it (pkg/record, docs/FORMAT.md), with its key.
type PruneRun struct {
	// Key is the record's object key (prune/<time>-<run id>.json).
	Key string `json:"key"`
	record.Prune
}

// Hold is a legal hold (holds/ records): its add record and, once released, its release record.
type Hold struct {
	Snapshot      string     `json:"snapshot"`
	ID            string     `json:"id"`
	Reason        string     `json:"reason"`
	Case          string     `json:"case,omitempty"`
	Until         *time.Time `json:"until"`
	Actor         string     `json:"actor"`
	Time          time.Time  `json:"time"`
	Active        bool       `json:"active"`
	Released      *time.Time `json:"released"`
	ReleasedBy    string     `json:"released_by,omitempty"`
	ReleaseReason string     `json:"release_reason,omitempty"`
}

// Verification is verification and test-restore coverage of the window's snapshots.
type Verification struct {
	Snapshots    int `json:"snapshots"`
	Verified     int `json:"verified"`
	ReadData     int `json:"read_data_verified"`
	TestRestored int `json:"test_restored"`
	// Coverage ratios over Snapshots (0 when there is none).
	Coverage            float64 `json:"coverage"`
	ReadDataCoverage    float64 `json:"read_data_coverage"`
	TestRestoreCoverage float64 `json:"test_restore_coverage"`
	Failed              int     `json:"failed"`
	// FailedByKind counts the failed records by what failed (their failure_kind: integrity, restore,
	// assertion, error, unsupported; "unrecorded" for records written before the field existed).
	FailedByKind map[string]int `json:"failed_by_kind"`
	Records      []VerifyRecord `json:"records"`
}

// VerifyRecord is one verify/ record (pkg/record; failure_kind says what failed: source.FailureKinds).
// A test-restore records its outcome the same way with a mode starting with "test-restore".
type VerifyRecord = record.Verify

// Build reads the repository and assembles the report.
func Build(ctx context.Context, r *repo.Repo, o Options) (*Report, error) {
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	now = now.UTC()
	rep := &Report{Generated: now, Repository: r.Store.Location(), RepositoryID: r.Config.ID, Recipients: r.Config.Recipients,
		Components: []ComponentSummary{}, Backups: []Backup{}, Failures: []Failure{}, Holds: []Hold{}, Warnings: []string{}, Activity: newActivity(), Drills: []Drill{},
		Retention: Retention{Runs: []PruneRun{}}, Verification: Verification{Records: []VerifyRecord{}, FailedByKind: map[string]int{}}}
	if rep.Recipients == nil {
		rep.Recipients = []repo.Recipient{}
	}
	if !o.Since.IsZero() {
		s := o.Since.UTC()
		rep.Since = &s
	}
	b := &builder{rep: rep, since: o.Since, now: now, comps: map[string]*ComponentSummary{}, unaudited: map[string]snapRef{}, drills: map[string]*Drill{}}
	in, err := b.read(ctx, r, now)
	if err != nil {
		return nil, err
	}
	held := b.addHolds(in.holds)
	covered := coverage(in.verifies)
	inWindow := b.addBackups(in.snaps, held, covered)
	b.addPruned(in.runs, covered)
	if err := b.addStorage(ctx, r, in.snaps, held, now); err != nil {
		return nil, err
	}
	if err := b.walkAudit(ctx, r.Store); err != nil {
		return nil, fmt.Errorf("read the audit trail: %w", err)
	}
	b.summarize()
	b.addRetention(in.runs, o)
	b.addVerification(in.verifies, inWindow, covered)
	sort.Strings(rep.Warnings)
	return rep, nil
}

// builder assembles one report.
type builder struct {
	rep   *Report
	since time.Time
	now   time.Time
	comps map[string]*ComponentSummary
	// unaudited are the window's snapshots (kept or pruned) that no "ok" backup record names yet,
	// with their components: each counts as one successful run once the trail is read.
	unaudited map[string]snapRef
	drills    map[string]*Drill
}

// in reports whether t is in the report's window.
func (b *builder) in(t time.Time) bool { return b.since.IsZero() || !t.Before(b.since) }

func (b *builder) summary(c string) *ComponentSummary {
	s := b.comps[c]
	if s == nil {
		s = &ComponentSummary{Component: c}
		b.comps[c] = s
	}
	return s
}

// hasFigures: the backup's size and duration are known (false only for a snapshot pruned by a run
// whose record predates those figures).
func (bk Backup) hasFigures() bool {
	return !bk.Pruned || bk.Size > 0 || bk.DurationSeconds > 0 || len(bk.ComponentSizes) > 0
}

// snapRef is a snapshot's components and time.
type snapRef struct {
	comps []string
	time  time.Time
}

// inputs is everything a report reads from the repository.
type inputs struct {
	snaps    []*manifest.Manifest
	holds    []Hold
	verifies []VerifyRecord
	runs     []PruneRun
}

// read loads the snapshots, holds, verify and prune records (the audit trail is walked later, record
// by record: walkAudit); what cannot be read becomes a warning, a listing error fails the report.
func (b *builder) read(ctx context.Context, r *repo.Repo, now time.Time) (*inputs, error) {
	rep := b.rep
	in := &inputs{}
	snaps, bad, err := r.ListSnapshots(ctx)
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	in.snaps = snaps
	for k, e := range bad {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("%s: unreadable manifest: %v", k, e))
	}
	if in.holds, err = readHolds(ctx, r.Store, now, rep); err != nil {
		return nil, err
	}
	if err := readJSON(ctx, r.Store, record.VerifyPrefix, rep, func(key string, raw []byte) error {
		var v VerifyRecord
		if err := json.Unmarshal(raw, &v); err != nil {
			return err
		}
		in.verifies = append(in.verifies, v)
		return nil
	}); err != nil {
		return nil, err
	}
	if err := readJSON(ctx, r.Store, record.PrunePrefix, rep, func(key string, raw []byte) error {
		var p PruneRun
		if err := json.Unmarshal(raw, &p); err != nil {
			return err
		}
		p.Key = key
		in.runs = append(in.runs, p)
		return nil
	}); err != nil {
		return nil, err
	}
	return in, nil
}

// addHolds lists every active hold and the others created or released in the window, and returns
// the held snapshots.
func (b *builder) addHolds(holds []Hold) map[string]bool {
	held := map[string]bool{}
	for _, h := range holds {
		if h.Active {
			held[h.Snapshot] = true
		}
		if h.Active || b.in(h.Time) || (h.Released != nil && b.in(*h.Released)) {
			b.rep.Holds = append(b.rep.Holds, h)
		}
	}
	sort.Slice(b.rep.Holds, func(i, j int) bool { return b.rep.Holds[i].Time.Before(b.rep.Holds[j].Time) })
	return held
}

// cov is how a snapshot was checked successfully.
type cov struct{ ok, readData, testRestore bool }

// coverage is, per snapshot, which successful checks the verify records show.
func coverage(verifies []VerifyRecord) map[string]*cov {
	covered := map[string]*cov{}
	for _, v := range verifies {
		c := covered[v.Snapshot]
		if c == nil {
			c = &cov{}
			covered[v.Snapshot] = c
		}
		if !v.OK {
			continue
		}
		c.ok = true
		switch {
		case strings.HasPrefix(v.Mode, "test-restore"):
			c.testRestore = true
		case strings.HasPrefix(v.Mode, "read-data"):
			c.readData = true
		}
	}
	return covered
}

// addBackups lists the window's snapshots oldest first and counts them per component; it returns
// the snapshots in the window.
func (b *builder) addBackups(snaps []*manifest.Manifest, held map[string]bool, covered map[string]*cov) map[string]bool {
	inWindow := map[string]bool{}
	for i := len(snaps) - 1; i >= 0; i-- { // ListSnapshots is newest first
		m := snaps[i]
		if !b.in(m.Time) {
			continue
		}
		inWindow[m.ID] = true
		bk := Backup{Snapshot: m.ID, Time: m.Time.UTC(), Components: m.Components, ComponentSizes: map[string]int64{}, Items: m.Items, Size: m.Size,
			StoredSize: m.StoredSize, DurationSeconds: time.Duration(m.Duration).Seconds(), Labels: m.Labels, Host: m.Host, Actor: m.Actor, Held: held[m.ID],
			Sharded: Sharded(m)}
		if bk.Components == nil {
			bk.Components = []string{}
		}
		for _, s := range m.Sources {
			bk.ComponentSizes[s.Component] += s.Size
		}
		if c := covered[m.ID]; c != nil {
			bk.Verified, bk.ReadDataChecked, bk.TestRestored = c.ok, c.readData, c.testRestore
		}
		b.rep.Backups = append(b.rep.Backups, bk)
		b.unaudited[m.ID] = snapRef{bk.Components, bk.Time}
		for _, c := range bk.Components {
			b.summary(c).Snapshots++
		}
	}
	return inWindow
}

// addPruned adds the window's snapshots that prune removed, with the figures their prune record
// kept, so the size and duration history does not lose them; Backups stays sorted oldest first.
func (b *builder) addPruned(runs []PruneRun, covered map[string]*cov) {
	for _, p := range runs {
		if p.DryRun {
			continue
		}
		for _, x := range p.Removed {
			t, err := time.Parse(time.RFC3339, x.Time)
			if err != nil || !b.in(t) {
				continue
			}
			if _, dup := b.unaudited[x.Snapshot]; dup {
				continue // still listed (a removal that failed), or in two records
			}
			at := p.Time.UTC()
			bk := Backup{Snapshot: x.Snapshot, Time: t.UTC(), Components: x.Components, ComponentSizes: x.ComponentSizes, Items: x.Items, Size: x.Size,
				StoredSize: x.StoredSize, DurationSeconds: x.DurationSeconds, Pruned: true, PrunedAt: &at}
			if bk.Components == nil {
				bk.Components = []string{}
			}
			if bk.ComponentSizes == nil {
				bk.ComponentSizes = map[string]int64{}
			}
			if c := covered[x.Snapshot]; c != nil {
				bk.Verified, bk.ReadDataChecked, bk.TestRestored = c.ok, c.readData, c.testRestore
			}
			b.rep.Backups = append(b.rep.Backups, bk)
			b.unaudited[x.Snapshot] = snapRef{bk.Components, bk.Time}
			for _, c := range bk.Components {
				b.summary(c).Pruned++
			}
		}
	}
	sort.SliceStable(b.rep.Backups, func(i, j int) bool { return b.rep.Backups[i].Time.Before(b.rep.Backups[j].Time) })
}

func (b *builder) countFailure(comps []string, kind string, t time.Time) {
	if len(comps) == 0 {
		comps = []string{"unknown"}
	}
	for _, c := range comps {
		s := b.summary(c)
		if kind == "error" {
			s.Failures++
		} else {
			s.Unfinished++
		}
		if s.LastFailure == nil || t.After(*s.LastFailure) {
			t := t
			s.LastFailure = &t
		}
	}
}

// summarize computes each component's success rate, last size and mean duration (over its kept and
// pruned snapshots alike).
func (b *builder) summarize() {
	sum, n := map[string]float64{}, map[string]int{}
	for _, bk := range b.rep.Backups { // oldest first: the last one seen is the newest
		if !bk.hasFigures() {
			continue
		}
		for _, c := range bk.Components {
			s := b.summary(c)
			s.LastSize = bk.ComponentSizes[c]
			sum[c] += bk.DurationSeconds
			n[c]++
		}
	}
	for _, d := range b.drills {
		b.summary(d.Component).LastDrillPass = d.LastPass
	}
	for _, s := range b.comps {
		if runs := s.Backups + s.Failures + s.Unfinished; runs > 0 {
			rate := float64(s.Backups) / float64(runs)
			s.SuccessRate = &rate
		}
		if n[s.Component] > 0 {
			s.AvgDurationSeconds = sum[s.Component] / float64(n[s.Component])
		}
		b.rep.Components = append(b.rep.Components, *s)
	}
	sort.Slice(b.rep.Components, func(i, j int) bool { return b.rep.Components[i].Component < b.rep.Components[j].Component })
}

// addRetention lists the prune runs in the window and the newest run's policy.
func (b *builder) addRetention(runs []PruneRun, o Options) {
	sort.Slice(runs, func(i, j int) bool { return runs[i].Time.Before(runs[j].Time) })
	for _, p := range runs {
		if b.in(p.Time) {
			b.rep.Retention.Runs = append(b.rep.Retention.Runs, p)
		}
	}
	b.rep.Retention.Evaluated = o.PolicyEvaluated
	b.rep.Retention.Violations = append([]string{}, o.PolicyViolations...)
	if len(runs) > 0 {
		last := runs[len(runs)-1]
		if p, ok := last.Policy.(map[string]any); ok {
			b.rep.Retention.Policy = p
		}
		t := last.Time
		b.rep.Retention.LastRun = &t
	}
}

// addVerification computes the window's verification coverage and lists its records.
func (b *builder) addVerification(verifies []VerifyRecord, inWindow map[string]bool, covered map[string]*cov) {
	v := &b.rep.Verification
	v.Snapshots = len(inWindow)
	for id := range inWindow {
		if c := covered[id]; c != nil {
			if c.ok {
				v.Verified++
			}
			if c.readData {
				v.ReadData++
			}
			if c.testRestore {
				v.TestRestored++
			}
		}
	}
	if v.Snapshots > 0 {
		v.Coverage = float64(v.Verified) / float64(v.Snapshots)
		v.ReadDataCoverage = float64(v.ReadData) / float64(v.Snapshots)
		v.TestRestoreCoverage = float64(v.TestRestored) / float64(v.Snapshots)
	}
	sort.Slice(verifies, func(i, j int) bool { return verifies[i].Time.Before(verifies[j].Time) })
	for _, x := range verifies {
		if !b.in(x.Time) {
			continue
		}
		if !x.OK {
			v.Failed++
			k := x.FailureKind
			if k == "" {
				k = "unrecorded"
			}
			v.FailedByKind[k]++
		}
		v.Records = append(v.Records, x)
	}
}

// readJSON calls fn for every .json object under prefix; objects that fail to read or parse become
// warnings, storage listing errors are returned.
func readJSON(ctx context.Context, st store.Store, prefix string, rep *Report, fn func(key string, raw []byte) error) error {
	var keys []string
	if err := st.List(ctx, prefix, func(oi store.ObjectInfo) error {
		if strings.HasSuffix(oi.Key, layout.JSONSuffix) {
			keys = append(keys, oi.Key)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("list %s: %w", prefix, err)
	}
	for _, k := range keys {
		rc, err := st.Open(ctx, k, 0, -1)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("%s: %v", k, err))
			continue
		}
		raw, err := io.ReadAll(io.LimitReader(rc, 16<<20))
		rc.Close()
		if err == nil {
			err = fn(k, raw)
		}
		if err != nil {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("%s: %v", k, err))
		}
	}
	return nil
}

// readHolds pairs add and release records: holds/<snapshot>/<hold-id>.json and <hold-id>-release.json.
func readHolds(ctx context.Context, st store.Store, now time.Time, rep *Report) ([]Hold, error) {
	adds := map[string]record.Hold{}
	releases := map[string]record.Hold{}
	if err := readJSON(ctx, st, record.HoldPrefix, rep, func(key string, raw []byte) error {
		var h record.Hold
		if err := json.Unmarshal(raw, &h); err != nil {
			return err
		}
		base := strings.TrimSuffix(key, layout.JSONSuffix)
		if h.Action == record.HoldRelease || strings.HasSuffix(base, "-release") {
			releases[strings.TrimSuffix(base, "-release")] = h
		} else {
			adds[base] = h
		}
		return nil
	}); err != nil {
		return nil, err
	}
	var out []Hold
	for base, a := range adds {
		h := Hold{Snapshot: a.Snapshot, ID: a.ID, Reason: a.Reason, Case: a.Case, Until: a.Until, Actor: a.Actor, Time: a.Time.UTC()}
		if h.Snapshot == "" {
			h.Snapshot = strings.Split(strings.TrimPrefix(base, record.HoldPrefix), "/")[0]
		}
		rel, released := releases[base]
		if released {
			t := rel.Time.UTC()
			h.Released, h.ReleasedBy, h.ReleaseReason = &t, rel.Actor, rel.Reason
		}
		h.Active = !released && (h.Until == nil || h.Until.After(now))
		out = append(out, h)
	}
	return out, nil
}

// addStorage computes the storage section; growth covers the snapshots in the window (at least one).
func (b *builder) addStorage(ctx context.Context, r *repo.Repo, snaps []*manifest.Manifest, held map[string]bool, now time.Time) error {
	n := 0
	for _, m := range snaps {
		if b.in(m.Time) {
			n++
		}
	}
	st, err := stats.Compute(ctx, r.Store, snaps, stats.Options{GrowthSnapshots: max(n, 1), Held: held, Now: now})
	if err != nil {
		return err
	}
	b.rep.Storage = Storage{TotalObjects: st.TotalObjects, TotalBytes: st.TotalBytes, Prefixes: st.Prefixes, LogicalBytes: st.LogicalBytes,
		ReferencedBytes: st.ReferencedBytes, UnreferencedBytes: st.UnreferencedBytes, SavingsRatio: st.SavingsRatio, Components: st.Components, Growth: st.Growth}
	if n == 0 {
		b.rep.Storage.Growth = stats.Growth{PerSnapshot: []stats.SnapshotGrowth{}, Daily: []stats.Period{}, Weekly: []stats.Period{}}
	}
	return nil
}
