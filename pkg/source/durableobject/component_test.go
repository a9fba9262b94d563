package durableobject

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source"
)

// fakeAPI is an account with namespaces and the objects holding data in each.
type fakeAPI struct {
	nss  []cloudflare.Namespace
	live map[string][]string // namespace id → object ids with data
}

func (f *fakeAPI) ListNamespaces(context.Context) ([]cloudflare.Namespace, error) { return f.nss, nil }

func (f *fakeAPI) ResolveNamespace(_ context.Context, ref string) (cloudflare.Namespace, error) {
	for _, ns := range f.nss {
		if ns.ID == ref || ns.Name == ref || ns.Class == ref {
			return ns, nil
		}
	}
	return cloudflare.Namespace{}, cloudflare.ErrNotFound
}

func (f *fakeAPI) ListObjects(_ context.Context, id string, _ int, fn func([]cloudflare.DurableObject) error) error {
	var objs []cloudflare.DurableObject
	for _, o := range f.live[id] {
		objs = append(objs, cloudflare.DurableObject{ID: o, HasStoredData: true})
	}
	return fn(append(objs, cloudflare.DurableObject{ID: strings.Repeat("e", 64)}))
}

// fakeEnv answers settings from a map; Cloudflare is never reached (the component's api is set).
type fakeEnv map[string]string

func (e fakeEnv) Cloudflare() (*cloudflare.Client, error) { return nil, errors.New("no account") }
func (e fakeEnv) Setting(k string) string                 { return e[k] }
func (e fakeEnv) Log() *slog.Logger                       { return slog.New(slog.DiscardHandler) }
func (e fakeEnv) Stderr() io.Writer                       { return io.Discard }
func (e fakeEnv) Interactive() bool                       { return false }

func oid(c string) string { return strings.Repeat(c, 64) }

func restoreFixture() (*fakeAPI, source.RestoreRequest) {
	api := &fakeAPI{
		nss:  []cloudflare.Namespace{{ID: "ns1", Name: "app_Sessions", Class: "SessionStore"}, {ID: "ns2", Name: "app_Limits", Class: "RateLimiter"}},
		live: map[string][]string{"ns1": {oid("a")}},
	}
	m := &manifest.Manifest{ID: "snap1", Components: []string{Component}, Sources: []manifest.Source{
		{Component: Component, ID: "ns1", Name: "app_Sessions", Class: "SessionStore", Items: 2},
		{Component: Component, ID: "ns2", Name: "app_Limits", Class: "RateLimiter", Items: 1},
	}}
	item := func(ns, id string) manifest.Item {
		return manifest.Item{Component: Component, Source: ns, Kind: "object", ObjectID: id, ItemRef: archive.ItemRef{Name: ItemName(ns, id), Size: 100}}
	}
	cat := &manifest.Catalogue{Items: []manifest.Item{item("ns1", oid("a")), item("ns1", oid("b")), item("ns2", oid("c"))}}
	return api, source.RestoreRequest{Snapshot: m, Catalogue: cat, DryRun: true}
}

func restoreFlags(t *testing.T, args ...string) (*component, *pflag.FlagSet) {
	t.Helper()
	c := &component{}
	fs := pflag.NewFlagSet("restore", pflag.ContinueOnError)
	fs.String("to-file", "", "")
	c.Flags(source.VerbRestore, fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return c, fs
}

func TestPlanRestoreSelectsObjectsAndFindsLiveOnes(t *testing.T) {
	api, req := restoreFixture()
	c, fs := restoreFlags(t)
	c.api = api
	if err := c.CheckFlags(source.VerbRestore, fs); err != nil {
		t.Fatal(err)
	}
	p, err := c.PlanRestore(context.Background(), fakeEnv{}, req)
	if err != nil {
		t.Fatal(err)
	}
	plan := p.JSON().(RestorePlanJSON)
	if plan.Objects != 3 || plan.Live != 1 || len(plan.Namespaces) != 2 || plan.Namespaces[0].Live[0] != oid("a") {
		t.Fatalf("plan: %+v", plan)
	}
	if cf := p.Confirm(); cf == nil || cf.Name != "app_Sessions" || !strings.Contains(cf.Prompt, "1 live Durable Object(s)") {
		t.Fatalf("confirm: %+v", cf)
	}
	sf := p.Safety()
	if sf == nil || len(sf.Captures) != 1 || sf.Target != "app_Sessions" || sf.Undo("s2") != "cfbackup restore s2 --component do --yes" {
		t.Fatalf("safety: %+v", sf)
	}
	var text bytes.Buffer
	p.Text(&text)
	if !strings.Contains(text.String(), "Would restore 3 Durable Object(s)") || !strings.Contains(text.String(), "needs --yes") {
		t.Fatalf("text:\n%s", text.String())
	}

	// One namespace, one object that is not live: nothing to confirm, no safety snapshot.
	c, fs = restoreFlags(t, "--do-namespace", "RateLimiter")
	c.api = api
	if err := c.CheckFlags(source.VerbRestore, fs); err != nil {
		t.Fatal(err)
	}
	if p, err = c.PlanRestore(context.Background(), fakeEnv{}, req); err != nil || p.Confirm() != nil || p.Safety() != nil || p.JSON().(RestorePlanJSON).Objects != 1 {
		t.Fatalf("one namespace: %v %+v", err, p)
	}
}

func TestPlanRestoreRefusals(t *testing.T) {
	api, req := restoreFixture()
	ids := filepath.Join(t.TempDir(), "ids.txt")
	_ = os.WriteFile(ids, []byte("# none\n"), 0o600)
	for _, tc := range []struct {
		args  []string
		class *errclass.Class
		text  string
	}{
		{[]string{"--object-id", "xyz"}, errclass.Usage, "64 hex digits"},
		{[]string{"--object-id", oid("a"), "--object-ids-from", ids}, errclass.Usage, "not both"},
		{[]string{"--object-ids-from", ids}, errclass.Usage, "lists no object ID"},
		{[]string{"--to-file", "x.sqlite"}, errclass.Usage, "bound to their namespace"},
		{[]string{"--do-concurrency", "0"}, errclass.Usage, "use 1 to 64"},
		{[]string{"--object-id", oid("f")}, errclass.NotFound, "not in snapshot snap1"},
		{[]string{"--do-namespace", "nope"}, errclass.NotFound, `namespace "nope" is not in snapshot`},
	} {
		c, fs := restoreFlags(t, tc.args...)
		c.api = api
		err := c.CheckFlags(source.VerbRestore, fs)
		if err == nil {
			_, err = c.PlanRestore(context.Background(), fakeEnv{}, req)
		}
		if err == nil || errclass.Of(err) != tc.class || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%v: %v (class %v)", tc.args, err, errclass.Of(err))
		}
	}
}

func TestWorkerClientFromSettings(t *testing.T) {
	secret := strings.Repeat("s", 40)
	file := filepath.Join(t.TempDir(), "secret")
	_ = os.WriteFile(file, []byte(secret+"\n"), 0o600)
	if _, err := WorkerClient(fakeEnv{"worker_url": "https://app.example.workers.dev", "worker_secret_file": file}); err != nil {
		t.Fatal(err)
	}
	for _, env := range []fakeEnv{
		{},
		{"worker_url": "https://app.example.workers.dev"},
		{"worker_url": "https://app.example.workers.dev", "worker_secret": "short-secret-value"},
		{"worker_url": "https://app.example.workers.dev", "worker_secret_file": file + ".missing"},
	} {
		_, err := WorkerClient(env)
		if errclass.Of(err) != errclass.Usage || (env["worker_secret"] != "" && strings.Contains(err.Error(), env["worker_secret"])) {
			t.Errorf("%v: %v", env, err)
		}
	}
}

func TestPlanBackupListsNamespacesWithData(t *testing.T) {
	api, _ := restoreFixture()
	c := &component{api: api}
	fs := pflag.NewFlagSet("backup", pflag.ContinueOnError)
	c.Flags(source.VerbBackup, fs)
	env := fakeEnv{"worker_url": "https://app.example.workers.dev", "worker_secret": strings.Repeat("s", 40)}
	plan, err := c.PlanBackup(context.Background(), env, source.BackupRequest{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	details := plan.Details[Component].([]NamespacePlan)
	if len(plan.Captures()) != 2 || len(details) != 2 || details[0].Objects != 1 || details[0].Empty != 1 || details[1].Objects != 0 {
		t.Fatalf("plan: %+v", details)
	}
	var text bytes.Buffer
	plan.PrintText(&text)
	if !strings.Contains(text.String(), "Would back up 2 Durable Object namespace(s)") {
		t.Fatalf("text:\n%s", text.String())
	}
}
