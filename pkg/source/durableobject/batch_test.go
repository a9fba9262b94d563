package durableobject_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/cfbackup/cfbackup/internal/testutil/workerd"
	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/source/durableobject"
)

// countingProxy forwards to the Worker and counts requests by kind ("batch" or the object op). With
// old set, it stands for a Worker whose module predates batches: the batch path is sent on as an
// object ID the module cannot parse, which the real module answers as an older one did (400 bad_id).
func countingProxy(t *testing.T, target string, old bool) (string, func() map[string]int) {
	u, _ := url.Parse(target)
	proxy := httputil.NewSingleHostReverseProxy(u)
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
		if kind == durableobject.BatchSegment && old {
			r.URL.Path = strings.TrimSuffix(r.URL.Path, kind) + "not-an-id"
			kind = "old-batch"
			// The module answers bad_id before it reads the body and workerd may then reset the
			// connection while the proxy is still sending it, which the proxy reports as a broken
			// answer instead of the 400 (CI failed once so). The body plays no part in the answer:
			// it is read here and not sent on.
			_, _ = io.Copy(io.Discard, r.Body)
			r.Body, r.ContentLength = http.NoBody, 0
			r.Header.Del("Content-Length")
		}
		mu.Lock()
		seen[kind]++
		mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]int{}
		for k, v := range seen {
			out[k] = v
		}
		return out
	}
}

// roundTripVia backs up the objects through base, wipes them, restores them through base and checks
// each object is as it was; it returns the requests the proxy saw per phase.
func roundTripVia(t *testing.T, w *workerd.Worker, base string, seen func() map[string]int, ids []string) (backup, restore map[string]int) {
	t.Helper()
	want := map[string]string{}
	for _, id := range ids {
		want[id] = inspect(t, w, "sessions", id)
	}
	c, err := durableobject.NewClient(base, secret)
	if err != nil {
		t.Fatal(err)
	}
	mw := &memWriter{items: map[string][]byte{}}
	ns := cloudflare.Namespace{ID: "ns1", Class: "SessionStore", Name: "sessions"}
	_, items, err := durableobject.Backup(context.Background(), c, mw, ns, ids, durableobject.BackupOptions{Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	backup = seen()
	direct, _ := durableobject.NewClient(w.URL, secret)
	for _, id := range ids {
		empty := `{"t":"header","format":"cfbackup-do/2"}` + "\n" + `{"t":"end","kv":0,"tables":0,"rows":0,"schema":0}` + "\n"
		if _, err := direct.ImportObject(context.Background(), "SessionStore", id, strings.NewReader(empty), 0, nil); err != nil {
			t.Fatal(err)
		}
	}
	open := func(ctx context.Context, ref archive.ItemRef) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(mw.items[ref.Name])), nil
	}
	res, err := durableobject.Restore(context.Background(), c, "SessionStore", items, open, durableobject.RestoreOptions{Concurrency: 1})
	if err != nil || len(res) != len(ids) {
		t.Fatalf("restore: %d results, %v", len(res), err)
	}
	for _, r := range res {
		if !r.Atomic || r.Chunks != 1 || r.KV == 0 {
			t.Errorf("object %s: %+v, want one atomic chunk with its keys", r.ID, r)
		}
	}
	restore = seen()
	for k, v := range backup {
		if restore[k] -= v; restore[k] == 0 {
			delete(restore, k)
		}
	}
	for id, w0 := range want {
		if got := inspect(t, w, "sessions", id); got != w0 {
			t.Errorf("object %s after restore:\n%s\nwant\n%s", id, got, w0)
		}
	}
	return backup, restore
}

// TestBatchedBackupAndRestore: against the current module, 40 small objects take two batches each
// way (32 + 8), and no single-object request.
func TestBatchedBackupAndRestore(t *testing.T) {
	w := workerd.Start(t, workerd.Options{Secret: secret})
	var ids []string
	for i := 0; i < 40; i++ {
		ids = append(ids, seed(t, w, "sessions", fmt.Sprint("batch-", i), i))
	}
	base, seen := countingProxy(t, w.URL, false)
	backup, restore := roundTripVia(t, w, base, seen, ids)
	if fmt.Sprint(backup) != "map[_batch:2]" || fmt.Sprint(restore) != "map[_batch:2]" {
		t.Fatalf("requests: backup %v, restore %v; want two batches each", backup, restore)
	}
}

// TestBatchFallsBackToOlderModule: a Worker whose module has no batch endpoint answers the first
// batch 400 bad_id; the client then sends every object alone, and backup and restore succeed.
func TestBatchFallsBackToOlderModule(t *testing.T) {
	w := workerd.Start(t, workerd.Options{Secret: secret})
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, seed(t, w, "sessions", fmt.Sprint("old-", i), i))
	}
	base, seen := countingProxy(t, w.URL, true)
	backup, restore := roundTripVia(t, w, base, seen, ids)
	if fmt.Sprint(backup) != "map[export:5 old-batch:1]" || fmt.Sprint(restore) != "map[import:5]" {
		t.Fatalf("requests: backup %v, restore %v; want one refused batch, then one request per object", backup, restore)
	}
}
