// Package scripts holds the test of the benchmark scripts: `make bench BENCH_QUICK=1` end to end.
package scripts

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// row is one line of the summary table.
type row struct {
	figure, ours, ref, ratio, target, pass string
}

// value is the leading number of a cell ("12.3 s" → 12.3); ok is false when there is none.
func value(cell string) (float64, bool) {
	f := strings.Fields(cell)
	if len(f) == 0 {
		return 0, false
	}
	v, err := strconv.ParseFloat(f[0], 64)
	return v, err == nil
}

// refValue is the number after "name: " in a reference cell.
func refValue(cell string) (float64, bool) {
	i := strings.LastIndex(cell, ": ")
	if i < 0 {
		return 0, false
	}
	return value(cell[i+2:])
}

// needTools skips the test when a program the benchmarks run is missing (CI installs them with
// CFBACKUP_BENCH_TOOLS=1 make tools).
func needTools(t *testing.T, top string) {
	for _, p := range []string{"rclone", "restic", "sqlite3", "jq", "bc", "/usr/bin/time"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s missing: CFBACKUP_BENCH_TOOLS=1 make tools", p)
		}
	}
	if _, err := os.Stat(filepath.Join(top, "worker/node_modules/.bin/workerd")); err != nil {
		t.Skip("workerd missing: cd worker && npm ci")
	}
	vgw := os.Getenv("CFBACKUP_VERSITYGW")
	if vgw == "" {
		vgw = filepath.Join(top, ".bin/versitygw")
	}
	if _, err := os.Stat(vgw); err != nil {
		t.Skip("versitygw missing: scripts/install-versitygw.sh")
	}
}

func parseTable(t *testing.T, md string) []row {
	var rows []row
	for _, l := range strings.Split(md, "\n") {
		if !strings.HasPrefix(l, "| ") || strings.HasPrefix(l, "| figure ") {
			continue
		}
		c := strings.Split(strings.Trim(l, "| "), " | ")
		if len(c) < 7 {
			t.Fatalf("row with %d cells: %q", len(c), l)
		}
		rows = append(rows, row{c[0], c[1], c[2], c[3], c[4], c[5]})
	}
	return rows
}

// TestBenchSummaryQuick runs every benchmark at the quick sizes and checks the summary table: a row
// for every figure of issue 15, positive numbers, each ratio recomputed from its two values, the pass
// column agreeing with the target, and no tool using more of the slow link than the link carries.
func TestBenchSummaryQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every benchmark at small sizes (minutes)")
	}
	top, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	needTools(t, top)
	out := t.TempDir()
	cmd := exec.Command("make", "-s", "bench", "BENCH_QUICK=1", "BENCH_OUT="+out)
	cmd.Dir = top
	start := time.Now()
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make bench BENCH_QUICK=1: %v\n%s", err, b)
	}
	t.Logf("make bench BENCH_QUICK=1 took %s", time.Since(start).Round(time.Second))
	md, err := os.ReadFile(filepath.Join(out, "summary.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), string(md)) {
		t.Error("make bench did not print the summary table")
	}
	t.Logf("summary table:\n%s", md)
	rows := parseTable(t, string(md))
	checkEveryFigure(t, rows)
	for _, r := range rows {
		checkRow(t, r)
	}
	m := regexp.MustCompile(`(\d+) figures: (\d+) meet their target, (\d+) do not`).FindStringSubmatch(string(md))
	if m == nil || m[1] != strconv.Itoa(len(rows)) {
		t.Errorf("count line %q does not match %d rows", m, len(rows))
	}
}

func checkEveryFigure(t *testing.T, rows []row) {
	want := map[string]int{ // pattern → rows expected
		`^R2 backup, \d+ MiB \(200 objects\): wall time$`:                     2,
		`^R2 restore → bucket, \d+ MiB \(200 objects\): wall time$`:           2,
		`^R2 backup, 128 MiB, slow link .*share of the link$`:                 1,
		`^R2 restore, 128 MiB, slow link .*share of the link$`:                1,
		`^D1 restore --to-file, 2000 users`:                                   1,
		`^D1 restore into the emulated D1`:                                    1,
		`^DO backup, 200 small objects \(batches\)$`:                          1,
		`^DO restore, 200 small objects \(batches\)$`:                         1,
		`^DO backup, one 50 MiB object$`:                                      1,
		`^DO restore, one 50 MiB object$`:                                     1,
		`^KV `:                                                                5,
		`^R2 no-change incremental, 10000 objects \(bench-scale\): CPU$`:      1,
		`^R2 no-change incremental, 10000 objects \(bench-scale\): peak RSS$`: 1,
	}
	for p, n := range want {
		re := regexp.MustCompile(p)
		got := 0
		for _, r := range rows {
			if re.MatchString(r.figure) {
				got++
			}
		}
		if got != n {
			t.Errorf("%d rows match %s, want %d", got, p, n)
		}
	}
}

func checkRow(t *testing.T, r row) {
	ours, ok := value(r.ours)
	if !ok || ours <= 0 {
		t.Errorf("%s: cfbackup's value %q is not a positive number", r.figure, r.ours)
		return
	}
	ref, hasRef := refValue(r.ref)
	if !hasRef {
		return // KV: no reference tool
	}
	ratio, ok := value(r.ratio)
	if ref <= 0 || !ok {
		t.Errorf("%s: reference %q / ratio %q", r.figure, r.ref, r.ratio)
		return
	}
	want := ours / ref
	if strings.HasPrefix(r.figure, "D1 ") {
		want = ref / ours // a speed against sqlite3; the API's share of the wall time
	}
	if d := ratio - want; d > 0.011 || d < -0.011 {
		t.Errorf("%s: ratio %s, recomputed %.3f", r.figure, r.ratio, want)
	}
	if strings.Contains(r.figure, "slow link") && ratio > 1.05 {
		t.Errorf("%s: %.2f of the link: the link passed more than its rate", r.figure, ratio)
	}
	var pass string
	switch {
	case strings.HasPrefix(r.target, "<="):
		lim, _ := strconv.ParseFloat(r.target[2:], 64)
		pass = map[bool]string{true: "yes", false: "no"}[ratio <= lim]
	case strings.HasPrefix(r.target, ">="):
		lim, _ := strconv.ParseFloat(r.target[2:], 64)
		pass = map[bool]string{true: "yes", false: "no"}[ratio >= lim]
	default:
		pass = "—"
	}
	if r.pass != pass {
		t.Errorf("%s: pass %q, want %q for ratio %s against %s", r.figure, r.pass, pass, r.ratio, r.target)
	}
}
