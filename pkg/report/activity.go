package report

import (
	"context"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/cfbackup/cfbackup/pkg/audit"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// DrillInterval is how old a component's last drill pass may be before the report marks its drill
// overdue: the RUNBOOK's recommended cadence (docs/RUNBOOK.md, "DR-2 kit") is a test-restore of every
// component at least monthly.
const DrillInterval = 31 * 24 * time.Hour

// Activity is what the audit trail records besides backups, each kind counted and listed. A run
// counts once: by its "ok" or "error" record, or as unfinished by a "started" record that has no end.
type Activity struct {
	// Restores are restore runs (any mode: into the account, --to-file, --to-dir, point in time).
	Restores Section `json:"restores"`
	// TestRestores are test-restore runs; a successful one is a drill pass of its components.
	TestRestores Section `json:"test_restores"`
	// Copies are copy runs (snapshots copied, still encrypted, to a replica).
	Copies Section `json:"copies"`
	// Approvals are runs of the approve command (audit records with command "approve").
	Approvals Section `json:"approvals"`
	// BreakGlass are the restore runs whose arguments contain --break-glass (also under Restores).
	BreakGlass Section `json:"break_glass"`
}

// Section counts and lists one kind of run in the window.
type Section struct {
	OK         int `json:"ok"`
	Failed     int `json:"failed"`
	Unfinished int `json:"unfinished"`
	// Bytes is what the runs read or copied (the records' bytes), in total.
	Bytes int64 `json:"bytes"`
	Runs  []Run `json:"runs"`
}

// Run is one audited run as the report lists it: the audit record that ended it (or, for an
// unfinished run, the one that started it). Plaintext-safe like the record: no item names.
type Run struct {
	Seq        int64     `json:"seq"`
	Time       time.Time `json:"time"`
	Command    string    `json:"command"`
	Result     string    `json:"result"` // "ok" | "error" | "unfinished"
	Actor      string    `json:"actor"`
	Host       string    `json:"host"`
	Args       []string  `json:"args"`
	Components []string  `json:"components"`
	Snapshots  []string  `json:"snapshots"`
	Reads      string    `json:"reads,omitempty"`
	Bytes      int64     `json:"bytes"`
	ExitCode   int       `json:"exit_code"`
	Error      string    `json:"error,omitempty"`
}

// Drill is when one component last passed a drill. A drill pass is a successful test-restore run
// that covered the component (its "ok" audit record): `make drill` (scripts/drill.sh) ends with one,
// and a scheduled test-restore is the routine drill. LastPass is over the whole trail, not only the
// window: an auditor asks when it last worked, however long ago.
type Drill struct {
	Component   string     `json:"component"`
	LastPass    *time.Time `json:"last_pass"`
	LastFailure *time.Time `json:"last_failure"`
	// Snapshot is the snapshot the last pass restored.
	Snapshot string `json:"snapshot,omitempty"`
	// Passes and Failures count the window's test-restore runs of the component.
	Passes   int `json:"passes"`
	Failures int `json:"failures"`
	// Overdue: no pass within DrillInterval of the report's time.
	Overdue bool `json:"overdue"`
}

func newActivity() Activity {
	return Activity{Restores: Section{Runs: []Run{}}, TestRestores: Section{Runs: []Run{}}, Copies: Section{Runs: []Run{}},
		Approvals: Section{Runs: []Run{}}, BreakGlass: Section{Runs: []Run{}}}
}

// walkAudit reads the audit trail once, record by record (audit.Log.Walk: nothing but the runs still
// open is kept), and counts backup runs, failures, the activity sections and drill passes.
func (b *builder) walkAudit(ctx context.Context, st store.Store) error {
	status, err := (&audit.Log{Store: st}).Walk(ctx, func(rec audit.Record) error {
		b.addRecord(rec)
		return nil
	})
	if err != nil {
		return err
	}
	b.rep.Audit = status
	for _, u := range status.Unfinished {
		if b.in(u.Time) {
			b.addRun(u, "unfinished")
		}
	}
	sort.Slice(b.rep.Failures, func(i, j int) bool { return b.rep.Failures[i].Seq < b.rep.Failures[j].Seq })
	// Snapshots no audited run names still prove a successful backup.
	for _, sr := range b.unaudited {
		b.countSuccess(sr.comps, sr.time)
	}
	b.finishDrills()
	return nil
}

// addRecord takes one audit record; "started" records are counted only if their run never ends.
func (b *builder) addRecord(rec audit.Record) {
	if rec.Command == "backup" && rec.Result == audit.ResultOK {
		for _, id := range rec.Snapshots {
			delete(b.unaudited, id)
		}
	}
	if rec.Command == "test-restore" && rec.Result != audit.ResultStarted {
		b.drill(rec)
	}
	if rec.Result == audit.ResultStarted || !b.in(rec.Time) {
		return
	}
	b.addRun(rec, rec.Result)
}

// addRun counts one finished (or unfinished) run in the window.
func (b *builder) addRun(rec audit.Record, result string) {
	comps := rec.Components
	if comps == nil {
		comps = []string{}
	}
	if result != audit.ResultOK {
		kind := result
		b.rep.Failures = append(b.rep.Failures, Failure{Seq: rec.Seq, Time: rec.Time, Command: rec.Command, Kind: kind, Actor: rec.Actor, Host: rec.Host,
			Components: comps, Error: rec.Error, ExitCode: rec.ExitCode})
	}
	if rec.Command == "backup" {
		if result == audit.ResultOK {
			b.countSuccess(comps, rec.Time)
		} else {
			b.countFailure(comps, result, rec.Time)
		}
		return
	}
	for _, sec := range b.sections(rec) {
		sec.add(rec, result, comps)
	}
}

// sections are the activity sections a record belongs to (none for most commands).
func (b *builder) sections(rec audit.Record) []*Section {
	a := &b.rep.Activity
	switch {
	case rec.Command == "restore" && isBreakGlass(rec.Args):
		return []*Section{&a.Restores, &a.BreakGlass}
	case rec.Command == "restore":
		return []*Section{&a.Restores}
	case rec.Command == "test-restore":
		return []*Section{&a.TestRestores}
	case rec.Command == "copy":
		return []*Section{&a.Copies}
	case rec.Command == "approve" || strings.HasPrefix(rec.Command, "approve "):
		return []*Section{&a.Approvals}
	}
	return nil
}

// isBreakGlass: the restore ran with --break-glass, which the audit trail records with its reason
// ("--break-glass=REASON", internal/cli/hooks.go) — or bare, as older records may.
func isBreakGlass(args []string) bool {
	return slices.ContainsFunc(args, func(a string) bool { return a == "--break-glass" || strings.HasPrefix(a, "--break-glass=") })
}

func (s *Section) add(rec audit.Record, result string, comps []string) {
	switch result {
	case audit.ResultOK:
		s.OK++
	case audit.ResultError:
		s.Failed++
	default:
		s.Unfinished++
	}
	s.Bytes += rec.Bytes
	args, snaps := rec.Args, rec.Snapshots
	if args == nil {
		args = []string{}
	}
	if snaps == nil {
		snaps = []string{}
	}
	s.Runs = append(s.Runs, Run{Seq: rec.Seq, Time: rec.Time, Command: rec.Command, Result: result, Actor: rec.Actor, Host: rec.Host, Args: args,
		Components: comps, Snapshots: snaps, Reads: rec.Reads, Bytes: rec.Bytes, ExitCode: rec.ExitCode, Error: rec.Error})
}

// countSuccess counts one successful backup run of each of its components.
func (b *builder) countSuccess(comps []string, t time.Time) {
	if len(comps) == 0 {
		comps = []string{"unknown"}
	}
	for _, c := range comps {
		s := b.summary(c)
		s.Backups++
		if s.LastSuccess == nil || t.After(*s.LastSuccess) {
			t := t
			s.LastSuccess = &t
		}
	}
}

// drill records one finished test-restore run against each component it covered.
func (b *builder) drill(rec audit.Record) {
	for _, c := range rec.Components {
		d := b.drills[c]
		if d == nil {
			d = &Drill{Component: c}
			b.drills[c] = d
		}
		t := rec.Time
		ok := rec.Result == audit.ResultOK
		switch {
		case ok && (d.LastPass == nil || t.After(*d.LastPass)):
			d.LastPass = &t
			if len(rec.Snapshots) > 0 {
				d.Snapshot = rec.Snapshots[0]
			}
		case !ok && (d.LastFailure == nil || t.After(*d.LastFailure)):
			d.LastFailure = &t
		}
		if b.in(t) && ok {
			d.Passes++
		} else if b.in(t) {
			d.Failures++
		}
	}
}

// finishDrills lists a drill line for every component the report knows (backed up or drilled),
// marking those without a pass within DrillInterval.
func (b *builder) finishDrills() {
	for c := range b.comps {
		if c != "unknown" && b.drills[c] == nil {
			b.drills[c] = &Drill{Component: c}
		}
	}
	for _, d := range b.drills {
		d.Overdue = d.LastPass == nil || b.now.Sub(*d.LastPass) > DrillInterval
		b.rep.Drills = append(b.rep.Drills, *d)
	}
	sort.Slice(b.rep.Drills, func(i, j int) bool { return b.rep.Drills[i].Component < b.rep.Drills[j].Component })
}
