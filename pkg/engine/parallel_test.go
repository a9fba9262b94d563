package engine_test

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cfbackup/cfbackup/internal/cftest"
	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source/d1"
)

// inflight counts the emulated API's concurrent requests, each held a little so that captures
// running at once overlap, and fails every request that names failUUID.
type inflight struct {
	now, peak atomic.Int64
	failUUID  atomic.Value // string
}

func (c *inflight) RoundTrip(r *http.Request) (*http.Response, error) {
	n := c.now.Add(1)
	defer c.now.Add(-1)
	for {
		p := c.peak.Load()
		if n <= p || c.peak.CompareAndSwap(p, n) {
			break
		}
	}
	if u, _ := c.failUUID.Load().(string); u != "" && strings.Contains(r.URL.Path, u) {
		return &http.Response{StatusCode: http.StatusForbidden, Status: "403 Forbidden", Header: http.Header{"Content-Type": {"application/json"}},
			Body: http.NoBody, Request: r}, nil
	}
	time.Sleep(5 * time.Millisecond)
	return http.DefaultTransport.RoundTrip(r)
}

// TestBackupConcurrency: with --concurrency above 1 the databases of one backup are captured at
// once (the API sees overlapping requests; with 1 it never does), yet the snapshot is the one a
// sequential backup writes: sources and items in plan order, every database restoring exactly.
// A failing database fails the whole backup and no snapshot appears.
func TestBackupConcurrency(t *testing.T) {
	rt := &inflight{}
	f := newFixtureWith(t, 40, cftest.Options{}, rt)
	ctx := context.Background()
	names := []string{"app", "app2", "app3"}
	uuids := map[string]string{"app": f.dbUUID}
	for _, n := range names[1:] {
		u, err := f.srv.AddDatabase(n, f.seedDB)
		if err != nil {
			t.Fatal(err)
		}
		uuids[n] = u
	}
	backup := func(conc int, fail string) (*manifest.Manifest, int64, error) {
		plan, err := d1.PlanBackup(ctx, f.cf, names)
		if err != nil {
			t.Fatal(err)
		}
		rt.peak.Store(0)
		rt.failUUID.Store(fail) // after the plan: a database fails while it is captured
		defer rt.failUUID.Store("")
		m, err := f.eng.Backup(ctx, plan, engine.BackupOptions{Concurrency: conc})
		return m, rt.peak.Load(), err
	}
	seq, seqPeak, err := backup(1, "")
	if err != nil {
		t.Fatal(err)
	}
	par, parPeak, err := backup(4, "")
	if err != nil {
		t.Fatal(err)
	}
	if seqPeak != 1 || parPeak < 2 {
		t.Fatalf("peak concurrent API requests: %d with concurrency 1 (want 1), %d with 4 (want ≥ 2)", seqPeak, parPeak)
	}
	sourceNames := func(m *manifest.Manifest) (out []string) {
		for _, s := range m.Sources {
			out = append(out, s.Name)
		}
		return out
	}
	if got := sourceNames(par); !reflect.DeepEqual(got, names) || !reflect.DeepEqual(sourceNames(seq), names) {
		t.Fatalf("sources: parallel %v, sequential %v, want plan order %v", got, sourceNames(seq), names)
	}
	itemKeys := func(m *manifest.Manifest) (out []string) {
		cat, err := engine.OpenCatalogue(m, f.ids)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range cat.Items {
			out = append(out, it.Source+"/"+it.Kind+"/"+it.Table)
		}
		return out
	}
	if a, b := itemKeys(par), itemKeys(seq); !reflect.DeepEqual(a, b) {
		t.Fatalf("catalogue order differs from a sequential backup:\n%v\n%v", a, b)
	}
	if _, err := f.eng.Verify(ctx, par, engine.VerifyOptions{ReadData: true, Identities: f.ids}); err != nil {
		t.Fatalf("verify --read-data: %v", err)
	}
	cat, err := engine.OpenCatalogue(par, f.ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		sel, err := d1.Select(cat, uuids[n], nil)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), n+".sqlite")
		if _, err := d1.RestoreToFile(ctx, f.eng.Opener(par, f.ids), sel, out); err != nil {
			t.Fatalf("restore %s: %v", n, err)
		}
		for _, tbl := range seedTables {
			if !reflect.DeepEqual(tableRows(t, f.seedDB, tbl), tableRows(t, out, tbl)) {
				t.Errorf("%s: table %s differs after restore", n, tbl)
			}
		}
	}

	before, _, err := f.repo.ListSnapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := backup(4, uuids["app3"]); err == nil {
		t.Fatal("backup with a failing database succeeded")
	} else if errors.Is(err, context.Canceled) {
		t.Fatalf("the failing database's error was replaced by the cancellation of the others: %v", err)
	}
	after, _, err := f.repo.ListSnapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("a failed backup left a snapshot: %d before, %d after", len(before), len(after))
	}
}
