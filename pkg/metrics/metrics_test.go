package metrics_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/cfbackup/cfbackup/pkg/metrics"
)

func parse(t *testing.T, path string) map[string]*dto.MetricFamily {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(f)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mf := fams[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		for k, v := range labels {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		if m.Gauge != nil {
			return m.GetGauge().GetValue(), true
		}
		return m.GetCounter().GetValue(), true
	}
	return 0, false
}

func TestTextfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cfbackup.prom")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ok := metrics.Run{Command: "backup", Components: []string{"d1", "r2"}, PerComponent: map[string]metrics.Stats{"d1": {Bytes: 100, Items: 3}, "r2": {Bytes: 7, Items: 1}},
		Success: true, End: t0, Duration: 2 * time.Second}
	if err := metrics.WriteTextfile(path, ok); err != nil {
		t.Fatal(err)
	}
	// Another command writes to the same file; then the backup fails.
	if err := metrics.WriteTextfile(path, metrics.Run{Command: "verify", Success: true, End: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	failed := metrics.Run{Command: "backup", Components: []string{"d1"}, Success: false, End: t0.Add(2 * time.Hour), Duration: time.Second, NotifyFailures: 1}
	if err := metrics.WriteTextfile(path, failed); err != nil {
		t.Fatal(err)
	}
	if err := metrics.WriteTextfile(path, failed); err != nil {
		t.Fatal(err)
	}
	fams := parse(t, path)
	d1 := map[string]string{"command": "backup", "component": "d1"}
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"cfbackup_last_success_timestamp_seconds", d1, float64(t0.Unix())},
		{"cfbackup_last_run_timestamp_seconds", d1, float64(t0.Add(2 * time.Hour).Unix())},
		{"cfbackup_last_run_success", d1, 0},
		{"cfbackup_failures_total", d1, 2},
		{"cfbackup_last_run_bytes", map[string]string{"command": "backup", "component": "r2"}, 7},
		{"cfbackup_last_run_success", map[string]string{"command": "verify", "component": "all"}, 1},
		{"cfbackup_notification_failures", map[string]string{"command": "backup"}, 1},
	}
	for _, c := range checks {
		got, found := value(t, fams, c.name, c.labels)
		if !found || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, found, c.want)
		}
	}
	// Atomic replace leaves no temporary files behind.
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Fatalf("dir has %d entries", len(ents))
	}
}

func TestTextfileNotPrometheus(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.prom")
	_ = os.WriteFile(path, []byte("this is { not metrics\n"), 0o644)
	err := metrics.WriteTextfile(path, metrics.Run{Command: "backup", Success: true, End: time.Now()})
	if err == nil || !strings.Contains(err.Error(), "--metrics-textfile") {
		t.Fatalf("err %v", err)
	}
}

func TestPush(t *testing.T) {
	var mu sync.Mutex
	var method, path string
	var fams []*dto.MetricFamily
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		method, path = r.Method, r.URL.Path
		dec := expfmt.NewDecoder(r.Body, expfmt.ResponseFormat(r.Header))
		for {
			mf := &dto.MetricFamily{}
			if err := dec.Decode(mf); err != nil {
				break
			}
			fams = append(fams, mf)
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	run := metrics.Run{Command: "backup", Components: []string{"d1"}, PerComponent: map[string]metrics.Stats{"d1": {Bytes: 5, Items: 2}}, Success: true, End: time.Unix(1700000000, 0), Duration: time.Second}
	if err := metrics.Push(context.Background(), srv.URL, "host1", run, nil); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	// The push client orders grouping labels as its map iterates: accept either order.
	if method != http.MethodPost || (path != "/metrics/job/cfbackup/command/backup/instance/host1" && path != "/metrics/job/cfbackup/instance/host1/command/backup") {
		t.Fatalf("%s %s", method, path)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, mf := range fams {
		byName[mf.GetName()] = mf
	}
	if v, ok := value(t, byName, "cfbackup_last_success_timestamp_seconds", map[string]string{"component": "d1"}); !ok || v != 1700000000 {
		t.Fatalf("last success %v %v (%d families)", v, ok, len(fams))
	}
	if v, _ := value(t, byName, "cfbackup_last_run_items", map[string]string{"component": "d1"}); v != 2 {
		t.Fatalf("items %v", v)
	}

	// A Pushgateway that is down is an error, not a panic or a hang.
	srv.Close()
	if err := metrics.Push(context.Background(), srv.URL, "", run, nil); err == nil {
		t.Fatal("push to a closed server succeeded")
	}
}
