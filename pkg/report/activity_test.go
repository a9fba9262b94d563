package report_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cfbackup/cfbackup/pkg/audit"
	"github.com/cfbackup/cfbackup/pkg/keys"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/record"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/report"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/mem"
)

func newRepo(t testing.TB, st store.Store) *repo.Repo {
	t.Helper()
	_, rcp, err := keys.Generate(false)
	if err != nil {
		t.Fatal(err)
	}
	r, _, err := repo.Init(context.Background(), st, repo.InitOptions{Recipients: []string{rcp}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func appendAll(t testing.TB, l *audit.Log, recs ...*audit.Record) {
	t.Helper()
	for _, rec := range recs {
		if err := l.Append(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
	}
}

// The example: 30 daily backup runs, one failure, retention keeps 7. The success rate is
// 30/31 (96.8 %), not 7/8 (87.5 %), and the 23 pruned snapshots' sizes and durations stay in the
// report's history because the prune record kept them.
func TestRunsCountedFromTheTrailNotTheSnapshots(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	r := newRepo(t, st)
	l := &audit.Log{Store: st}
	removed := []record.PruneRemoved{}
	for i := range 30 {
		at := t0.Add(time.Duration(i) * 24 * time.Hour)
		id := fmt.Sprintf("%016x", i+1)
		run := fmt.Sprint("run", i)
		appendAll(t, l, &audit.Record{Time: at, Command: "backup", Result: audit.ResultStarted, Run: run, Components: []string{"d1"}},
			&audit.Record{Time: at.Add(time.Minute), Command: "backup", Result: audit.ResultOK, Run: run, Components: []string{"d1"}, Snapshots: []string{id}})
		size := int64(1000 + i)
		if i >= 23 {
			m := &manifest.Manifest{Format: 1, ID: id, Time: at, Duration: manifest.Duration(time.Duration(i+1) * time.Second), Components: []string{"d1"},
				Sources: []manifest.Source{{Component: "d1", ID: "u", Name: "app", Items: 1, Size: size}}, Items: 1, Size: size, StoredSize: 10}
			if err := r.SaveManifest(ctx, m); err != nil {
				t.Fatal(err)
			}
			continue
		}
		removed = append(removed, record.PruneRemoved{Snapshot: id, Time: at.Format(time.RFC3339), Components: []string{"d1"}, StoredSize: 10,
			Size: size, Items: 1, DurationSeconds: float64(i + 1), ComponentSizes: map[string]int64{"d1": size}})
	}
	appendAll(t, l, &audit.Record{Time: t0.Add(15 * 24 * time.Hour), Command: "backup", Result: audit.ResultStarted, Run: "bad", Components: []string{"d1"}},
		&audit.Record{Time: t0.Add(15 * 24 * time.Hour), Command: "backup", Result: audit.ResultError, Run: "bad", Components: []string{"d1"}, ExitCode: 5, Error: "auth"})
	pt := t0.Add(30 * 24 * time.Hour)
	putJSON(t, st, "prune/"+pt.Format("20060102T150405Z")+"-p1.json", record.Prune{Time: pt, RunID: "p1", Actor: "cron", Kept: []record.PruneKept{}, Removed: removed, Errors: []string{}})

	rep, err := report.Build(ctx, r, report.Options{Now: pt})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Components) != 1 {
		t.Fatalf("components %+v", rep.Components)
	}
	d1 := rep.Components[0]
	if d1.Backups != 30 || d1.Failures != 1 || d1.Snapshots != 7 || d1.Pruned != 23 || fmt.Sprintf("%.3f", *d1.SuccessRate) != "0.968" {
		t.Fatalf("d1 %+v rate %v", d1, *d1.SuccessRate)
	}
	if d1.AvgDurationSeconds != 15.5 || d1.LastSize != 1029 {
		t.Fatalf("mean duration %v last size %d: the pruned points must count", d1.AvgDurationSeconds, d1.LastSize)
	}
	if len(rep.Backups) != 30 || !rep.Backups[0].Pruned || rep.Backups[0].Size != 1000 || rep.Backups[0].DurationSeconds != 1 || rep.Backups[29].Pruned {
		t.Fatalf("backups: %d, first %+v", len(rep.Backups), rep.Backups[0])
	}
	var html bytes.Buffer
	if err := rep.WriteHTML(&html); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(html.String(), "(pruned ") {
		t.Fatal("the HTML does not mark pruned snapshots")
	}
}

// Restores, test-restores, copies, approvals and break-glass restores are their own sections, each run
// counted once (its end record; a start without an end as unfinished); a successful test-restore is
// the component's drill pass.
func TestActivitySectionsAndDrills(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	r := newRepo(t, st)
	l := &audit.Log{Store: st}
	at := func(h int) time.Time { return t0.Add(time.Duration(h) * time.Hour) }
	appendAll(t, l,
		&audit.Record{Time: at(0), Command: "backup", Result: audit.ResultStarted, Run: "b", Components: []string{"d1", "r2"}},
		&audit.Record{Time: at(1), Command: "backup", Result: audit.ResultOK, Run: "b", Components: []string{"d1", "r2"}, Snapshots: []string{"aaaa"}},
		&audit.Record{Time: at(2), Command: "restore", Result: audit.ResultStarted, Run: "r1", Args: []string{"restore", "aaaa", "--to-file=[value]"}},
		&audit.Record{Time: at(3), Command: "restore", Result: audit.ResultOK, Run: "r1", Args: []string{"restore", "aaaa", "--to-file=[value]"}, Components: []string{"d1"}, Reads: audit.ReadsData, Bytes: 500},
		&audit.Record{Time: at(4), Command: "restore", Result: audit.ResultStarted, Run: "r2", Args: []string{"restore", "--break-glass"}},
		&audit.Record{Time: at(5), Command: "restore", Result: audit.ResultError, Run: "r2", Args: []string{"restore", "--break-glass"}, ExitCode: 4, Error: "refused"},
		&audit.Record{Time: at(6), Command: "restore", Result: audit.ResultStarted, Run: "r3", Args: []string{"restore", "--break-glass=INC-7 primary lost", "--yes"}, Components: []string{"r2"}},
		&audit.Record{Time: at(7), Command: "test-restore", Result: audit.ResultOK, Run: "t1", Components: []string{"d1"}, Snapshots: []string{"aaaa"}, Reads: audit.ReadsData, Bytes: 70},
		&audit.Record{Time: at(8), Command: "test-restore", Result: audit.ResultError, Run: "t2", Components: []string{"r2"}, ExitCode: 8},
		&audit.Record{Time: at(9), Command: "copy", Result: audit.ResultStarted, Run: "c1"},
		&audit.Record{Time: at(10), Command: "copy", Result: audit.ResultOK, Run: "c1", Reads: audit.ReadsCiphertext, Bytes: 900},
		&audit.Record{Time: at(11), Command: "approve", Result: audit.ResultStarted, Run: "a1", Args: []string{"approve", "0123abcd"}},
		&audit.Record{Time: at(12), Command: "approve", Result: audit.ResultOK, Run: "a1", Args: []string{"approve", "0123abcd"}},
	)
	rep, err := report.Build(ctx, r, report.Options{Now: at(24 * 40)})
	if err != nil {
		t.Fatal(err)
	}
	a := rep.Activity
	check := func(name string, s report.Section, ok, failed, unfinished int, bytes int64) {
		t.Helper()
		if s.OK != ok || s.Failed != failed || s.Unfinished != unfinished || s.Bytes != bytes || len(s.Runs) != ok+failed+unfinished {
			t.Errorf("%s: %+v", name, s)
		}
	}
	check("restores", a.Restores, 1, 1, 1, 500)
	check("break-glass", a.BreakGlass, 0, 1, 1, 0)
	check("test-restores", a.TestRestores, 1, 1, 0, 70)
	check("copies", a.Copies, 1, 0, 0, 900)
	check("approvals", a.Approvals, 1, 0, 0, 0)
	if a.Restores.Runs[0].Reads != "data" || a.Restores.Runs[0].Args[2] != "--to-file=[value]" || a.BreakGlass.Runs[1].Result != "unfinished" {
		t.Errorf("restore runs %+v", a.Restores.Runs)
	}
	// d1 passed a drill 40 days minus 7 hours before the report: overdue (monthly). r2 never passed.
	if len(rep.Drills) != 2 || rep.Drills[0].Component != "d1" || rep.Drills[0].LastPass == nil || !rep.Drills[0].LastPass.Equal(at(7)) ||
		rep.Drills[0].Snapshot != "aaaa" || !rep.Drills[0].Overdue || rep.Drills[1].LastPass != nil || rep.Drills[1].Failures != 1 || !rep.Drills[1].Overdue {
		t.Fatalf("drills %+v", rep.Drills)
	}
	if rep.Components[0].LastDrillPass == nil || rep.Components[1].LastDrillPass != nil {
		t.Fatalf("components %+v", rep.Components)
	}
	rep, err = report.Build(ctx, r, report.Options{Now: at(24 * 10)})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Drills[0].Overdue || !rep.Drills[1].Overdue {
		t.Fatalf("drills ten days on %+v", rep.Drills)
	}
	var txt bytes.Buffer
	if err := rep.WriteText(&txt); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Restores: 1 ok, 1 failed, 1 unfinished, 500 byte(s) read.", "Break-glass restores: 0 ok, 1 failed, 1 unfinished",
		"Approvals: 1 ok", "Copies: 1 ok", "d1      last pass 2026-03-01T09:00:00Z  current", "r2      last pass never  OVERDUE"} {
		if !strings.Contains(txt.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, txt.String())
		}
	}
	// The failed and unfinished runs are in the failures list too, in trail order.
	var seqs []int64
	for _, f := range rep.Failures {
		seqs = append(seqs, f.Seq)
	}
	if fmt.Sprint(seqs) != "[6 7 9]" {
		t.Fatalf("failures %v", seqs)
	}
}
