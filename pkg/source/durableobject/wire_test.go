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

// wireProxy forwards to the Worker and counts framed export answers ("framed-export"), framed
// imports ("framed-import") and requests by op. With old set it stands for a Worker whose module
// predates the framing: it drops the request header that asks for a framed export (an older module
// never reads it) and the answer header by which a module says it speaks the framing.
func wireProxy(t *testing.T, target string, old bool) (string, func() map[string]int) {
	u, _ := url.Parse(target)
	proxy := httputil.NewSingleHostReverseProxy(u)
	var mu sync.Mutex
	seen := map[string]int{}
	count := func(k string) {
		mu.Lock()
		seen[k]++
		mu.Unlock()
	}
	proxy.ModifyResponse = func(resp *http.Response) error {
		if old {
			resp.Header.Del(durableobject.WireHeader)
		}
		if resp.Header.Get("content-type") == durableobject.FramedType {
			count("framed-export")
		}
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		count(r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:])
		if r.URL.Query().Get("wire") != "" {
			count("framed-import")
		}
		if old {
			r.Header.Del(durableobject.WireHeader)
		}
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

func get(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, b)
	}
	return string(b)
}

// TestFramedLargeObject: an object with 1 MiB BLOBs (and KV values, a table, an alarm) is exported
// framed and imported framed by a current module, unframed through a Worker with an older module;
// both items are the same NDJSON (but for the header's time), and each restores to the same digest.
func TestFramedLargeObject(t *testing.T) {
	w := workerd.Start(t, workerd.Options{Secret: secret})
	id := seed(t, w, "sessions", "wire", 3)
	if got := get(t, w.URL+"/sessions/name:wire/__test/fill?mb=3"); got != id {
		t.Fatalf("fill answered %q, want the ID %s", got, id)
	}
	digest := get(t, w.URL+"/sessions/"+id+"/__test/digest")
	items := map[bool][]byte{}
	for _, old := range []bool{false, true} {
		base, seen := wireProxy(t, w.URL, old)
		c, err := durableobject.NewClient(base, secret)
		if err != nil {
			t.Fatal(err)
		}
		c.PageBytes = 1 << 20 // several pages
		mw := &memWriter{items: map[string][]byte{}}
		ns := cloudflare.Namespace{ID: "ns1", Class: "SessionStore", Name: "sessions"}
		_, its, err := durableobject.Backup(context.Background(), c, mw, ns, []string{id}, durableobject.BackupOptions{Concurrency: 1})
		if err != nil {
			t.Fatal(err)
		}
		item := mw.items[its[0].Name]
		items[old] = item[bytes.IndexByte(item, '\n'):]
		backup := seen()
		// Wipe, then restore through the same Worker, in chunks of 1.5 MiB (two BLOBs do not fit).
		direct, _ := durableobject.NewClient(w.URL, secret)
		empty := `{"t":"header","format":"cfbackup-do/2"}` + "\n" + `{"t":"end","kv":0,"tables":0,"rows":0,"schema":0}` + "\n"
		if _, err := direct.ImportObject(context.Background(), "SessionStore", id, strings.NewReader(empty), 0, nil); err != nil {
			t.Fatal(err)
		}
		if d := get(t, w.URL+"/sessions/"+id+"/__test/digest"); d == digest {
			t.Fatal("the wipe changed nothing")
		}
		open := func(ctx context.Context, ref archive.ItemRef) (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(item)), nil
		}
		// A new client (a restore is another run): it asks one object's info before it frames a chunk.
		if c, err = durableobject.NewClient(base, secret); err != nil {
			t.Fatal(err)
		}
		if _, err := durableobject.Restore(context.Background(), c, "SessionStore", its, open, durableobject.RestoreOptions{Concurrency: 1, ChunkBytes: 3 << 19}); err != nil {
			t.Fatal(err)
		}
		if d := get(t, w.URL+"/sessions/"+id+"/__test/digest"); d != digest {
			t.Errorf("old=%v: digest after restore %s, before %s", old, d, digest)
		}
		all := seen()
		restore := fmt.Sprintf("framed-import:%d info:%d", all["framed-import"], all["info"])
		switch {
		case !old && (backup["framed-export"] < 2 || restore != "framed-import:3 info:1"):
			t.Errorf("current module: backup %v, restore %s; want framed pages, 3 framed chunks after one info", backup, restore)
		case old && (backup["framed-export"] != 0 || restore != "framed-import:0 info:1"):
			t.Errorf("older module: backup %v, restore %s; want nothing framed (one info asked)", backup, restore)
		}
	}
	if !bytes.Equal(items[false], items[true]) {
		t.Errorf("framed and plain exports differ:\n%.300q\n%.300q", items[false], items[true])
	}
}
