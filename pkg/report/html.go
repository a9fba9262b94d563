package report

import (
	"fmt"
	"html"
	"html/template"
	"io"
	"math"
	"sort"
	"strings"
	"time"
)

// palette colours series by component, in a fixed order so the same component keeps its colour.
var palette = map[string]string{"d1": "#1f77b4", "do": "#ff7f0e", "r2": "#2ca02c", "config": "#9467bd", "unknown": "#7f7f7f"}

func colour(c string) string {
	if p, ok := palette[c]; ok {
		return p
	}
	return "#8c564b"
}

type point struct {
	t time.Time
	v float64
}

type series struct {
	name   string
	points []point
}

const chartW, chartH, padL, padR, padT, padB = 720.0, 240.0, 70.0, 110.0, 20.0, 40.0

// lineChart draws series over time as an inline SVG: axes, a few ticks, one <path> per series and a
// dot per point (with a <title> tooltip), and a legend.
func lineChart(title string, ss []series, yfmt func(float64) string) template.HTML {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 %.0f %.0f" role="img" aria-label="%s">`, chartW, chartH, html.EscapeString(title))
	var tmin, tmax time.Time
	ymax := 0.0
	n := 0
	for _, s := range ss {
		for _, p := range s.points {
			if n == 0 || p.t.Before(tmin) {
				tmin = p.t
			}
			if n == 0 || p.t.After(tmax) {
				tmax = p.t
			}
			ymax = math.Max(ymax, p.v)
			n++
		}
	}
	if n == 0 {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle" class="empty">no data in this period</text></svg>`, chartW/2, chartH/2)
		return template.HTML(b.String())
	}
	if ymax == 0 {
		ymax = 1
	}
	span := tmax.Sub(tmin).Seconds()
	if span == 0 {
		span = 1
		tmin = tmin.Add(-500 * time.Millisecond)
	}
	pw, ph := chartW-padL-padR, chartH-padT-padB
	x := func(t time.Time) float64 { return padL + pw*t.Sub(tmin).Seconds()/span }
	y := func(v float64) float64 { return padT + ph*(1-v/ymax) }
	// Axes and ticks.
	fmt.Fprintf(&b, `<path class="axis" d="M%.1f %.1f V%.1f H%.1f" fill="none" stroke="#444"/>`, padL, padT, padT+ph, padL+pw)
	for i := 0; i <= 4; i++ {
		v := ymax * float64(i) / 4
		fmt.Fprintf(&b, `<path class="grid" d="M%.1f %.1f H%.1f" stroke="#ddd"/><text x="%.1f" y="%.1f" text-anchor="end" class="tick">%s</text>`,
			padL, y(v), padL+pw, padL-6, y(v)+4, html.EscapeString(yfmt(v)))
	}
	for i := 0; i <= 2; i++ {
		t := tmin.Add(time.Duration(float64(tmax.Sub(tmin)) * float64(i) / 2))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" class="tick">%s</text>`, x(t), padT+ph+18, t.UTC().Format("2006-01-02 15:04"))
	}
	for i, s := range ss {
		if len(s.points) == 0 {
			continue
		}
		sort.Slice(s.points, func(a, c int) bool { return s.points[a].t.Before(s.points[c].t) })
		var d strings.Builder
		for j, p := range s.points {
			cmd := "L"
			if j == 0 {
				cmd = "M"
			}
			fmt.Fprintf(&d, "%s%.1f %.1f ", cmd, x(p.t), y(p.v))
		}
		col := colour(s.name)
		fmt.Fprintf(&b, `<path class="series" data-series="%s" d="%s" fill="none" stroke="%s" stroke-width="2"/>`, html.EscapeString(s.name), strings.TrimSpace(d.String()), col)
		for _, p := range s.points {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s %s: %s</title></circle>`, x(p.t), y(p.v), col,
				html.EscapeString(s.name), p.t.UTC().Format(time.RFC3339), html.EscapeString(yfmt(p.v)))
		}
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="12" height="12" fill="%s"/><text x="%.1f" y="%.1f" class="legend">%s</text>`,
			padL+pw+14, padT+float64(i)*20, col, padL+pw+32, padT+float64(i)*20+11, html.EscapeString(s.name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// barChart draws, per component, a green bar of successes and a red bar of failures (with unfinished).
func barChart(comps []ComponentSummary) template.HTML {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 %.0f %.0f" role="img" aria-label="backups and failures per component">`, chartW, chartH)
	if len(comps) == 0 {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle" class="empty">no backups in this period</text></svg>`, chartW/2, chartH/2)
		return template.HTML(b.String())
	}
	maxv := 1
	for _, c := range comps {
		maxv = max(maxv, c.Backups, c.Failures+c.Unfinished)
	}
	pw, ph := chartW-padL-padR, chartH-padT-padB
	fmt.Fprintf(&b, `<path class="axis" d="M%.1f %.1f V%.1f H%.1f" fill="none" stroke="#444"/>`, padL, padT, padT+ph, padL+pw)
	slot := pw / float64(len(comps))
	bw := math.Min(40, slot/3)
	for i, c := range comps {
		x0 := padL + slot*float64(i) + slot/2 - bw
		hOK := ph * float64(c.Backups) / float64(maxv)
		hBad := ph * float64(c.Failures+c.Unfinished) / float64(maxv)
		fmt.Fprintf(&b, `<rect class="ok" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#2ca02c"><title>%s: %d successful</title></rect>`,
			x0, padT+ph-hOK, bw, hOK, html.EscapeString(c.Component), c.Backups)
		fmt.Fprintf(&b, `<rect class="failed" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#d62728"><title>%s: %d failed, %d unfinished</title></rect>`,
			x0+bw, padT+ph-hBad, bw, hBad, html.EscapeString(c.Component), c.Failures, c.Unfinished)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" class="tick">%s</text>`, x0+bw, padT+ph+18, html.EscapeString(c.Component))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" class="tick">%d / %d</text>`, x0+bw, padT+ph-math.Max(hOK, hBad)-4, c.Backups, c.Failures+c.Unfinished)
	}
	fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="12" height="12" fill="#2ca02c"/><text x="%.1f" y="%.1f" class="legend">success</text>`, padL+pw+14, padT, padL+pw+32, padT+11)
	fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="12" height="12" fill="#d62728"/><text x="%.1f" y="%.1f" class="legend">failure</text>`, padL+pw+14, padT+20, padL+pw+32, padT+31)
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func humanBytes(v float64) string {
	const unit = 1024
	if v < unit {
		return fmt.Sprintf("%.0f B", v)
	}
	exp := 0
	for v >= unit && exp < 5 {
		v /= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTPE"[exp-1])
}

func humanSeconds(v float64) string {
	return (time.Duration(v * float64(time.Second))).Round(time.Millisecond).String()
}

// Charts are the report's inline SVG charts.
type charts struct {
	Size, Duration, Outcomes, Growth template.HTML
}

func (r *Report) charts() charts {
	bySize := map[string]*series{}
	var names []string
	dur := series{name: "duration"}
	for _, b := range r.Backups {
		if !b.hasFigures() {
			continue // pruned by a prune run older than the figures in its record: no point to draw
		}
		for c, sz := range b.ComponentSizes {
			s := bySize[c]
			if s == nil {
				s = &series{name: c}
				bySize[c] = s
				names = append(names, c)
			}
			s.points = append(s.points, point{b.Time, float64(sz)})
		}
		dur.points = append(dur.points, point{b.Time, b.DurationSeconds})
	}
	sort.Strings(names)
	var ss []series
	for _, n := range names {
		ss = append(ss, *bySize[n])
	}
	growth := series{name: "stored"}
	for _, g := range r.Storage.Growth.PerSnapshot {
		growth.points = append(growth.points, point{g.Time, float64(g.StoredAdded)})
	}
	return charts{
		Growth:   lineChart("stored bytes each snapshot added", []series{growth}, humanBytes),
		Size:     lineChart("backup size over time, per component", ss, humanBytes),
		Duration: lineChart("backup duration over time", []series{dur}, humanSeconds),
		Outcomes: barChart(r.Components),
	}
}

var funcs = template.FuncMap{
	"ts":    ts,
	"tsp":   tsp,
	"bytes": func(n int64) string { return humanBytes(float64(n)) },
	"secs":  humanSeconds,
	"pct":   func(x float64) string { return fmt.Sprintf("%.1f%%", x*100) },
	"rate": func(p *float64) string {
		if p == nil {
			return "n/a"
		}
		return fmt.Sprintf("%.1f%%", *p*100)
	},
	"join": strings.Join,
	"tspNever": func(t *time.Time) string {
		if t == nil {
			return "never"
		}
		return ts(*t)
	},
	"drillDays": func() int { return int(DrillInterval.Hours() / 24) },
	"policy":    func(m map[string]any) string { return fmt.Sprint(sortedPolicy(m)) },
}

func sortedPolicy(m map[string]any) string {
	if len(m) == 0 {
		return "none recorded"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%v", k, m[k])
	}
	return strings.Join(parts, ", ")
}

var page = template.Must(template.New("report").Funcs(funcs).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cfbackup compliance report — {{.R.Repository}}</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1000px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;width:100%;font-size:.9em;margin:.5em 0}th,td{border:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4}.ok{color:#1a7f37}.bad{color:#c62828;font-weight:bold}.muted{color:#666}
svg.chart{width:100%;height:auto;max-width:900px;border:1px solid #eee;background:#fff}
svg text{font-size:11px;fill:#333}.mono{font-family:ui-monospace,monospace;font-size:.85em}
@media print{svg.chart{max-width:100%}}
</style></head><body>
<h1>cfbackup compliance report</h1>
<p>Repository <span class="mono">{{.R.Repository}}</span> (id <span class="mono">{{.R.RepositoryID}}</span>), generated {{ts .R.Generated}},
covering {{if .R.Since}}{{tsp .R.Since}} to {{ts .R.Generated}}{{else}}all recorded history{{end}}.</p>
<p>Audit chain: {{if .R.Audit.OK}}<span class="ok">intact</span> ({{.R.Audit.Records}} records, head #{{.R.Audit.HeadSeq}} <span class="mono">{{.R.Audit.HeadHash}}</span>){{else}}<span class="bad">BROKEN — {{len .R.Audit.Problems}} problem(s)</span>{{end}}.
Verification coverage: {{pct .R.Verification.Coverage}} of {{.R.Verification.Snapshots}} snapshot(s).</p>

<h2>Backups per component</h2>
{{.C.Outcomes}}
<p>Runs are counted from the audit trail: retention removing snapshots does not change them.</p>
<table><tr><th>component</th><th>successful runs</th><th>failed</th><th>unfinished</th><th>success rate</th><th>snapshots kept</th><th>pruned</th><th>last success</th><th>last failure</th><th>last size</th><th>mean duration</th><th>last drill pass</th></tr>
{{range .R.Components}}<tr><td>{{.Component}}</td><td>{{.Backups}}</td><td>{{if .Failures}}<span class="bad">{{.Failures}}</span>{{else}}0{{end}}</td><td>{{.Unfinished}}</td><td>{{rate .SuccessRate}}</td><td>{{.Snapshots}}</td><td>{{.Pruned}}</td><td>{{tsp .LastSuccess}}</td><td>{{tsp .LastFailure}}</td><td>{{bytes .LastSize}}</td><td>{{secs .AvgDurationSeconds}}</td><td>{{tspNever .LastDrillPass}}</td></tr>
{{else}}<tr><td colspan="12" class="muted">no backups in this period</td></tr>{{end}}</table>

<h2>Drills</h2>
<p>A drill pass is a successful test-restore of the component (<span class="mono">make drill</span> ends with one); overdue: no pass in the last {{drillDays}} days.</p>
<table><tr><th>component</th><th>last pass</th><th>snapshot</th><th>last failure</th><th>passes</th><th>failures</th><th>status</th></tr>
{{range .R.Drills}}<tr><td>{{.Component}}</td><td>{{tspNever .LastPass}}</td><td class="mono">{{.Snapshot}}</td><td>{{tsp .LastFailure}}</td><td>{{.Passes}}</td><td>{{.Failures}}</td><td>{{if .Overdue}}<span class="bad">overdue</span>{{else}}<span class="ok">current</span>{{end}}</td></tr>
{{else}}<tr><td colspan="7" class="muted">no components</td></tr>{{end}}</table>

<h2>Restores, test-restores, copies, approvals, break-glass</h2>
{{range .A}}<h3>{{.Title}}: {{.S.OK}} ok, {{if .S.Failed}}<span class="bad">{{.S.Failed}} failed</span>{{else}}0 failed{{end}}, {{.S.Unfinished}} unfinished, {{bytes .S.Bytes}} read</h3>
<table><tr><th>#</th><th>time</th><th>result</th><th>actor</th><th>host</th><th>components</th><th>snapshots</th><th>bytes</th><th>arguments</th><th>error</th></tr>
{{range .S.Runs}}<tr><td>{{.Seq}}</td><td>{{ts .Time}}</td><td>{{if eq .Result "ok"}}<span class="ok">ok</span>{{else}}<span class="bad">{{.Result}}</span>{{end}}</td><td>{{.Actor}}</td><td>{{.Host}}</td><td>{{join .Components ", "}}</td><td class="mono">{{join .Snapshots " "}}</td><td>{{bytes .Bytes}}</td><td class="mono">{{join .Args " "}}</td><td>{{.Error}}</td></tr>
{{else}}<tr><td colspan="10" class="muted">none in this period</td></tr>{{end}}</table>{{end}}

<h2>Sizes and durations over time</h2>
{{.C.Size}}
{{.C.Duration}}

<h2>Failed and unfinished runs</h2>
<table><tr><th>time</th><th>command</th><th>kind</th><th>components</th><th>actor</th><th>host</th><th>exit</th><th>error</th></tr>
{{range .R.Failures}}<tr><td>{{ts .Time}}</td><td>{{.Command}}</td><td class="bad">{{.Kind}}</td><td>{{join .Components ", "}}</td><td>{{.Actor}}</td><td>{{.Host}}</td><td>{{if eq .Kind "unfinished"}}—{{else}}{{.ExitCode}}{{end}}</td><td>{{.Error}}</td></tr>
{{else}}<tr><td colspan="8" class="muted">none recorded</td></tr>{{end}}</table>

<h2>Retention</h2>
<p>Policy: {{policy .R.Retention.Policy}}{{if .R.Retention.LastRun}} (last prune {{tsp .R.Retention.LastRun}}){{else}} — prune has never run{{end}}.</p>
{{if .R.Retention.Evaluated}}{{if .R.Retention.Violations}}<ul>{{range .R.Retention.Violations}}<li class="bad">Policy violation: {{.}}</li>{{end}}</ul>{{else}}<p>The configured policy holds: every snapshot is within it and required snapshots are present.</p>{{end}}{{end}}
<table><tr><th>prune run</th><th>actor</th><th>dry run</th><th>kept</th><th>removed</th><th>segments deleted</th><th>freed</th><th>errors</th></tr>
{{range .R.Retention.Runs}}<tr><td>{{ts .Time}}</td><td>{{.Actor}}</td><td>{{.DryRun}}</td><td>{{range .Kept}}<span class="mono">{{.Snapshot}}</span> ({{join .Reasons ", "}})<br>{{end}}</td><td>{{range .Removed}}<span class="mono">{{.Snapshot}}</span> {{.Time}} {{join .Components ","}}<br>{{end}}</td><td>{{.SegmentsDeleted}}</td><td>{{bytes .BytesFreed}}</td><td>{{range .Errors}}<span class="bad">{{.}}</span><br>{{end}}</td></tr>
{{else}}<tr><td colspan="8" class="muted">no prune runs in this period</td></tr>{{end}}</table>

<h2>Legal holds</h2>
<table><tr><th>snapshot</th><th>status</th><th>reason</th><th>case</th><th>until</th><th>placed by</th><th>placed</th><th>released</th></tr>
{{range .R.Holds}}<tr><td class="mono">{{.Snapshot}}</td><td>{{if .Active}}<b>active</b>{{else if .Released}}released{{else}}expired{{end}}</td><td>{{.Reason}}</td><td>{{.Case}}</td><td>{{tsp .Until}}</td><td>{{.Actor}}</td><td>{{ts .Time}}</td><td>{{if .Released}}{{tsp .Released}} by {{.ReleasedBy}}: {{.ReleaseReason}}{{end}}</td></tr>
{{else}}<tr><td colspan="8" class="muted">no holds</td></tr>{{end}}</table>

<h2>Verification and test-restore coverage</h2>
{{with .R.Verification}}<p>{{.Verified}} of {{.Snapshots}} snapshot(s) verified ({{pct .Coverage}}); {{.ReadData}} with every item decrypted and hashed ({{pct .ReadDataCoverage}}); {{.TestRestored}} test-restored ({{pct .TestRestoreCoverage}}); {{if .Failed}}<span class="bad">{{.Failed}} failed check(s)</span>{{else}}no failed checks{{end}}.</p>
<table><tr><th>time</th><th>snapshot</th><th>mode</th><th>result</th><th>segments</th><th>items</th><th>problems</th></tr>
{{range .Records}}<tr><td>{{ts .Time}}</td><td class="mono">{{.Snapshot}}</td><td>{{.Mode}}</td><td>{{if .OK}}<span class="ok">ok</span>{{else}}<span class="bad">FAILED ({{or .FailureKind "unrecorded"}})</span>{{end}}</td><td>{{.Segments}}/{{.SegmentsTotal}}</td><td>{{.Items}}</td><td>{{join .Problems "; "}}</td></tr>
{{else}}<tr><td colspan="7" class="muted">no verification in this period</td></tr>{{end}}</table>{{end}}

<h2>Snapshots</h2>
<table><tr><th>time</th><th>snapshot</th><th>components</th><th>items</th><th>size</th><th>stored</th><th>duration</th><th>verified</th><th>held</th><th>labels</th></tr>
{{range .R.Backups}}<tr><td>{{ts .Time}}</td><td class="mono">{{.Snapshot}}{{if .Pruned}} <span class="muted">(pruned {{tsp .PrunedAt}})</span>{{end}}</td><td>{{join .Components ", "}}</td><td>{{.Items}}</td><td>{{bytes .Size}}</td><td>{{bytes .StoredSize}}</td><td>{{secs .DurationSeconds}}</td><td>{{if .ReadDataChecked}}read-data{{else if .Verified}}quick{{else}}—{{end}}{{if .TestRestored}}, test-restored{{end}}</td><td>{{if .Held}}held{{end}}</td><td>{{range $k, $v := .Labels}}{{$k}}={{$v}} {{end}}</td></tr>
{{else}}<tr><td colspan="10" class="muted">no snapshots in this period</td></tr>{{end}}</table>

{{if .S}}<h2>Sharded runs</h2>
<p>Snapshots merged from the shards of one run (docs/SHARDING.md): what each shard did, from the snapshot's manifest.</p>
{{range .S}}<h3><span class="mono">{{.Snapshot}}</span> {{ts .Time}}: run <span class="mono">{{.Sharded.Run}}</span>, {{.Sharded.Count}} shard(s)</h3>
<table><tr><th>shard</th><th>objects</th><th>size</th><th>stored</th><th>reused</th><th>started</th><th>finished</th><th>duration</th><th>host</th><th>partial</th></tr>
{{range .Sharded.Shards}}<tr><td>{{.Index}}/{{.Count}}</td><td>{{.Items}}</td><td>{{bytes .Size}}</td><td>{{bytes .StoredSize}}</td><td>{{.Reused}}</td><td>{{ts .Started}}</td><td>{{ts .Finished}}</td><td>{{secs .DurationSeconds}}</td><td>{{.Host}}</td><td class="mono">{{.Partial}}</td></tr>
{{end}}</table>{{end}}{{end}}

<h2>Storage</h2>
{{with .R.Storage}}<p>{{bytes .TotalBytes}} in {{.TotalObjects}} object(s). Logical {{bytes .LogicalBytes}}, stored once {{bytes .ReferencedBytes}}: {{pct .SavingsRatio}} saved by compression and deduplication{{if .UnreferencedBytes}}; {{bytes .UnreferencedBytes}} no snapshot references (prune collects it){{end}}. Snapshots in this period added {{bytes .Growth.StoredAdded}}.</p>
<table><tr><th>component</th><th>snapshots</th><th>sources</th><th>latest size</th><th>logical</th><th>stored added</th></tr>
{{range .Components}}<tr><td>{{.Component}}</td><td>{{.Snapshots}}</td><td>{{.Sources}}</td><td>{{bytes .LatestSize}}</td><td>{{bytes .LogicalBytes}}</td><td>{{bytes .StoredAdded}}</td></tr>
{{else}}<tr><td colspan="6" class="muted">no snapshots</td></tr>{{end}}</table>
<table><tr><th>week</th><th>snapshots</th><th>stored added</th></tr>
{{range .Growth.Weekly}}<tr><td>{{.Period}}</td><td>{{.Snapshots}}</td><td>{{bytes .StoredAdded}}</td></tr>
{{else}}<tr><td colspan="3" class="muted">no snapshots in this period</td></tr>{{end}}</table>
<table><tr><th>prefix</th><th>objects</th><th>bytes</th></tr>
{{range .Prefixes}}<tr><td class="mono">{{.Prefix}}</td><td>{{.Objects}}</td><td>{{bytes .Bytes}}</td></tr>{{end}}</table>{{end}}
{{.C.Growth}}

<h2>Audit chain</h2>
{{if .R.Audit.OK}}<p class="ok">Every record from #1 to #{{.R.Audit.HeadSeq}} is present, unmodified and in order.</p>{{else}}<ul>{{range .R.Audit.Problems}}<li class="bad">#{{.Seq}} <span class="mono">{{.Key}}</span>: {{.Problem}}</li>{{end}}</ul>{{end}}
{{if .R.Audit.Unfinished}}<p>Runs that started and never recorded their end: {{range .R.Audit.Unfinished}}#{{.Seq}} {{.Command}} ({{ts .Time}}, {{.Actor}}) {{end}}</p>{{end}}

<h2>Recipients</h2>
<p>Every segment and catalogue is encrypted to these age recipients:</p>
<table><tr><th>fingerprint</th><th>recipient</th></tr>{{range .R.Recipients}}<tr><td class="mono">{{.Fingerprint}}</td><td class="mono">{{.Recipient}}</td></tr>{{end}}</table>
{{if .R.Warnings}}<h2>Warnings</h2><ul>{{range .R.Warnings}}<li>{{.}}</li>{{end}}</ul>{{end}}
<p class="muted">Generated by cfbackup from plaintext repository metadata only; no backup data was decrypted.</p>
</body></html>
`))

// WriteHTML writes the report as one self-contained HTML page (no external resources) with inline SVG charts.
func (r *Report) WriteHTML(w io.Writer) error {
	return page.Execute(w, struct {
		R *Report
		C charts
		A []titled
		S []Backup
	}{r, r.charts(), r.Activity.sections(), r.shardedBackups()})
}

// titled is one activity section with its heading.
type titled struct {
	Title string
	Kind  string // the CSV section name
	S     Section
}

// sections are the activity sections in the order the renderings show them.
func (a Activity) sections() []titled {
	return []titled{{"Restores", "restore", a.Restores}, {"Break-glass restores", "break-glass", a.BreakGlass}, {"Test-restores", "test-restore", a.TestRestores},
		{"Copies", "copy", a.Copies}, {"Approvals", "approval", a.Approvals}}
}
