package durableobject_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cfbackup/cfbackup/internal/testutil/workerd"
	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source/durableobject"
)

const secret = "unit-secret-0123456789abcdef0123456789abcdef"

func TestCanonicalQueryAndStringToSign(t *testing.T) {
	q := url.Values{"b": {"2", "1"}, "a b": {"x/y+z"}, "cursor": {"eyJ-_"}}
	if got, want := durableobject.CanonicalQuery(q), "a%20b=x%2Fy%2Bz&b=1&b=2&cursor=eyJ-_"; got != want {
		t.Fatalf("canonical query %q, want %q", got, want)
	}
	s := durableobject.StringToSign("get", "/p", "a=1", "e3b0", "17", "ab")
	if s != "CFBACKUP-HMAC-SHA256\nGET\n/p\na=1\ne3b0\n17\nab" {
		t.Fatalf("string to sign %q", s)
	}
}

func TestNewClientRefusesMissingOrWeakSettings(t *testing.T) {
	for _, c := range []struct{ url, secret, want string }{
		{"", secret, "CFBACKUP_WORKER_URL is not set"},
		{"ftp://x", secret, "not an http(s) URL"},
		{"http://x", "", "CFBACKUP_WORKER_SECRET is not set"},
		{"http://x", "short", "shorter than 32"},
	} {
		_, err := durableobject.NewClient(c.url, c.secret)
		if !errors.Is(err, durableobject.ErrNotConfigured) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewClient(%q, …): %v, want %q", c.url, err, c.want)
		}
	}
}

func seed(t *testing.T, w *workerd.Worker, route, name string, i int) string {
	t.Helper()
	for _, p := range []string{"/__test/seed?i=" + fmt.Sprint(i), "/__test/inspect"} {
		resp, err := http.Get(w.URL + "/" + route + "/name:" + name + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.HasSuffix(p, "inspect") {
			return string(b[7:71]) // {"id":"<64 hex>"
		}
	}
	return ""
}

func inspect(t *testing.T, w *workerd.Worker, route, id string) string {
	t.Helper()
	resp, err := http.Get(w.URL + "/" + route + "/" + id + "/__test/inspect")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

type memWriter struct{ items map[string][]byte }

func (m *memWriter) WriteItem(name string, r io.Reader) (archive.ItemRef, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return archive.ItemRef{}, err
	}
	m.items[name] = b
	return archive.ItemRef{Name: name, Size: int64(len(b))}, nil
}

// flaky fails every third request to the Worker with a 503 before it reaches the runtime, while the
// returned budget of failures lasts.
func flaky(t *testing.T, target string) (string, *atomic.Int64) {
	u, _ := url.Parse(target)
	proxy := httputil.NewSingleHostReverseProxy(u)
	var n, budget atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%3 == 0 && budget.Add(-1) >= 0 {
			http.Error(w, `{"error":"overloaded","message":"try again"}`, http.StatusServiceUnavailable)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &budget
}

// TestMultiPageBackupAndChunkedRestore drives the streaming paths against the real runtime: tiny
// pages (an object spans many), tiny import chunks (many requests per object, not atomic), and a
// flaky link in front of the Worker (retried pages, objects started over).
func TestMultiPageBackupAndChunkedRestore(t *testing.T) {
	w := workerd.Start(t, workerd.Options{Secret: secret})
	ids := map[string]string{}
	for i := 0; i < 6; i++ {
		ids[seed(t, w, "sessions", fmt.Sprint("s", i), i)] = ""
	}
	for id := range ids {
		ids[id] = inspect(t, w, "sessions", id)
	}
	base, budget := flaky(t, w.URL)
	budget.Store(5)
	c, err := durableobject.NewClient(base, secret)
	if err != nil {
		t.Fatal(err)
	}
	c.PageLimit, c.Backoff = 4, 1
	mw := &memWriter{items: map[string][]byte{}}
	var list []string
	for id := range ids {
		list = append(list, id)
	}
	ns := cloudflare.Namespace{ID: "ns1", Class: "SessionStore", Name: "sessions"}
	src, items, err := durableobject.Backup(context.Background(), c, mw, ns, list, durableobject.BackupOptions{Concurrency: 3})
	if err != nil {
		t.Fatal(err)
	}
	if src.Items != 6 || len(items) != 6 || items[0].ObjectID == "" || items[0].Rows < 10 {
		t.Fatalf("source %+v, items %+v", src, items[0])
	}
	if budget.Load() > 0 {
		t.Fatal("the flaky link did not fail 5 times: the page retry path was not exercised")
	}
	for _, it := range items {
		b := mw.items[it.Name]
		if !bytes.HasPrefix(b, []byte(`{"t":"header"`)) || !bytes.Contains(b, []byte(`{"t":"end"`)) || bytes.Contains(b, []byte(`{"t":"next"`)) {
			t.Fatalf("item %s is not one clean export:\n%s", it.Name, b)
		}
	}
	// Wipe through the module (an empty export), then restore in 300-byte chunks.
	direct, _ := durableobject.NewClient(w.URL, secret)
	for id := range ids {
		if _, err := direct.ImportObject(context.Background(), "SessionStore", id, strings.NewReader(`{"t":"header","format":"cfbackup-do/1"}`+"\n"+`{"t":"end","kv":0,"tables":0,"rows":0,"schema":0}`+"\n"), 0, nil); err != nil {
			t.Fatal(err)
		}
		if got := inspect(t, w, "sessions", id); strings.Contains(got, "user-") {
			t.Fatalf("wipe left data: %s", got)
		}
	}
	open := func(ctx context.Context, ref archive.ItemRef) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(mw.items[ref.Name])), nil
	}
	budget.Store(3)
	res, err := durableobject.Restore(context.Background(), c, "SessionStore", items, open, durableobject.RestoreOptions{ChunkBytes: 300, Concurrency: 2, Attempts: 20})
	if err != nil {
		t.Fatal(err)
	}
	if budget.Load() > 0 {
		t.Fatal("the flaky link did not fail during the restore: objects were never started over")
	}
	for _, r := range res {
		if r.Chunks < 5 || r.Atomic {
			t.Errorf("object %s restored in %d chunks (atomic %v), want many", r.ID, r.Chunks, r.Atomic)
		}
	}
	for id, want := range ids {
		if got := inspect(t, w, "sessions", id); got != want {
			t.Errorf("object %s after restore:\n%s\nwant\n%s", id, got, want)
		}
	}
}

// TestRestoreRefusals: a tampered item fails its count check, a KV-backed target refuses SQL data.
func TestRestoreRefusals(t *testing.T) {
	w := workerd.Start(t, workerd.Options{Secret: secret})
	sid := seed(t, w, "sessions", "a", 1)
	kid := seed(t, w, "ratelimit", "b", 1)
	c, _ := durableobject.NewClient(w.URL, secret)
	var buf bytes.Buffer
	end, err := c.Export(context.Background(), "SessionStore", sid, &buf)
	if err != nil || end.Tables != 1 {
		t.Fatalf("export: %+v %v", end, err)
	}
	_, err = c.ImportObject(context.Background(), "RateLimiter", kid, bytes.NewReader(buf.Bytes()), 0, nil)
	if !errors.Is(err, durableobject.ErrRefused) || !strings.Contains(err.Error(), "KV-backed") {
		t.Fatalf("SQL into KV-backed: %v", err)
	}
	// Drop one row line: the Worker writes what it gets, and the count check catches the difference.
	lines := strings.SplitAfter(buf.String(), "\n")
	var cut []string
	dropped := false
	for _, l := range lines {
		if !dropped && strings.HasPrefix(l, `{"t":"row"`) {
			dropped = true
			continue
		}
		cut = append(cut, l)
	}
	_, err = c.ImportObject(context.Background(), "SessionStore", sid, strings.NewReader(strings.Join(cut, "")), 0, nil)
	if !errors.Is(err, durableobject.ErrMismatch) {
		t.Fatalf("short item: %v", err)
	}
	// A wrong secret is an auth error and is not retried.
	bad, _ := durableobject.NewClient(w.URL, strings.Repeat("x", 40))
	if _, err := bad.Info(context.Background(), "SessionStore", sid); !errors.Is(err, durableobject.ErrAuth) {
		t.Fatalf("wrong secret: %v", err)
	}
}

// TestNewClientRefusesPlainHTTPOffLoopback: signed requests (and the storage they carry) never go
// over plain http across the network; loopback (a local runtime) is fine.
func TestNewClientRefusesPlainHTTPOffLoopback(t *testing.T) {
	for _, u := range []string{"http://192.0.2.10:8787", "http://worker.internal", "http://[2001:db8::1]/"} {
		_, err := durableobject.NewClient(u, secret)
		if !errors.Is(err, durableobject.ErrNotConfigured) || !strings.Contains(err.Error(), "plain http off this machine") {
			t.Errorf("NewClient(%q): %v, want a refusal", u, err)
		}
	}
	for _, u := range []string{"http://127.0.0.1:8787", "http://localhost:1", "http://[::1]:2", "https://worker.internal"} {
		if _, err := durableobject.NewClient(u, secret); err != nil {
			t.Errorf("NewClient(%q): %v", u, err)
		}
	}
}

// TestWorkerClientDoesNotFollowRedirects: a Worker URL that redirects elsewhere gets no signed
// request sent there; the redirect is an error naming the fix, and it is not retried.
func TestWorkerClientDoesNotFollowRedirects(t *testing.T) {
	var leaked atomic.Int64
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked.Add(1)
		t.Errorf("a request reached the redirect target with headers %v", r.Header)
	}))
	defer elsewhere.Close()
	var hits atomic.Int64
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Redirect(w, r, elsewhere.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()
	c, err := durableobject.NewClient(redirector.URL, secret)
	if err != nil {
		t.Fatal(err)
	}
	c.Backoff = 1
	_, err = c.Info(context.Background(), "SessionStore", strings.Repeat("a", 64))
	if err == nil || !strings.Contains(err.Error(), "redirect") || !strings.Contains(err.Error(), "does not follow") {
		t.Fatalf("Info through a redirect: %v", err)
	}
	_, err = c.ImportObject(context.Background(), "SessionStore", strings.Repeat("a", 64), strings.NewReader(`{"t":"header","format":"cfbackup-do/2"}`+"\n"+`{"t":"end","kv":0,"tables":0,"rows":0,"schema":0}`+"\n"), 0, nil)
	if err == nil {
		t.Fatal("import through a redirect succeeded")
	}
	if leaked.Load() != 0 || hits.Load() != 2 {
		t.Fatalf("redirect target reached %d times, redirector %d times (want 0 and 2: no retry)", leaked.Load(), hits.Load())
	}
}

// counting puts a proxy in front of target that counts import requests.
func counting(t *testing.T, target string) (string, *atomic.Int64) {
	u, _ := url.Parse(target)
	proxy := httputil.NewSingleHostReverseProxy(u)
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/import") {
			n.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &n
}

const badItem = `{"t":"header","format":"cfbackup-do/2","alarm":null}
{"t":"table","name":"a","sql":"CREATE TABLE a(x NOT NULL)","cols":["x"],"rowid":"_rowid_"}
{"t":"row","table":"a","c":"n","v":[null],"r":1}
{"t":"end","kv":0,"tables":1,"rows":1,"schema":0}
`

// TestDeterministicImportFailureIsNotRetried: a chunk that fails on a constraint fails the same way
// every time; it is sent once (the module answers 422 import_failed; an older module's 500 with a
// SQLite constraint message is recognised too), not retried as if it were transient.
func TestDeterministicImportFailureIsNotRetried(t *testing.T) {
	w := workerd.Start(t, workerd.Options{Secret: secret})
	id := seed(t, w, "sessions", "det", 1)
	want := inspect(t, w, "sessions", id)
	base, n := counting(t, w.URL)
	c, _ := durableobject.NewClient(base, secret)
	c.Backoff = 1
	open := func(ctx context.Context, ref archive.ItemRef) (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(badItem)), nil
	}
	_, err := durableobject.RestoreObject(context.Background(), c, "SessionStore", manifest.Item{ObjectID: id}, open, durableobject.RestoreOptions{Attempts: 3})
	if !errors.Is(err, durableobject.ErrRefused) || !strings.Contains(err.Error(), "NOT NULL constraint failed") {
		t.Fatalf("restore of a violating item: %v", err)
	}
	if n.Load() != 1 {
		t.Fatalf("the deterministic failure was sent %d times, want 1", n.Load())
	}
	if got := inspect(t, w, "sessions", id); got != want {
		t.Fatal("a refused import changed the object")
	}
	// An older module answered such failures with 500 "internal".
	var old atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		old.Add(1)
		w.WriteHeader(500)
		_, _ = io.WriteString(w, `{"error":"internal","message":"FOREIGN KEY constraint failed: SQLITE_CONSTRAINT (extended: SQLITE_CONSTRAINT_FOREIGNKEY)"}`)
	}))
	defer srv.Close()
	c2, _ := durableobject.NewClient(srv.URL, secret)
	c2.Backoff = 1
	_, err = durableobject.RestoreObject(context.Background(), c2, "SessionStore", manifest.Item{ObjectID: id}, open, durableobject.RestoreOptions{Attempts: 3})
	if !errors.Is(err, durableobject.ErrRefused) || old.Load() != 1 {
		t.Fatalf("500 with a constraint failure: sent %d times, err %v", old.Load(), err)
	}
}

// TestRestoreContinuesPastAFailedObject: one object that cannot be restored does not stop the
// others; the error names it.
func TestRestoreContinuesPastAFailedObject(t *testing.T) {
	w := workerd.Start(t, workerd.Options{Secret: secret})
	c, _ := durableobject.NewClient(w.URL, secret)
	mw := &memWriter{items: map[string][]byte{}}
	var ids []string
	want := map[string]string{}
	for i := 0; i < 5; i++ {
		id := seed(t, w, "sessions", fmt.Sprint("cont", i), i)
		ids = append(ids, id)
		want[id] = inspect(t, w, "sessions", id)
	}
	ns := cloudflare.Namespace{ID: "ns1", Class: "SessionStore", Name: "sessions"}
	_, items, err := durableobject.Backup(context.Background(), c, mw, ns, ids, durableobject.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bad := items[2].ObjectID
	mw.items[items[2].Name] = []byte(badItem)
	// Wipe all five, then restore.
	for _, id := range ids {
		if _, err := c.ImportObject(context.Background(), "SessionStore", id, strings.NewReader(`{"t":"header","format":"cfbackup-do/2"}`+"\n"+`{"t":"end","kv":0,"tables":0,"rows":0,"schema":0}`+"\n"), 0, nil); err != nil {
			t.Fatal(err)
		}
	}
	open := func(ctx context.Context, ref archive.ItemRef) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(mw.items[ref.Name])), nil
	}
	res, err := durableobject.Restore(context.Background(), c, "SessionStore", items, open, durableobject.RestoreOptions{Concurrency: 1})
	var re *durableobject.RestoreErrors
	if !errors.As(err, &re) || len(re.Failures) != 1 || re.Failures[0].ID != bad || re.Attempted != 5 || !errors.Is(err, durableobject.ErrRefused) {
		t.Fatalf("restore with one bad object: %v", err)
	}
	if len(res) != 4 {
		t.Fatalf("%d objects restored, want the 4 others", len(res))
	}
	for _, id := range ids {
		if id == bad {
			continue
		}
		if got := inspect(t, w, "sessions", id); got != want[id] {
			t.Errorf("object %s not restored", id)
		}
	}
}
