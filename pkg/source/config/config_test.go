package config_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/internal/cftest"
	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/keys"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/source/config"
	"github.com/cfbackup/cfbackup/pkg/store/local"
)

type fixture struct {
	srv *cftest.Server
	cf  *cloudflare.Client
	eng *engine.Engine
	ids []age.Identity
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	srv, base := cftest.Start(t, cftest.Options{})
	if _, err := srv.CreateDatabase("appdb"); err != nil {
		t.Fatal(err)
	}
	srv.SeedWorkersExample()
	cf, err := cloudflare.New(cloudflare.Config{AccountID: srv.AccountID(), APIToken: "test-token", BaseURL: base + "/client/v4"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := local.New(filepath.Join(dir, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	idStr, rcp, err := keys.Generate(false)
	if err != nil {
		t.Fatal(err)
	}
	idFile := filepath.Join(dir, "key.txt")
	if err := keys.WriteIdentityFile(idFile, idStr, rcp); err != nil {
		t.Fatal(err)
	}
	ids, err := keys.ReadIdentityFile(idFile)
	if err != nil {
		t.Fatal(err)
	}
	r, _, err := repo.Init(ctx, st, repo.InitOptions{Recipients: []string{rcp}})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{srv: srv, cf: cf, eng: &engine.Engine{Repo: r}, ids: ids}
}

func (f *fixture) backup(t testing.TB, st *config.State) *manifest.Manifest {
	t.Helper()
	plan := &engine.BackupPlan{Components: []string{config.Component}}
	plan.AddCapture(engine.Capture{Component: config.Component, Name: st.AccountID, Run: func(ctx context.Context, s *engine.Session) error {
		src, items, err := config.Backup(ctx, s.Writer, st)
		if err != nil {
			return err
		}
		s.Add(src, items...)
		return nil
	}})
	m, err := f.eng.Backup(context.Background(), plan, engine.BackupOptions{Components: plan.Components})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (f *fixture) load(t *testing.T, m *manifest.Manifest, scripts ...string) (*config.State, error) {
	t.Helper()
	cat, err := engine.OpenCatalogue(m, f.ids)
	if err != nil {
		t.Fatal(err)
	}
	srcs := engine.SourcesOf(m, config.Component)
	if len(srcs) != 1 {
		t.Fatalf("snapshot has %d config sources", len(srcs))
	}
	return config.Load(context.Background(), config.Opener(f.eng.Opener(m, f.ids)), cat, srcs[0], scripts)
}

func TestCaptureBackupLoadWriteDir(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.srv.LeakSecretValues(true) // even if the API returned secret values, none may be stored
	st, err := config.Capture(ctx, f.cf, config.Options{Zones: []string{"3f2a9c1e0b8d4e6fa1b2c3d4e5f60718"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Problems) != 0 {
		t.Fatalf("problems: %v", st.Problems)
	}
	if got := st.ScriptNames(); strings.Join(got, ",") != "app,cron" {
		t.Fatalf("scripts %v", got)
	}
	app, err := config.Encode(st.Scripts["app"])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"ISSUER_URL"`, `"https://login.example.com"`, `"max_sessions": 5`, `"OIDC_CLIENT_SECRET"`,
		`"pattern": "api.example.com/*"`, `"hostname": "login.example.com"`, `"compatibility_date": "2026-07-01"`, `"class_name": "SessionStore"`} {
		if !bytes.Contains(app, []byte(want)) {
			t.Errorf("app document lacks %s:\n%s", want, app)
		}
	}
	cron, _ := config.Encode(st.Scripts["cron"])
	if !bytes.Contains(cron, []byte(`"cron": "0 3 * * mon"`)) {
		t.Errorf("cron document lacks its schedule:\n%s", cron)
	}
	inv, _ := config.Encode(st.Inventory)
	for _, want := range []string{`"app-uploads"`, `"appdb"`, `"SessionStore"`, `"workers_scripts"`} {
		if !bytes.Contains(inv, []byte(want)) {
			t.Errorf("inventory lacks %s:\n%s", want, inv)
		}
	}

	m := f.backup(t, st)
	if m.Items != 3 || len(m.Sources) != 1 || m.Sources[0].Name != f.srv.AccountID() {
		t.Fatalf("manifest: %d items, sources %+v", m.Items, m.Sources)
	}
	// No secret value anywhere in the repository's plaintext either (it is encrypted, but check what
	// restore gives back).
	back, err := f.load(t, m)
	if err != nil {
		t.Fatal(err)
	}
	if d := config.Diff(st, back); len(d) != 0 {
		t.Fatalf("loaded state differs from the captured one: %+v", d)
	}
	dir := filepath.Join(t.TempDir(), "out")
	paths, err := config.WriteDir(dir, back, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 3 {
		t.Fatalf("wrote %v", paths)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte("s3cr3t")) {
			t.Fatalf("%s holds a secret value:\n%s", p, b)
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "scripts", "app.json"))
	if !bytes.Equal(b, app) {
		t.Fatalf("written app.json differs from the captured document")
	}
	if _, err := config.WriteDir(dir, back, false); !errors.Is(err, config.ErrExists) {
		t.Fatalf("second WriteDir: %v, want ErrExists", err)
	}
	if _, err := config.WriteDir(dir, back, true); err != nil {
		t.Fatalf("overwrite: %v", err)
	}

	one, err := f.load(t, m, "cron")
	if err != nil || len(one.Scripts) != 1 {
		t.Fatalf("load cron only: %v, %d scripts", err, len(one.Scripts))
	}
	if _, err := f.load(t, m, "nope"); !errors.Is(err, config.ErrNoScript) {
		t.Fatalf("load unknown script: %v", err)
	}
}

func TestStableEncoding(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a, err := config.Capture(ctx, f.cf, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond)
	b, err := config.Capture(ctx, f.cf, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range a.ScriptNames() {
		x, _ := config.Encode(a.Scripts[n])
		y, _ := config.Encode(b.Scripts[n])
		if !bytes.Equal(x, y) {
			t.Fatalf("two captures of %s differ:\n%s\n%s", n, x, y)
		}
	}
}

func TestDiffFindsChanges(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	old, err := config.Capture(ctx, f.cf, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d := config.Diff(old, old); len(d) != 0 {
		t.Fatalf("self diff: %+v", d)
	}
	ws, _ := f.srv.WorkerScriptConfig("app")
	for _, b := range ws.Bindings {
		if b["name"] == "ISSUER_URL" {
			b["text"] = "https://login2.example.com"
		}
	}
	ws.Bindings = append(ws.Bindings, map[string]any{"type": "secret_text", "name": "NEW_SECRET", "text": "x"})
	f.srv.PutWorkerScript(ws) // also moves modified_on and etag, which Diff ignores
	f.srv.DeleteWorkerScript("cron")
	f.srv.PutWorkerScript(cftest.WorkerScript{Name: "newbie", CompatibilityDate: "2026-08-01"})
	f.srv.DeleteR2Bucket("app-uploads")
	cur, err := config.Capture(ctx, f.cf, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	config.WriteText(&text, config.Diff(old, cur))
	got := text.String()
	for _, want := range []string{
		`~ script app: settings.bindings[name=ISSUER_URL].text: "https://login.example.com" → "https://login2.example.com"`,
		`+ script app: secrets[name=NEW_SECRET] = {"name":"NEW_SECRET","type":"secret_text"}`,
		`+ script app: settings.bindings[name=NEW_SECRET] = {"name":"NEW_SECRET","type":"secret_text"}`,
		`- script cron (in the snapshot, not in the account)`,
		`+ script newbie (in the account, not in the snapshot)`,
		`- inventory: r2_buckets[name=app-uploads]`,
		`- inventory: workers_scripts["cron"] = "cron"`,
		`+ inventory: workers_scripts["newbie"] = "newbie"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("diff lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "modified_on") || strings.Contains(got, "etag") {
		t.Errorf("diff reports ignored keys:\n%s", got)
	}
}

func TestUnavailablePartsAreRecorded(t *testing.T) {
	f := newFixture(t)
	bad, err := cloudflare.New(cloudflare.Config{AccountID: f.srv.AccountID(), APIToken: "test-token", BaseURL: "http://127.0.0.1:1/client/v4", MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	// A client that reaches nothing fails outright (the scripts list is required).
	if _, err := config.Capture(context.Background(), bad, config.Options{}); !errors.Is(err, cloudflare.ErrUnreachable) {
		t.Fatalf("unreachable API: %v", err)
	}
	// Optional parts that fail are recorded, not fatal: an API missing the R2 listing.
	st, err := config.Capture(context.Background(), partial{f.cf}, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Problems) != 1 || st.Inventory["unavailable"] == nil || st.Inventory["r2_buckets"] != nil {
		t.Fatalf("problems %v, inventory %v", st.Problems, st.Inventory)
	}
}

type partial struct{ *cloudflare.Client }

func (partial) ListR2BucketsRaw(context.Context) ([]json.RawMessage, error) {
	return nil, fmt.Errorf("list R2 buckets: %w (HTTP 403)", cloudflare.ErrAuth)
}

// BenchmarkCaptureBackup measures capturing and storing the configuration of 200 scripts (about 1,000
// REST calls against the emulator on loopback).
func BenchmarkCaptureBackup(b *testing.B) {
	f := newFixture(b)
	for i := range 200 {
		f.srv.PutWorkerScript(cftest.WorkerScript{Name: fmt.Sprintf("w%03d", i), CompatibilityDate: "2026-07-01", Schedules: []string{"* * * * *"},
			Bindings: []map[string]any{{"type": "plain_text", "name": "A", "text": "x"}, {"type": "secret_text", "name": "S", "text": "y"}}})
	}
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		st, err := config.Capture(ctx, f.cf, config.Options{})
		if err != nil {
			b.Fatal(err)
		}
		f.backup(b, st)
	}
}
