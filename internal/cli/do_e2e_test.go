package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/cfbackup/cfbackup/internal/cftest"
	"github.com/cfbackup/cfbackup/internal/cli"
	"github.com/cfbackup/cfbackup/internal/testutil/workerd"
)

const doSecret = "e2e-secret-0123456789abcdef0123456789abcdef"

// doAccount is the example app in the real Workers runtime plus an emulated account whose REST
// listing of Durable Objects follows the runtime's persisted state.
type doAccount struct {
	w   *workerd.Worker
	env map[string]string
	dir string
}

func startDOAccount(t *testing.T) *doAccount {
	t.Helper()
	w := workerd.Start(t, workerd.Options{Secret: doSecret})
	dir := t.TempDir()
	srv, base := cftest.Start(t, cftest.Options{DataDir: filepath.Join(dir, "emu")})
	for i, class := range []string{"SessionStore", "RateLimiter"} {
		id := fmt.Sprintf("%032x", i+1)
		srv.AddNamespace(cftest.Namespace{ID: id, Class: class, Name: workerd.ScriptName + "_" + class, Script: workerd.ScriptName, UseSQLite: class == "SessionStore"})
		srv.SetObjectLister(id, cftest.ObjectsFromState(w.ClassDir(class)))
	}
	return &doAccount{w: w, dir: dir, env: map[string]string{
		"CFBACKUP_CLOUDFLARE_API_URL": base + "/client/v4",
		"CLOUDFLARE_ACCOUNT_ID":       srv.AccountID(),
		"CLOUDFLARE_API_TOKEN":        "test-token",
		"CFBACKUP_WORKER_URL":         w.URL,
		"CFBACKUP_WORKER_SECRET":      doSecret,
		"CFBACKUP_REPOSITORY":         filepath.Join(dir, "repo"),
		"CFBACKUP_IDENTITY_FILE":      filepath.Join(dir, "key.txt"),
		"HOME":                        dir,
	}}
}

// run runs cfbackup in-process and returns its exit code, stdout and stderr.
func (a *doAccount) run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Run(context.Background(), args, cli.IO{In: strings.NewReader(""), Out: &out, Err: &errb}, func(k string) string { return a.env[k] })
	return code, out.String(), errb.String()
}

func (a *doAccount) must(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errs := a.run(t, args...)
	if code != 0 {
		t.Fatalf("cfbackup %s: exit %d\n%s\n%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

func (a *doAccount) initRepo(t *testing.T) {
	rcpt := strings.TrimSpace(a.must(t, "key", "generate", "-o", filepath.Join(a.dir, "key.txt")))
	if err := os.WriteFile(filepath.Join(a.dir, "rcpt.txt"), []byte(rcpt+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a.must(t, "init", "--recipients-file", filepath.Join(a.dir, "rcpt.txt"), "--writer-key-file", filepath.Join(a.dir, "writer.key"))
}

func get(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return b
}

// parallel runs fn(i) for i in [0,n) on 8 goroutines.
func parallel(n int, fn func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for k := 0; k < 8; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
}

var routeOf = map[string]string{"SessionStore": "sessions", "RateLimiter": "ratelimit"}

// inspectAll describes every object of both classes with the runtime's own type names (the example
// app's /__test/inspect, independent of cfbackup's codec): id → description.
func (a *doAccount) inspectAll(t *testing.T) map[string]any {
	t.Helper()
	out := map[string]any{}
	var mu sync.Mutex
	for class, route := range routeOf {
		objs, err := cftest.ObjectsFromState(a.w.ClassDir(class))()
		if err != nil {
			t.Fatal(err)
		}
		parallel(len(objs), func(i int) {
			var v any
			if err := json.Unmarshal(get(t, a.w.URL+"/"+route+"/"+objs[i].ID+"/__test/inspect"), &v); err != nil {
				t.Error(err)
			}
			mu.Lock()
			out[class+"/"+objs[i].ID] = v
			mu.Unlock()
		})
	}
	return out
}

// TestDurableObjectsBackupWipeRestore is the end to end: 1000 objects of mixed value types
// (900 SQLite-backed sessions with tables and alarms, 100 KV-backed rate limiters) in the real
// runtime, backed up with the CLI, wiped (the runtime's state deleted), restored, and compared deeply,
// types and alarms included.
func TestDurableObjectsBackupWipeRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the Workers runtime")
	}
	a := startDOAccount(t)
	parallel(1000, func(i int) {
		if i < 900 {
			get(t, fmt.Sprintf("%s/sessions/name:session-%d/__test/seed?i=%d", a.w.URL, i, i))
		} else {
			get(t, fmt.Sprintf("%s/ratelimit/name:client-%d/__test/seed?i=%d", a.w.URL, i, i))
		}
	})
	before := a.inspectAll(t)
	if len(before) != 1000 {
		t.Fatalf("seeded %d objects, want 1000", len(before))
	}
	a.initRepo(t)

	plan := a.must(t, "backup", "--component", "do", "--dry-run")
	if !strings.Contains(plan, "900 object(s) with data") || !strings.Contains(plan, "100 object(s) with data") {
		t.Fatalf("dry-run plan:\n%s", plan)
	}
	var sum struct {
		Snapshot string
		Items    int
		Sources  []struct {
			Name  string
			Class string
			Items int
		}
	}
	if err := json.Unmarshal([]byte(a.must(t, "backup", "--component", "do", "--do-concurrency", "8", "--json")), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Items != 1000 || len(sum.Sources) != 2 {
		t.Fatalf("backup summary: %+v", sum)
	}

	// Disaster: the runtime's whole state is gone.
	a.w.Restart(t, doSecret, true)
	if objs, _ := cftest.ObjectsFromState(a.w.ClassDir("SessionStore"))(); len(objs) != 0 {
		t.Fatalf("wipe left %d objects", len(objs))
	}
	a.env["CFBACKUP_WORKER_URL"] = a.w.URL

	out := a.must(t, "restore", "latest", "--component", "do", "--json")
	var rs struct{ Objects, Atomic_objects int }
	if err := json.Unmarshal([]byte(out), &rs); err != nil || rs.Objects != 1000 {
		t.Fatalf("restore summary %s (%v)", out, err)
	}
	if rs.Atomic_objects != 900 {
		t.Errorf("%d SQLite-backed objects restored in one transaction, want 900", rs.Atomic_objects)
	}
	after := a.inspectAll(t)
	if len(after) != len(before) {
		t.Fatalf("restored %d objects, want %d", len(after), len(before))
	}
	bad := 0
	for k, v := range before {
		if !reflect.DeepEqual(v, after[k]) {
			if bad++; bad <= 3 {
				b1, _ := json.Marshal(v)
				b2, _ := json.Marshal(after[k])
				t.Errorf("object %s differs:\nbefore %s\nafter  %s", k, b1, b2)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d objects differ after restore", bad, len(before))
	}

	// The objects are live now: overwriting them needs --yes, and a safety snapshot is taken first.
	one := ""
	for k := range before {
		if strings.HasPrefix(k, "SessionStore/") {
			one = strings.TrimPrefix(k, "SessionStore/")
			break
		}
	}
	code, _, errs := a.run(t, "restore", sum.Snapshot, "--component", "do", "--object-id", one)
	if code != cli.ExitRefused || !strings.Contains(errs, "--yes") {
		t.Fatalf("restore over a live object without --yes: exit %d, %s", code, errs)
	}
	dry := a.must(t, "restore", sum.Snapshot, "--component", "do", "--object-id", one, "--dry-run")
	if !strings.Contains(dry, "1 live object(s) overwritten") {
		t.Fatalf("dry run: %s", dry)
	}
	get(t, a.w.URL+"/sessions/"+one+"/__test/seed?i=4242") // change it, so the rollback has something to undo
	changed := get(t, a.w.URL+"/sessions/"+one+"/__test/inspect")
	code, out, errs = a.run(t, "restore", sum.Snapshot, "--component", "do", "--object-id", one, "--yes")
	if code != 0 || !strings.Contains(errs, "Safety snapshot") || !strings.Contains(out, "Restored 1 Durable Object") {
		t.Fatalf("restore --yes: exit %d\n%s\n%s", code, out, errs)
	}
	var v any
	_ = json.Unmarshal(get(t, a.w.URL+"/sessions/"+one+"/__test/inspect"), &v)
	if !reflect.DeepEqual(v, before["SessionStore/"+one]) {
		t.Fatal("single-object restore did not bring the object back")
	}
	// Roll back with the printed command: the changed state returns.
	undo := errs[strings.Index(errs, "cfbackup restore "):]
	undo = strings.TrimSpace(strings.SplitN(undo, "\n", 2)[0])
	a.must(t, strings.Fields(undo)[1:]...)
	if got := get(t, a.w.URL+"/sessions/"+one+"/__test/inspect"); !bytes.Equal(got, changed) {
		t.Fatalf("rollback: got %s\nwant %s", got, changed)
	}
}

// TestDurableObjectsWorkerErrors: a wrong secret and unknown IDs are refused with clear errors and
// documented exit codes.
func TestDurableObjectsWorkerErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the Workers runtime")
	}
	a := startDOAccount(t)
	get(t, a.w.URL+"/sessions/name:x/__test/seed?i=1")
	a.initRepo(t)
	a.env["CFBACKUP_WORKER_SECRET"] = strings.Repeat("w", 40)
	code, _, errs := a.run(t, "backup", "--component", "do")
	if code != cli.ExitCloudflare || !strings.Contains(errs, "CFBACKUP_SECRET (Worker) differ") {
		t.Fatalf("wrong secret: exit %d %s", code, errs)
	}
	delete(a.env, "CFBACKUP_WORKER_SECRET")
	code, _, errs = a.run(t, "backup", "--component", "do")
	if code != cli.ExitUsage || !strings.Contains(errs, "CFBACKUP_WORKER_SECRET is not set") {
		t.Fatalf("no secret: exit %d %s", code, errs)
	}
	secretFile := filepath.Join(a.dir, "worker.secret")
	if err := os.WriteFile(secretFile, []byte(doSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a.env["CFBACKUP_WORKER_SECRET_FILE"] = secretFile
	a.must(t, "backup", "--component", "do", "--do-namespace", "SessionStore")
	code, _, errs = a.run(t, "restore", "latest", "--component", "do", "--object-id", "nothex")
	if code != cli.ExitUsage || !strings.Contains(errs, "64 hex digits") {
		t.Fatalf("bad id: exit %d %s", code, errs)
	}
	code, _, errs = a.run(t, "restore", "latest", "--component", "do", "--object-id", strings.Repeat("ab", 32))
	if code != cli.ExitNotFound {
		t.Fatalf("unknown id: exit %d %s", code, errs)
	}
}

// TestDurableObjectsUnrestorableValueAndPartialRestore: a value that local workerd accepts but the
// platform would refuse on restore (140,006 B V8-serialised in a KV-backed object) is announced when
// the backup is taken; the restore brings back every other object, names the one that cannot be
// restored, and exits non-zero (8). A 108,008 B CJK value (162,002 B as UTF-8) is legal and restored.
func TestDurableObjectsUnrestorableValueAndPartialRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the Workers runtime")
	}
	a := startDOAccount(t)
	put := func(route, name, key string, v any) string {
		get(t, fmt.Sprintf("%s/%s/name:%s/__test/seed?i=3", a.w.URL, route, name))
		b, _ := json.Marshal(map[string]any{"k": key, "v": v})
		resp, err := http.Post(fmt.Sprintf("%s/%s/name:%s/__test/put", a.w.URL, route, name), "application/json", bytes.NewReader(b))
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("put: %v %v", err, resp)
		}
		resp.Body.Close()
		var in struct{ ID string }
		_ = json.Unmarshal(get(t, fmt.Sprintf("%s/%s/name:%s/__test/inspect", a.w.URL, route, name)), &in)
		return in.ID
	}
	huge := put("ratelimit", "huge", "huge", strings.Repeat("é", 140000))
	cjk := put("ratelimit", "cjk", "cjk", strings.Repeat("漢", 54001))
	for i := 0; i < 4; i++ {
		put("ratelimit", fmt.Sprint("plain", i), "x", i)
		put("sessions", fmt.Sprint("s", i), "y", i)
	}
	before := a.inspectAll(t)
	a.initRepo(t)
	code, _, errs := a.run(t, "backup", "--component", "do")
	if code != 0 || !strings.Contains(errs, "Warning: Durable Object") || !strings.Contains(errs, huge) ||
		!strings.Contains(errs, `kv "huge": value of 140006 bytes (V8 serialisation) exceeds the 131072-byte value limit`) || strings.Contains(errs, cjk) {
		t.Fatalf("backup: exit %d, stderr:\n%s", code, errs)
	}
	a.w.Restart(t, doSecret, true)
	a.env["CFBACKUP_WORKER_URL"] = a.w.URL
	code, out, errs := a.run(t, "restore", "latest", "--component", "do")
	if code != cli.ExitRefused || !strings.Contains(errs, "1 of 10 Durable Object(s) could not be restored") || !strings.Contains(errs, huge) || !strings.Contains(errs, "9 of 10 object(s) were restored") {
		t.Fatalf("restore: exit %d\n%s\n%s", code, out, errs)
	}
	after := a.inspectAll(t)
	for k, v := range before {
		if strings.HasSuffix(k, huge) {
			if got, ok := after[k].(map[string]any); ok && len(got["kv"].([]any)) != 0 {
				t.Errorf("the refused object %s holds data after the restore: %v", k, got)
			}
			continue
		}
		if !reflect.DeepEqual(v, after[k]) {
			t.Errorf("object %s not restored", k)
		}
	}
}
