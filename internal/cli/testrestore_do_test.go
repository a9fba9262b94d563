package cli_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/cfbackup/cfbackup/internal/testutil/workerd"
)

// TestTestRestoreDurableObjects: test-restore decodes Durable Objects from a snapshot and imports a
// sample into a second, local Workers runtime of the same app; the production runtime is never
// written to, and a non-local or production URL is refused.
func TestTestRestoreDurableObjects(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the Workers runtime")
	}
	a := startDOAccount(t)
	parallel(60, func(i int) {
		if i < 50 {
			get(t, fmt.Sprintf("%s/sessions/name:session-%d/__test/seed?i=%d", a.w.URL, i, i))
		} else {
			get(t, fmt.Sprintf("%s/ratelimit/name:client-%d/__test/seed?i=%d", a.w.URL, i, i))
		}
	})
	a.initRepo(t)
	a.must(t, "backup", "--component", "do")
	before := a.inspectAll(t)

	// Decode only: every object, no runtime needed; the production Worker settings are not used.
	a.env["CFBACKUP_WORKER_URL"], a.env["CFBACKUP_WORKER_SECRET"] = "", ""
	out := a.must(t, "test-restore", "--component", "do")
	if !strings.Contains(out, "OK") || !strings.Contains(out, "50 export(s) decoded") || !strings.Contains(out, "10 export(s) decoded") {
		t.Fatalf("test-restore output:\n%s", out)
	}

	// A second local runtime (same Worker and class names, so it accepts the IDs), with its own secret.
	scratch := workerd.Start(t, workerd.Options{Secret: "scratch-secret-0123456789abcdef0123456789"})
	a.env["CFBACKUP_TEST_RESTORE_WORKER_SECRET"] = "scratch-secret-0123456789abcdef0123456789"
	var res struct {
		OK     bool
		Result struct {
			Sources []struct {
				Source   string
				Items    int
				Checks   []string
				Problems []string
			}
		}
	}
	out = a.must(t, "test-restore", "--component", "do", "--sample", "20%", "--scratch-worker-url", scratch.URL, "--json", "--no-record")
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err, out)
	}
	if !res.OK || len(res.Result.Sources) != 2 {
		t.Fatalf("test-restore: %s", out)
	}
	items := 0
	for _, s := range res.Result.Sources {
		items += s.Items
		if !strings.Contains(strings.Join(s.Checks, ";"), fmt.Sprintf("%d imported into the scratch Worker", s.Items)) {
			t.Fatalf("source %s: checks %v", s.Source, s.Checks)
		}
	}
	if items != 10+2 { // 20% of 50 and of 10
		t.Fatalf("sampled %d objects, want 12: %s", items, out)
	}
	// What the scratch runtime now holds equals the original objects it received.
	imported := 0
	for class, route := range routeOf {
		for key, v := range before {
			id, ok := strings.CutPrefix(key, class+"/")
			if !ok {
				continue
			}
			var got any
			b := get(t, scratch.URL+"/"+route+"/"+id+"/__test/inspect")
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if m, _ := got.(map[string]any); m != nil && len(m["kv"].([]any)) > 0 {
				imported++
				if !reflect.DeepEqual(got, v) {
					t.Fatalf("object %s in the scratch runtime:\n got %v\nwant %v", id, got, v)
				}
			}
		}
	}
	if imported != 12 {
		t.Fatalf("the scratch runtime holds %d objects with data, want 12", imported)
	}
	// Production untouched: still exactly the original objects.
	if after := a.inspectAll(t); !reflect.DeepEqual(after, before) {
		t.Fatal("test-restore changed the production runtime")
	}

	// Refusals: the production Worker, a remote host; a malformed sample.
	a.env["CFBACKUP_WORKER_URL"] = a.w.URL
	if code, _, errs := a.run(t, "test-restore", "--component", "do", "--scratch-worker-url", a.w.URL+"/"); code != 8 || !strings.Contains(errs, "production Worker") {
		t.Fatalf("production URL: exit %d, %s", code, errs)
	}
	if code, _, errs := a.run(t, "test-restore", "--component", "do", "--scratch-worker-url", "https://app.example.workers.dev"); code != 8 || !strings.Contains(errs, "not on this machine") {
		t.Fatalf("remote URL: exit %d, %s", code, errs)
	}
	if code, _, errs := a.run(t, "test-restore", "--component", "do", "--sample", "0%"); code != 2 || !strings.Contains(errs, "percentage") {
		t.Fatalf("bad sample: exit %d, %s", code, errs)
	}
	delete(a.env, "CFBACKUP_TEST_RESTORE_WORKER_SECRET")
	if code, _, errs := a.run(t, "test-restore", "--component", "do", "--scratch-worker-url", scratch.URL); code != 2 || !strings.Contains(errs, "CFBACKUP_TEST_RESTORE_WORKER_SECRET") {
		t.Fatalf("no secret: exit %d, %s", code, errs)
	}
}
