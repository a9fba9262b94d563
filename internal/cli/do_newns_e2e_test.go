package cli_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/cfbackup/cfbackup/internal/cftest"
	"github.com/cfbackup/cfbackup/internal/cli"
	"github.com/cfbackup/cfbackup/internal/testutil/workerd"
)

// newAccount is an empty second account: another emulated REST API (its namespaces have other IDs)
// and the same app deployed under another script name, so the runtime derives other object IDs
// from the same names, as Cloudflare does in another namespace.
func newAccount(t *testing.T, old *doAccount) *doAccount {
	t.Helper()
	w := workerd.Start(t, workerd.Options{Secret: doSecret, Name: "oidc-newacct"})
	srv, base := cftest.Start(t, cftest.Options{DataDir: filepath.Join(t.TempDir(), "emu2")})
	for i, class := range []string{"SessionStore", "RateLimiter"} {
		id := fmt.Sprintf("%032x", 0x100+i)
		srv.AddNamespace(cftest.Namespace{ID: id, Class: class, Name: w.Name + "_" + class, Script: w.Name, UseSQLite: class == "SessionStore"})
		srv.SetObjectLister(id, cftest.ObjectsFromState(w.ClassDir(class)))
	}
	env := maps.Clone(old.env)
	env["CFBACKUP_CLOUDFLARE_API_URL"] = base + "/client/v4"
	env["CLOUDFLARE_ACCOUNT_ID"] = srv.AccountID()
	env["CFBACKUP_WORKER_URL"] = w.URL
	return &doAccount{w: w, dir: old.dir, env: env}
}

// inspectAt is the example app's description of one object (route: name:<n> or an ID), without
// its ID, which differs by design in another namespace.
func inspectAt(t *testing.T, base, route, ref string) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(get(t, base+"/"+route+"/"+ref+"/__test/inspect"), &v); err != nil {
		t.Fatal(err)
	}
	delete(v, "id")
	return v
}

func inspectID(t *testing.T, base, route, ref string) string {
	t.Helper()
	var v struct{ ID string }
	if err := json.Unmarshal(get(t, base+"/"+route+"/"+ref+"/__test/inspect"), &v); err != nil {
		t.Fatal(err)
	}
	return v.ID
}

// TestDurableObjectsRestoreIntoNewNamespace is issue 15 §4: objects created by name come back under
// the same name in another account's namespace and read back equal value by value; unnamed objects
// are reported by --dry-run as unplaceable and refused, land through an ID map (new IDs or names),
// and can be left out with --skip-unplaceable.
func TestDurableObjectsRestoreIntoNewNamespace(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the Workers runtime")
	}
	a := startDOAccount(t)
	const named, limiters, unnamed = 40, 10, 5
	parallel(named+limiters, func(i int) {
		if i < named {
			get(t, fmt.Sprintf("%s/sessions/name:session-%d/__test/seed?i=%d", a.w.URL, i, i))
		} else {
			get(t, fmt.Sprintf("%s/ratelimit/name:client-%d/__test/seed?i=%d", a.w.URL, i, i))
		}
	})
	var loose []string // objects made with newUniqueId: no name to re-create them from
	for i := 0; i < unnamed; i++ {
		resp, err := http.Get(fmt.Sprintf("%s/sessions/unique/__test/seed?i=%d", a.w.URL, 100+i))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loose = append(loose, resp.Header.Get("x-object-id"))
	}
	slices.Sort(loose)
	before := map[string]map[string]any{}
	for i := 0; i < named+limiters; i++ {
		route, ref := "sessions", fmt.Sprintf("name:session-%d", i)
		if i >= named {
			route, ref = "ratelimit", fmt.Sprintf("name:client-%d", i)
		}
		before[ref] = inspectAt(t, a.w.URL, route, ref)
	}
	for _, id := range loose {
		before[id] = inspectAt(t, a.w.URL, "sessions", id)
	}
	a.initRepo(t)
	a.must(t, "backup", "--component", "do")

	b := newAccount(t, a)
	// The old namespace is not in the new account: the plain restore says how to go on.
	code, _, errs := b.run(t, "restore", "latest", "--component", "do", "--do-namespace", "SessionStore")
	if code != cli.ExitNotFound || !strings.Contains(errs, "idFromName") {
		t.Fatalf("restore into the new account without --to-do-namespace: exit %d, %s", code, errs)
	}
	// Several namespaces into one: refused.
	if code, _, errs = b.run(t, "restore", "latest", "--component", "do", "--to-do-namespace", "SessionStore"); code != cli.ExitUsage || !strings.Contains(errs, "--do-namespace") {
		t.Fatalf("two namespaces into one: exit %d, %s", code, errs)
	}

	into := []string{"restore", "latest", "--component", "do", "--do-namespace", "SessionStore", "--to-do-namespace", "oidc-newacct_SessionStore"}
	type plan struct {
		Objects    int
		Namespaces []struct {
			Placement struct {
				Target      struct{ ID, Name, Class string }
				ByName      int      `json:"by_name"`
				ByMap       int      `json:"by_map"`
				Unplaceable []string `json:"unplaceable_ids"`
			}
		}
	}
	var doc struct{ Plan plan }
	if err := json.Unmarshal([]byte(b.must(t, append(into, "--dry-run", "--json")...)), &doc); err != nil || len(doc.Plan.Namespaces) != 1 {
		t.Fatalf("dry-run plan: %+v (%v)", doc, err)
	}
	pl := doc.Plan.Namespaces[0].Placement
	if doc.Plan.Objects != named+unnamed || pl.ByName != named || pl.ByMap != 0 || !slices.Equal(pl.Unplaceable, loose) || pl.Target.ID != fmt.Sprintf("%032x", 0x100) {
		t.Fatalf("dry-run plan: %+v", doc.Plan)
	}
	text := b.must(t, append(into, "--dry-run")...)
	if !strings.Contains(text, fmt.Sprintf("%d by recorded name, 0 by --do-id-map, %d cannot be placed", named, unnamed)) || !strings.Contains(text, loose[0]) {
		t.Fatalf("dry-run text:\n%s", text)
	}

	// Without a map the restore refuses (exit 8) and writes nothing.
	code, _, errs = b.run(t, into...)
	if code != cli.ExitRefused || !strings.Contains(errs, "--do-id-map") || !strings.Contains(errs, "--skip-unplaceable") || !strings.Contains(errs, loose[0]) {
		t.Fatalf("restore with unplaceable objects: exit %d, %s", code, errs)
	}
	if objs, _ := cftest.ObjectsFromState(b.w.ClassDir("SessionStore"))(); len(objs) != 0 {
		t.Fatalf("a refused restore wrote %d objects", len(objs))
	}

	// The application maps three to IDs it minted in the new namespace, one to a name; the fifth is
	// left out with --skip-unplaceable.
	var lines []string
	newIDs := map[string]string{}
	for _, id := range loose[:3] {
		nid := strings.TrimSpace(string(get(t, b.w.URL+"/sessions/unique/__test/mint")))
		newIDs[id] = nid
		lines = append(lines, id+" "+nid)
	}
	lines = append(lines, "# by name", loose[3]+"\tname:restored 3/ü")
	mapFile := filepath.Join(a.dir, "ids.map")
	if err := os.WriteFile(mapFile, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var sum struct{ Objects int }
	out := b.must(t, append(into, "--do-id-map", mapFile, "--skip-unplaceable", "--json")...)
	if err := json.Unmarshal([]byte(out), &sum); err != nil || sum.Objects != named+4 {
		t.Fatalf("restore summary %s (%v)", out, err)
	}

	// Value by value: every named object under its name, mapped ones at their new IDs or name.
	for i := 0; i < named; i++ {
		ref := fmt.Sprintf("name:session-%d", i)
		if got := inspectAt(t, b.w.URL, "sessions", ref); !reflect.DeepEqual(got, before[ref]) {
			t.Fatalf("%s differs in the new namespace:\nbefore %v\nafter  %v", ref, before[ref], got)
		}
		if inspectID(t, b.w.URL, "sessions", ref) == inspectID(t, a.w.URL, "sessions", ref) {
			t.Fatal("the new account's runtime derived the same ID from a name: the test proves nothing")
		}
	}
	for old, nid := range newIDs {
		if got := inspectAt(t, b.w.URL, "sessions", nid); !reflect.DeepEqual(got, before[old]) {
			t.Fatalf("mapped %s -> %s differs:\nbefore %v\nafter  %v", old, nid, before[old], got)
		}
	}
	got := inspectAt(t, b.w.URL, "sessions", "name:"+url.PathEscape("restored 3/ü"))
	want := maps.Clone(before[loose[3]])
	// Re-created by name, it now remembers that name, so its next backup can place it too.
	want["kv"] = append([]any{[]any{"__cfbackup:name", "restored 3/ü"}}, want["kv"].([]any)...)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("object mapped to a name differs:\nwant %v\ngot  %v", want, got)
	}
	if objs, _ := cftest.ObjectsFromState(b.w.ClassDir("SessionStore"))(); len(objs) != named+4 {
		t.Fatalf("new namespace holds %d objects, want %d (the skipped one left out)", len(objs), named+4)
	}

	// The KV-backed class, addressed by class: all by name.
	b.must(t, "restore", "latest", "--component", "do", "--do-namespace", "RateLimiter", "--to-do-namespace", "RateLimiter")
	for i := named; i < named+limiters; i++ {
		ref := fmt.Sprintf("name:client-%d", i)
		if got := inspectAt(t, b.w.URL, "ratelimit", ref); !reflect.DeepEqual(got, before[ref]) {
			t.Fatalf("%s differs in the new namespace:\nbefore %v\nafter  %v", ref, before[ref], got)
		}
	}

	// Now the target holds data: restoring again needs --yes, and takes a safety snapshot first.
	code, _, errs = b.run(t, append(into, "--skip-unplaceable")...)
	if code != cli.ExitRefused || !strings.Contains(errs, "--yes") {
		t.Fatalf("restore over the new namespace's objects without --yes: exit %d, %s", code, errs)
	}
	_, _, errs = b.run(t, append(into, "--skip-unplaceable", "--yes")...)
	if !strings.Contains(errs, "Safety snapshot") {
		t.Fatalf("restore --yes over live objects took no safety snapshot: %s", errs)
	}
}
