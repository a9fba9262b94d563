package report_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cfbackup/cfbackup/internal/testutil/tools"
	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/audit"
	"github.com/cfbackup/cfbackup/pkg/keys"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/report"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/mem"
)

var t0 = time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)

func putJSON(t *testing.T, st store.Store, key string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(context.Background(), key, bytes.NewReader(b), store.PutOptions{IfNotExists: true}); err != nil {
		t.Fatal(err)
	}
}

// fixture builds a repository with ten daily snapshots, audit records (one failed and one killed
// backup), a prune run, holds and verify records, all in the formats of docs/FORMAT.md.
func fixture(t *testing.T) *repo.Repo {
	t.Helper()
	ctx := context.Background()
	_, rcp, err := keys.Generate(false)
	if err != nil {
		t.Fatal(err)
	}
	st := mem.New()
	r, _, err := repo.Init(ctx, st, repo.InitOptions{Recipients: []string{rcp}})
	if err != nil {
		t.Fatal(err)
	}
	l := &audit.Log{Store: st}
	var ids []string
	for i := range 10 {
		at := t0.Add(time.Duration(i) * 24 * time.Hour)
		id := fmt.Sprintf("snap%04d", i)
		ids = append(ids, id)
		comps := []string{"d1"}
		srcs := []manifest.Source{{Component: "d1", ID: "u1", Name: "app", Items: 5, Size: int64(1000 * (i + 1))}}
		if i%2 == 0 {
			comps = append(comps, "r2")
			srcs = append(srcs, manifest.Source{Component: "r2", ID: "b", Name: "media", Items: 50, Size: int64(5000 + 100*i)})
		}
		m := &manifest.Manifest{Format: 1, ID: id, Time: at, Duration: manifest.Duration(time.Duration(i+1) * time.Second), Components: comps, Sources: srcs,
			Items: 10, Size: 123, StoredSize: 100, Labels: map[string]string{"n": fmt.Sprint(i)}}
		// Each snapshot stores one new 100-byte segment and reuses the one before (storage section).
		seg := archive.SegmentInfo{ID: "seg" + id, Key: "segments/seg" + id + ".age", Size: 100}
		if err := st.Put(ctx, seg.Key, bytes.NewReader(make([]byte, 100)), store.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		m.Segments = []archive.SegmentInfo{seg}
		if i > 0 {
			m.Segments = append(m.Segments, archive.SegmentInfo{ID: "seg" + ids[i-1], Key: "segments/seg" + ids[i-1] + ".age", Size: 100})
		}
		if err := r.SaveManifest(ctx, m); err != nil {
			t.Fatal(err)
		}
		run := fmt.Sprint(i)
		for _, rec := range []*audit.Record{
			{Time: at.Add(-time.Minute), Command: "backup", Result: audit.ResultStarted, Run: run, Components: comps},
			{Time: at, Command: "backup", Result: audit.ResultOK, Run: run, Components: comps, Snapshots: []string{id}},
		} {
			if err := l.Append(ctx, rec); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, rec := range []*audit.Record{
		{Time: t0.Add(100 * time.Hour), Command: "backup", Result: audit.ResultStarted, Run: "f", Components: []string{"d1"}},
		{Time: t0.Add(100 * time.Hour), Command: "backup", Result: audit.ResultError, Run: "f", Components: []string{"d1"}, Error: "token rejected", ExitCode: 5},
		{Time: t0.Add(200 * time.Hour), Command: "backup", Result: audit.ResultStarted, Run: "killed", Components: []string{"r2"}},
	} {
		if err := l.Append(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	putJSON(t, st, "prune/20260305T000000Z-r1.json", map[string]any{"time": t0.Add(96 * time.Hour), "actor": "cron@h",
		"policy": map[string]any{"keep-daily": 7, "keep-last": 3}, "dry_run": false,
		"kept":             []map[string]any{{"snapshot": ids[9], "reasons": []string{"last", "daily"}}},
		"removed":          []map[string]any{{"snapshot": "old0001", "time": t0.Add(-30 * 24 * time.Hour), "components": []string{"d1"}}},
		"segments_deleted": 2, "bytes_freed": 4096, "errors": []string{}})
	putJSON(t, st, "holds/"+ids[1]+"/h1.json", map[string]any{"id": "h1", "snapshot": ids[1], "reason": "litigation", "case": "CASE-9", "actor": "legal@h", "time": t0.Add(30 * time.Hour), "action": "add"})
	putJSON(t, st, "holds/"+ids[2]+"/h2.json", map[string]any{"id": "h2", "snapshot": ids[2], "reason": "audit", "actor": "legal@h", "time": t0.Add(50 * time.Hour), "action": "add"})
	putJSON(t, st, "holds/"+ids[2]+"/h2-release.json", map[string]any{"id": "h2", "snapshot": ids[2], "reason": "audit closed", "actor": "legal@h", "time": t0.Add(70 * time.Hour), "action": "release"})
	putJSON(t, st, "holds/"+ids[3]+"/h3.json", map[string]any{"id": "h3", "snapshot": ids[3], "reason": "short", "until": t0.Add(80 * time.Hour), "actor": "legal@h", "time": t0.Add(75 * time.Hour), "action": "add"})
	putJSON(t, st, "verify/20260302T000000.000000000Z-"+ids[0]+".json", map[string]any{"time": t0.Add(time.Hour), "ok": true, "snapshot": ids[0], "mode": "quick", "segments_checked": 1, "segments_total": 1, "problems": []string{}})
	putJSON(t, st, "verify/20260303T000000.000000000Z-"+ids[1]+".json", map[string]any{"time": t0.Add(25 * time.Hour), "ok": true, "snapshot": ids[1], "mode": "read-data", "segments_checked": 1, "segments_total": 1, "problems": []string{}})
	putJSON(t, st, "verify/20260304T000000.000000000Z-"+ids[2]+".json", map[string]any{"time": t0.Add(49 * time.Hour), "ok": false, "snapshot": ids[2], "mode": "read-data", "problems": []string{"segment segments/x.age: size mismatch"}})
	putJSON(t, st, "verify/20260305T000000.000000000Z-"+ids[3]+".json", map[string]any{"time": t0.Add(73 * time.Hour), "ok": true, "snapshot": ids[3], "mode": "test-restore", "problems": []string{}})
	return r
}

func build(t *testing.T, since time.Time) *report.Report {
	t.Helper()
	rep, err := report.Build(context.Background(), fixture(t), report.Options{Since: since, Now: t0.Add(240 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestBuild(t *testing.T) {
	rep := build(t, time.Time{})
	// The snapshot an old prune run removed is listed first, marked pruned; its record predates the
	// figures, so it draws no chart point and counts in no mean.
	if len(rep.Backups) != 11 || rep.Backups[0].Snapshot != "old0001" || !rep.Backups[0].Pruned || rep.Backups[1].Snapshot != "snap0000" || rep.Backups[1].Pruned {
		t.Fatalf("backups %+v", rep.Backups)
	}
	byComp := map[string]report.ComponentSummary{}
	for _, c := range rep.Components {
		byComp[c.Component] = c
	}
	d1, r2 := byComp["d1"], byComp["r2"]
	// Ten audited runs, plus the pruned snapshot that no audited run names: still a successful backup.
	if d1.Backups != 11 || d1.Snapshots != 10 || d1.Pruned != 1 || d1.Failures != 1 || d1.Unfinished != 0 || *d1.SuccessRate != 11.0/12 || d1.LastSize != 10000 || d1.AvgDurationSeconds != 5.5 {
		t.Fatalf("d1 %+v", d1)
	}
	if r2.Backups != 5 || r2.Failures != 0 || r2.Unfinished != 1 || *r2.SuccessRate != 5.0/6 {
		t.Fatalf("r2 %+v", r2)
	}
	if len(rep.Failures) != 2 || rep.Failures[0].Kind != "error" || rep.Failures[1].Kind != "unfinished" {
		t.Fatalf("failures %+v", rep.Failures)
	}
	if rep.Retention.Policy["keep-daily"] != float64(7) || len(rep.Retention.Runs) != 1 || rep.Retention.Runs[0].BytesFreed != 4096 || rep.Retention.Runs[0].Removed[0].Snapshot != "old0001" {
		t.Fatalf("retention %+v", rep.Retention)
	}
	holds := map[string]report.Hold{}
	for _, h := range rep.Holds {
		holds[h.ID] = h
	}
	if !holds["h1"].Active || holds["h2"].Active || holds["h2"].Released == nil || holds["h2"].ReleaseReason != "audit closed" || holds["h3"].Active {
		t.Fatalf("holds %+v", rep.Holds)
	}
	if !rep.Backups[2].Held || rep.Backups[3].Held { // [0] is the pruned snapshot
		t.Fatal("held flag on backups")
	}
	v := rep.Verification
	if v.Snapshots != 10 || v.Verified != 3 || v.ReadData != 1 || v.TestRestored != 1 || v.Failed != 1 || v.Coverage != 0.3 {
		t.Fatalf("verification %+v", v)
	}
	sto := rep.Storage
	if sto.ReferencedBytes != 1000 || sto.LogicalBytes != 1230 || sto.UnreferencedBytes != 0 || sto.Growth.Snapshots != 10 || sto.Growth.StoredAdded != 1000 || len(sto.Components) != 2 {
		t.Fatalf("storage %+v", sto)
	}
	if !rep.Audit.OK || rep.Audit.Records != 23 || len(rep.Recipients) != 1 || !strings.HasPrefix(rep.Recipients[0].Fingerprint, "sha256:") {
		t.Fatalf("audit %+v recipients %+v", rep.Audit, rep.Recipients)
	}
}

func TestSinceWindow(t *testing.T) {
	rep := build(t, t0.Add(5*24*time.Hour))
	if g := rep.Storage.Growth; g.Snapshots != 5 || g.StoredAdded != 500 || rep.Storage.ReferencedBytes != 1000 {
		t.Fatalf("storage growth in the window %+v", g)
	}
	if len(rep.Backups) != 5 || rep.Verification.Snapshots != 5 || rep.Verification.Verified != 0 {
		t.Fatalf("backups %d verification %+v", len(rep.Backups), rep.Verification)
	}
	// The failure at +100h is before the window; the killed run at +200h is in it.
	if len(rep.Failures) != 1 || rep.Failures[0].Kind != "unfinished" {
		t.Fatalf("failures %+v", rep.Failures)
	}
	// An active hold is listed even when it was placed before the window.
	if len(rep.Holds) != 1 || rep.Holds[0].ID != "h1" {
		t.Fatalf("holds %+v", rep.Holds)
	}
}

func TestJSONAndCSV(t *testing.T) {
	rep := build(t, time.Time{})
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	if err := json.Unmarshal(buf.Bytes(), &generic); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"generated", "since", "repository", "repository_id", "recipients", "components", "backups", "failures", "retention", "holds", "verification", "audit", "warnings", "activity", "drills"} {
		if _, ok := generic[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	buf.Reset()
	if err := rep.WriteCSV(&buf); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(rows[0], ",") != strings.Join(report.CSVHeader, ",") {
		t.Fatalf("header %v", rows[0])
	}
	sections := map[string]int{}
	for _, r := range rows[1:] {
		if len(r) != len(report.CSVHeader) {
			t.Fatalf("row width %d: %v", len(r), r)
		}
		sections[r[0]]++
	}
	want := map[string]int{"report": 1, "recipient": 1, "component": 2, "backup": 11, "drill": 2, "failure": 2, "prune": 1, "prune-kept": 1, "prune-removed": 1, "hold": 3, "coverage": 1, "verify": 4, "audit": 1}
	for k, n := range want {
		if sections[k] != n {
			t.Errorf("section %s: %d rows, want %d", k, sections[k], n)
		}
	}
}

func TestBrokenChainInReport(t *testing.T) {
	r := fixture(t)
	ctx := context.Background()
	var victim string
	_ = r.Store.List(ctx, audit.Prefix, func(oi store.ObjectInfo) error {
		if strings.HasPrefix(oi.Key, "audit/000000000004-") {
			victim = oi.Key
		}
		return nil
	})
	if err := r.Store.Delete(ctx, victim); err != nil {
		t.Fatal(err)
	}
	rep, err := report.Build(ctx, r, report.Options{Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Audit.OK || len(rep.Audit.Problems) == 0 {
		t.Fatalf("audit %+v", rep.Audit)
	}
	var buf bytes.Buffer
	_ = rep.WriteText(&buf)
	if !strings.Contains(buf.String(), "Audit chain: BROKEN") {
		t.Fatal(buf.String())
	}
}

// TestHTMLInChromium renders the HTML report in real headless Chromium and checks that the browser
// built the charts: three inline <svg> charts with one <path> per series plus the axes.
func TestHTMLInChromium(t *testing.T) {
	tools.Require(t, "chromium")
	rep := build(t, time.Time{})
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	var buf bytes.Buffer
	if err := rep.WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "http://") && !strings.Contains(buf.String(), `xmlns="http://www.w3.org/2000/svg"`) {
		t.Fatal("the page refers to an external resource")
	}
	if keep := os.Getenv("CFBACKUP_KEEP_REPORT"); keep != "" {
		_ = os.WriteFile(keep, buf.Bytes(), 0o644) // for looking at it by hand
	}
	if err := os.WriteFile(page, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--user-data-dir="+filepath.Join(dir, "profile"), "--dump-dom", "file://"+page)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	dom, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	d := string(dom)
	if n := strings.Count(d, "<svg"); n != 4 {
		t.Fatalf("%d <svg> elements in the rendered DOM, want 4 (sizes, durations, outcomes, storage growth)", n)
	}
	// Size chart: axis + 5 grid lines + d1 + r2; duration: axis + 5 + 1; outcomes: axis.
	if n := strings.Count(d, "<path"); n < 16 {
		t.Fatalf("%d <path> elements, want at least 16", n)
	}
	for _, s := range []string{`data-series="d1"`, `data-series="r2"`, `data-series="duration"`, `data-series="stored"`, "<h2>Storage</h2>", `class="failed"`, "litigation", "keep-daily=7", "Audit chain"} {
		if !strings.Contains(d, s) {
			t.Errorf("rendered DOM lacks %q", s)
		}
	}
}

// TestVerificationFailuresByKind: the report says what failed — an assertion is not damage — and
// counts records older than failure_kind as "unrecorded".
func TestVerificationFailuresByKind(t *testing.T) {
	r := fixture(t)
	putJSON(t, r.Store, "verify/20260306T000000.000000000Z-snap0004.json", map[string]any{"time": t0.Add(97 * time.Hour), "ok": false, "snapshot": "snap0004",
		"mode": "test-restore", "problems": []string{"d1: 1 assertion"}, "failure_kind": "assertion", "failures": map[string]int{"assertion": 1}})
	rep, err := report.Build(context.Background(), r, report.Options{Now: t0.Add(240 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	v := rep.Verification
	if v.Failed != 2 || v.FailedByKind["assertion"] != 1 || v.FailedByKind["unrecorded"] != 1 || len(v.FailedByKind) != 2 {
		t.Fatalf("verification %+v", v)
	}
	var text, csvOut bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "2 failed check(s) (1 assertion, 1 unrecorded)") {
		t.Errorf("text:\n%s", text.String())
	}
	if err := rep.WriteCSV(&csvOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(csvOut.String(), "test-restore failure_kind=assertion d1: 1 assertion") {
		t.Errorf("csv:\n%s", csvOut.String())
	}
}
