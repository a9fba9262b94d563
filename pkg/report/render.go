package report

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cfbackup/cfbackup/pkg/engine"
)

// WriteJSON writes the report as indented JSON (docs/CLI_JSON_OUTPUT.md).
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// CSVHeader is the CSV report's header; every row has a section naming what it is (docs/CLI_JSON_OUTPUT.md).
var CSVHeader = []string{"section", "time", "component", "snapshot", "result", "count", "size_bytes", "stored_bytes", "items", "duration_seconds", "actor", "detail"}

func ts(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func tsp(t *time.Time) string {
	if t == nil {
		return ""
	}
	return ts(*t)
}

func i64(n int64) string { return strconv.FormatInt(n, 10) }

func f64(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }

// WriteCSV writes the report as one CSV table: a header, then rows whose first column says what they are.
func (r *Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	row := func(section, t, comp, snap, result, count, size, stored, items, dur, actor, detail string) {
		_ = cw.Write([]string{section, t, comp, snap, result, count, size, stored, items, dur, actor, detail})
	}
	_ = cw.Write(CSVHeader)
	row("report", ts(r.Generated), "", "", "", "", "", "", "", "", "", fmt.Sprintf("repository=%s id=%s since=%s", r.Repository, r.RepositoryID, tsp(r.Since)))
	for _, rc := range r.Recipients {
		row("recipient", "", "", "", "", "", "", "", "", "", "", rc.Fingerprint+" "+rc.Recipient)
	}
	for _, c := range r.Components {
		rate := ""
		if c.SuccessRate != nil {
			rate = strconv.FormatFloat(*c.SuccessRate, 'f', 4, 64)
		}
		row("component", tsp(c.LastSuccess), c.Component, "", rate, strconv.Itoa(c.Backups), i64(c.LastSize), "", "", f64(c.AvgDurationSeconds), "",
			fmt.Sprintf("failures=%d unfinished=%d last_failure=%s snapshots=%d pruned=%d last_drill_pass=%s", c.Failures, c.Unfinished, tsp(c.LastFailure),
				c.Snapshots, c.Pruned, tsp(c.LastDrillPass)))
	}
	r.activityCSV(row)
	r.Storage.csvRows(row)
	r.backupsCSV(row)
	r.shardsCSV(row)
	for _, f := range r.Failures {
		row("failure", ts(f.Time), strings.Join(f.Components, ";"), "", f.Kind, strconv.Itoa(f.ExitCode), "", "", "", "", f.Actor, f.Command+": "+f.Error)
	}
	for _, p := range r.Retention.Runs {
		res := "ok"
		if p.DryRun {
			res = "dry-run"
		} else if len(p.Errors) > 0 {
			res = "errors"
		}
		pol, _ := json.Marshal(p.Policy)
		row("prune", ts(p.Time), "", "", res, strconv.Itoa(len(p.Removed)), i64(p.BytesFreed), "", i64(int64(p.SegmentsDeleted)), "", p.Actor, "policy="+string(pol)+errorsDetail(p.Errors))
		for _, k := range p.Kept {
			row("prune-kept", ts(p.Time), "", k.Snapshot, "kept", "", "", "", "", "", p.Actor, strings.Join(k.Reasons, ";"))
		}
		for _, x := range p.Removed {
			row("prune-removed", ts(p.Time), strings.Join(x.Components, ";"), x.Snapshot, "removed", "", "", "", "", "", p.Actor, "snapshot time "+x.Time)
		}
	}
	for _, v := range r.Retention.Violations {
		row("policy-violation", ts(r.Generated), "", "", "violation", "", "", "", "", "", "", v)
	}
	for _, h := range r.Holds {
		res := "released"
		if h.Active {
			res = "active"
		} else if h.Released == nil {
			res = "expired"
		}
		d := "reason=" + h.Reason
		if h.Case != "" {
			d += " case=" + h.Case
		}
		if h.Until != nil {
			d += " until=" + tsp(h.Until)
		}
		if h.Released != nil {
			d += fmt.Sprintf(" released=%s by=%s release_reason=%s", tsp(h.Released), h.ReleasedBy, h.ReleaseReason)
		}
		row("hold", ts(h.Time), "", h.Snapshot, res, "", "", "", "", "", h.Actor, d)
	}
	v := r.Verification
	row("coverage", "", "", "", f64(v.Coverage), strconv.Itoa(v.Snapshots), "", "", "", "", "",
		fmt.Sprintf("verified=%d read_data=%d (%.4f) test_restored=%d (%.4f) failed=%d", v.Verified, v.ReadData, v.ReadDataCoverage, v.TestRestored, v.TestRestoreCoverage, v.Failed))
	for _, x := range v.Records {
		res := "ok"
		if !x.OK {
			res = "failed"
		}
		detail := x.Mode
		if !x.OK {
			detail += " failure_kind=" + failureKind(x)
		}
		row("verify", ts(x.Time), "", x.Snapshot, res, strconv.Itoa(x.Segments), "", "", strconv.Itoa(x.Items), f64(float64(x.DurationMillis)/1000), "", detail+" "+strings.Join(x.Problems, "; "))
	}
	res := "ok"
	if !r.Audit.OK {
		res = "broken"
	}
	var probs []string
	for _, p := range r.Audit.Problems {
		probs = append(probs, fmt.Sprintf("#%d %s", p.Seq, p.Problem))
	}
	row("audit", "", "", "", res, strconv.Itoa(r.Audit.Records), "", "", "", "", "", fmt.Sprintf("head=%d %s %s", r.Audit.HeadSeq, r.Audit.HeadHash, strings.Join(probs, "; ")))
	for _, wn := range r.Warnings {
		row("warning", "", "", "", "", "", "", "", "", "", "", wn)
	}
	cw.Flush()
	return cw.Error()
}

func errorsDetail(errs []string) string {
	if len(errs) == 0 {
		return ""
	}
	return " errors=" + strings.Join(errs, "; ")
}

// WriteText writes a short human summary (the default on a terminal).
func (r *Report) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "cfbackup report for %s (repository %s), generated %s", r.Repository, r.RepositoryID, ts(r.Generated))
	if r.Since != nil {
		fmt.Fprintf(w, ", since %s", tsp(r.Since))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Backups per component:")
	if len(r.Components) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, c := range r.Components {
		rate := "n/a"
		if c.SuccessRate != nil {
			rate = fmt.Sprintf("%.1f%%", *c.SuccessRate*100)
		}
		fmt.Fprintf(w, "  %-7s %4d ok  %3d failed  %3d unfinished  success %-6s  last success %s  (%d snapshot(s) kept, %d pruned)\n",
			c.Component, c.Backups, c.Failures, c.Unfinished, rate, orNever(c.LastSuccess), c.Snapshots, c.Pruned)
	}
	r.writeActivityText(w)
	r.writeShardsText(w)
	v := r.Verification
	fmt.Fprintf(w, "Verification: %d of %d snapshot(s) verified (%.0f%%), %d with --read-data, %d test-restored; %d failed check(s)%s.\n",
		v.Verified, v.Snapshots, v.Coverage*100, v.ReadData, v.TestRestored, v.Failed, byKind(v.FailedByKind))
	if r.Retention.LastRun != nil {
		removed := 0
		var freed int64
		for _, p := range r.Retention.Runs {
			if !p.DryRun {
				removed += len(p.Removed)
				freed += p.BytesFreed
			}
		}
		pol, _ := json.Marshal(r.Retention.Policy)
		fmt.Fprintf(w, "Retention: policy %s (last prune %s); %d snapshot(s) removed, %d byte(s) freed in the window.\n", pol, tsp(r.Retention.LastRun), removed, freed)
	} else {
		fmt.Fprintln(w, "Retention: prune has never run.")
	}
	if r.Retention.Evaluated {
		if len(r.Retention.Violations) == 0 {
			fmt.Fprintln(w, "Retention policy: compliant (every snapshot within its policy, required snapshots present).")
		}
		for _, v := range r.Retention.Violations {
			fmt.Fprintf(w, "Retention policy VIOLATION: %s\n", v)
		}
	}
	st := r.Storage
	fmt.Fprintf(w, "Storage: %d byte(s) in %d object(s); logical %d, stored once %d (%.1f%% saved), unreferenced %d; the period's snapshots added %d.\n",
		st.TotalBytes, st.TotalObjects, st.LogicalBytes, st.ReferencedBytes, st.SavingsRatio*100, st.UnreferencedBytes, st.Growth.StoredAdded)
	active := 0
	for _, h := range r.Holds {
		if h.Active {
			active++
		}
	}
	fmt.Fprintf(w, "Legal holds: %d active, %d listed.\n", active, len(r.Holds))
	if r.Audit.OK {
		fmt.Fprintf(w, "Audit chain: OK, %d record(s).\n", r.Audit.Records)
	} else {
		fmt.Fprintf(w, "Audit chain: BROKEN, %d problem(s) (run 'cfbackup audit verify').\n", len(r.Audit.Problems))
	}
	fmt.Fprintf(w, "Recipients:")
	for _, rc := range r.Recipients {
		fmt.Fprintf(w, " %s", rc.Fingerprint)
	}
	fmt.Fprintln(w)
	for _, wn := range r.Warnings {
		fmt.Fprintf(w, "warning: %s\n", wn)
	}
	return nil
}

func orNever(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return ts(*t)
}

// failureKind is a failed record's failure_kind ("unrecorded" for records older than the field).
func failureKind(x VerifyRecord) string {
	if x.FailureKind == "" {
		return "unrecorded"
	}
	return x.FailureKind
}

// byKind is " (2 integrity, 1 assertion)": failed checks by kind, most serious first.
func byKind(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	var parts []string
	for _, k := range append(append([]string{}, engine.FailureKinds...), "unrecorded") {
		if n := m[k]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, k))
		}
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// csvRows writes the storage section: one total row, one per component, one per ISO week of growth.
func (st Storage) csvRows(row func(section, t, comp, snap, result, count, size, stored, items, dur, actor, detail string)) {
	row("storage", "", "", "", "", i64(st.TotalObjects), i64(st.LogicalBytes), i64(st.TotalBytes), "", "", "",
		fmt.Sprintf("referenced=%d unreferenced=%d savings_ratio=%.4f", st.ReferencedBytes, st.UnreferencedBytes, st.SavingsRatio))
	for _, c := range st.Components {
		row("storage_component", ts(c.Newest), c.Component, "", "", strconv.Itoa(c.Snapshots), i64(c.LogicalBytes), i64(c.StoredAdded), "", "", "",
			fmt.Sprintf("sources=%d latest_size=%d", c.Sources, c.LatestSize))
	}
	for _, p := range st.Growth.Weekly {
		row("storage_growth", p.Period, "", "", "", strconv.Itoa(p.Snapshots), "", i64(p.StoredAdded), "", "", "", "week")
	}
}

// writeActivityText writes the drill and activity lines of the text summary.
func (r *Report) writeActivityText(w io.Writer) {
	fmt.Fprintln(w, "Drills (a successful test-restore of the component):")
	if len(r.Drills) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, d := range r.Drills {
		status := "current"
		if d.Overdue {
			status = "OVERDUE"
		}
		fmt.Fprintf(w, "  %-7s last pass %s  %s  (%d passed, %d failed in the period)\n", d.Component, orNever(d.LastPass), status, d.Passes, d.Failures)
	}
	for _, sec := range r.Activity.sections() {
		fmt.Fprintf(w, "%s: %d ok, %d failed, %d unfinished, %d byte(s) read.\n", sec.Title, sec.S.OK, sec.S.Failed, sec.S.Unfinished, sec.S.Bytes)
	}
}

// activityCSV writes the drill rows and one row per run of each activity section.
func (r *Report) activityCSV(row func(section, t, comp, snap, result, count, size, stored, items, dur, actor, detail string)) {
	for _, d := range r.Drills {
		res := "current"
		if d.Overdue {
			res = "overdue"
		}
		row("drill", tsp(d.LastPass), d.Component, d.Snapshot, res, strconv.Itoa(d.Passes), "", "", "", "", "", fmt.Sprintf("failures=%d last_failure=%s", d.Failures, tsp(d.LastFailure)))
	}
	for _, sec := range r.Activity.sections() {
		for _, x := range sec.S.Runs {
			row(sec.Kind, ts(x.Time), strings.Join(x.Components, ";"), strings.Join(x.Snapshots, ";"), x.Result, strconv.Itoa(x.ExitCode), i64(x.Bytes), "", "", "", x.Actor,
				fmt.Sprintf("seq=%d reads=%s args=%s %s", x.Seq, x.Reads, strings.Join(x.Args, " "), x.Error))
		}
	}
}

// backupsCSV writes one row per snapshot of the period, kept ("ok") or removed by prune ("pruned").
func (r *Report) backupsCSV(row func(section, t, comp, snap, result, count, size, stored, items, dur, actor, detail string)) {
	for _, b := range r.Backups {
		var labels []string
		for k, v := range b.Labels {
			labels = append(labels, k+"="+v)
		}
		sort.Strings(labels)
		res := "ok"
		if b.Pruned {
			res = "pruned"
		}
		row("backup", ts(b.Time), strings.Join(b.Components, ";"), b.Snapshot, res, "", i64(b.Size), i64(b.StoredSize), i64(b.Items), f64(b.DurationSeconds), b.Actor,
			fmt.Sprintf("verified=%t read_data=%t test_restored=%t held=%t labels=%s", b.Verified, b.ReadDataChecked, b.TestRestored, b.Held, strings.Join(labels, ";")))
	}
}
