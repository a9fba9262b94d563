package engine_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"

	"strings"
	"testing"
	"time"

	"github.com/cfbackup/cfbackup/internal/cftest"
	"github.com/cfbackup/cfbackup/internal/testutil/tools"
	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/keys"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/retention"
	"github.com/cfbackup/cfbackup/pkg/source/d1"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/local"
)

// updateCompat rewrites testdata/compat/v1 with the current code. Only do that when the format
// changes on purpose (and then bump the version directory instead of overwriting v1).
var updateCompat = flag.Bool("update-compat", false, "rewrite testdata/compat/v1 from source.sql with the current code")

const compatDir = "../../testdata/compat/v1"

// compatExpect is expected.json: what the compat repository must restore to, computed from the
// source database when the repository was generated.
type compatExpect struct {
	Snapshot string `json:"snapshot"`
	Database string `json:"database"` // D1 UUID (the manifest's sources[0].id)
	Items    int64  `json:"items"`
	Segments int    `json:"segments"`
	// Tables maps every table (virtual ones too) to its row count and the SHA-256 of its rows:
	// quote() of each column joined by ",", rows by "\n", in rowid order.
	Tables map[string]tableExpect `json:"tables"`
	// Schema is "type name" of every index, view and trigger, sorted.
	Schema   []string `json:"schema"`
	Sequence string   `json:"sqlite_sequence"`
}

type tableExpect struct {
	Rows   int    `json:"rows"`
	SHA256 string `json:"sha256"`
}

var compatTables = []string{"authors", "posts", "notes_fts"}

// describe computes the expectation of a SQLite file.
func describe(t *testing.T, path string) compatExpect {
	t.Helper()
	e := compatExpect{Tables: map[string]tableExpect{}}
	for _, tbl := range compatTables {
		rows := tableRows(t, path, tbl)
		sum := sha256.Sum256([]byte(strings.Join(rows, "\n")))
		e.Tables[tbl] = tableExpect{Rows: len(rows), SHA256: hex.EncodeToString(sum[:])}
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rs, err := db.Query(`SELECT type || ' ' || name FROM sqlite_master WHERE type IN ('index','view','trigger') AND name NOT LIKE 'sqlite_%' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	for rs.Next() {
		var s string
		rs.Scan(&s)
		e.Schema = append(e.Schema, s)
	}
	e.Sequence = scalar(t, path, `SELECT group_concat(name || '=' || seq) FROM sqlite_sequence`)
	return e
}

// TestCompatGenerate rewrites the compat repository; it runs only with -update-compat.
func TestCompatGenerate(t *testing.T) {
	if !*updateCompat {
		t.Skip("pass -update-compat to rewrite testdata/compat/v1")
	}
	ctx := context.Background()
	tmp := t.TempDir()
	src := filepath.Join(tmp, "source.sqlite")
	script, err := os.ReadFile(filepath.Join(compatDir, "source.sql"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", src)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(string(script)); err != nil {
		t.Fatal(err)
	}
	db.Close()

	for _, p := range []string{"repo", "key.txt", "expected.json"} {
		if err := os.RemoveAll(filepath.Join(compatDir, p)); err != nil {
			t.Fatal(err)
		}
	}
	srv, base := cftest.Start(t, cftest.Options{})
	uuid, err := srv.AddDatabase("compat", src)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := cloudflare.New(cloudflare.Config{AccountID: srv.AccountID(), APIToken: "test-token", BaseURL: base + "/client/v4", PollInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	idStr, rcp, err := keys.Generate(false)
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.WriteIdentityFile(filepath.Join(compatDir, "key.txt"), idStr, rcp); err != nil {
		t.Fatal(err)
	}
	st, err := local.New(filepath.Join(compatDir, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	// Tiny chunk and segment sizes so the repository has multi-chunk items and several segments.
	r, _, err := repo.Init(ctx, st, repo.InitOptions{Recipients: []string{rcp}, SegmentSize: 1 << 10, ChunkSize: 512, Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	eng := &engine.Engine{Repo: r, Now: func() time.Time { return at }, Tool: "cfbackup compat generator"}
	o := engine.BackupOptions{Labels: map[string]string{"purpose": "compat"}, Actor: "compat-generator"}
	plan, err := d1.PlanBackup(ctx, cf, []string{"compat"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := eng.Backup(ctx, plan, o)
	if err != nil {
		t.Fatal(err)
	}
	exp := describe(t, src)
	exp.Snapshot, exp.Database, exp.Items, exp.Segments = m.ID, uuid, m.Items, len(m.Segments)
	b, _ := json.MarshalIndent(exp, "", "  ")
	if err := os.WriteFile(filepath.Join(compatDir, "expected.json"), append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote snapshot %s: %d items, %d segments", m.ID, m.Items, len(m.Segments))
}

// copyCompat copies the committed repository to a writable temporary directory.
func copyCompat(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(compatDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(compatDir, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func loadExpect(t *testing.T, dir string) compatExpect {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "expected.json"))
	if err != nil {
		t.Fatalf("%v (generate with: go test ./pkg/engine -run TestCompat -update-compat)", err)
	}
	var e compatExpect
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	return e
}

// TestCompatV1 proves the current code still reads a repository written by the v1 code: list,
// quick and read-data verify, and a full restore to a file with the recorded rows.
func TestCompatV1(t *testing.T) {
	if *updateCompat {
		t.Skip("regenerating")
	}
	ctx := context.Background()
	dir := copyCompat(t)
	want := loadExpect(t, dir)
	st, err := local.New(filepath.Join(dir, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if r.Config.Format != 1 || r.Config.ChunkSize != 512 {
		t.Errorf("config = %+v", r.Config)
	}
	if _, err := r.Recipients(); err != nil {
		t.Fatalf("recipients: %v", err)
	}
	snaps, bad, err := r.ListSnapshots(ctx)
	if err != nil || len(bad) != 0 || len(snaps) != 1 {
		t.Fatalf("ListSnapshots = %d snapshots, bad %v, %v", len(snaps), bad, err)
	}
	m, err := r.LoadManifest(ctx, snaps[0])
	if err != nil {
		t.Fatal(err)
	}
	if m.Auth != manifest.AuthLegacy {
		t.Errorf("a format 1 manifest reads as %q, want legacy", m.Auth)
	}
	if m.ID != want.Snapshot || m.Format != 1 || m.Items != want.Items || len(m.Segments) != want.Segments {
		t.Fatalf("snapshot %s format %d items %d segments %d; expected.json says %+v", m.ID, m.Format, m.Items, len(m.Segments), want)
	}
	if want.Segments < 2 {
		t.Errorf("the compat repository should span several segments, has %d", want.Segments)
	}
	if got, err := r.FindSnapshot(ctx, want.Snapshot[:6], "d1"); err != nil || got.ID != m.ID {
		t.Errorf("FindSnapshot by prefix: %v, %v", got, err)
	}
	src, ok := m.SourceByName(d1.Component, "compat")
	if !ok || src.ID != want.Database || src.AtBookmark == "" {
		t.Errorf("source = %+v", m.Sources)
	}

	eng := &engine.Engine{Repo: r}
	if _, err := eng.Verify(ctx, m, engine.VerifyOptions{}); err != nil {
		t.Fatalf("quick verify: %v", err)
	}
	ids, err := keys.ReadIdentityFile(filepath.Join(dir, "key.txt"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := eng.Verify(ctx, m, engine.VerifyOptions{ReadData: true, Identities: ids})
	if err != nil {
		t.Fatalf("read-data verify: %v", err)
	}
	if int64(res.Items) != want.Items || res.Segments != want.Segments {
		t.Errorf("read-data verify checked %d items in %d segments", res.Items, res.Segments)
	}

	cat, err := engine.OpenCatalogue(m, ids)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	multi := false
	for _, it := range cat.Items {
		kinds[it.Kind] = true
		multi = multi || len(it.Chunks) > 1
	}
	for _, k := range []string{"table", "fixup", "schema", "virtual"} {
		if !kinds[k] {
			t.Errorf("the compat repository has no %q item", k)
		}
	}
	if !multi {
		t.Errorf("the compat repository has no multi-chunk item")
	}
	sel, err := d1.Select(cat, want.Database, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "restored.sqlite")
	if _, err := d1.RestoreToFile(ctx, eng.Opener(m, ids), sel, out); err != nil {
		t.Fatal(err)
	}
	got := describe(t, out)
	got.Snapshot, got.Database, got.Items, got.Segments = want.Snapshot, want.Database, want.Items, want.Segments
	if !reflect.DeepEqual(got, want) {
		t.Errorf("restored database differs from expected.json:\n got %+v\nwant %+v", got, want)
	}
}

// TestCompatV1ByHand runs the worked example of docs/FORMAT.md ("Restoring one table by hand") with
// the real age, lz4, tar, jq and sqlite3 CLIs, so the documentation cannot drift from the format.
func TestCompatV1ByHand(t *testing.T) {
	if *updateCompat {
		t.Skip("regenerating")
	}
	tools.Require(t, "age", "lz4", "tar", "jq", "sqlite3", "base64", "gunzip", "sha256sum")
	dir := copyCompat(t)
	want := loadExpect(t, dir)
	doc, err := os.ReadFile("../../docs/FORMAT.md")
	if err != nil {
		t.Fatal(err)
	}
	script := fencedAfter(t, string(doc), "### Restoring one table by hand")
	for _, table := range []string{"authors", "posts"} {
		t.Run(table, func(t *testing.T) {
			work := t.TempDir()
			cmd := exec.Command("sh", "-ec", script)
			cmd.Dir = work
			cmd.Env = append(os.Environ(), "REPO="+filepath.Join(dir, "repo"), "KEY="+filepath.Join(dir, "key.txt"), "TABLE="+table)
			outb, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("worked example failed: %v\n%s", err, outb)
			}
			got := tableRows(t, filepath.Join(work, "restored.sqlite"), table)
			sum := sha256.Sum256([]byte(strings.Join(got, "\n")))
			if w := want.Tables[table]; len(got) != w.Rows || hex.EncodeToString(sum[:]) != w.SHA256 {
				t.Errorf("by-hand restore of %s: %d rows %x, want %+v\n%s", table, len(got), sum, w, outb)
			}
		})
	}
}

// fencedAfter returns the first ```sh block after the heading.
func fencedAfter(t *testing.T, doc, heading string) string {
	t.Helper()
	i := strings.Index(doc, heading)
	if i < 0 {
		t.Fatalf("docs/FORMAT.md has no %q", heading)
	}
	rest := doc[i:]
	j := strings.Index(rest, "```sh\n")
	if j < 0 {
		t.Fatalf("no ```sh block after %q", heading)
	}
	rest = rest[j+len("```sh\n"):]
	k := strings.Index(rest, "```")
	if k < 0 {
		t.Fatal("unterminated code block")
	}
	return rest[:k]
}

// A format 1 repository is read-only for this build until 'migrate' upgrades it in place: afterwards
// its old snapshot authenticates (by the hash migrate recorded), a new one carries a MAC, and a
// format 1 manifest that appears later — or an old one edited — does not authenticate.
func TestMigrateV1(t *testing.T) {
	if *updateCompat {
		t.Skip("regenerating")
	}
	ctx := context.Background()
	dir := copyCompat(t)
	want := loadExpect(t, dir)
	st, err := local.New(filepath.Join(dir, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := keys.ReadIdentityFile(filepath.Join(dir, "key.txt"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.OpenWithIdentities(ctx, st, ids, repo.AuthOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.RequireWritable("backup"); !errors.Is(err, repo.ErrLegacy) {
		t.Fatalf("format 1 is writable: %v", err)
	}
	if _, err := (&engine.Engine{Repo: r}).Prune(ctx, engine.PruneOptions{Policies: retention.Policies{Default: retention.Policy{Last: 1}}}); !errors.Is(err, repo.ErrLegacy) {
		t.Fatalf("prune in a format 1 repository: %v", err)
	}
	plan, err := r.Migrate(ctx, time.Now(), true)
	if err != nil || len(plan.Vouched) != 1 {
		t.Fatalf("dry run: %+v, %v", plan, err)
	}
	if c, _ := repo.Open(ctx, st); c.Config.Format != 1 {
		t.Fatalf("dry run changed config.json")
	}
	res, err := r.Migrate(ctx, time.Now(), false)
	if err != nil || len(res.Vouched) != 1 {
		t.Fatalf("migrate: %+v, %v", res, err)
	}
	if _, err := st.Stat(ctx, repo.ConfigV1Backup); err != nil {
		t.Errorf("format 1 config not kept: %v", err)
	}
	if _, err := r.Migrate(ctx, time.Now(), false); !errors.Is(err, repo.ErrExists) {
		t.Errorf("second migrate: %v", err)
	}
	r2, err := repo.OpenWithIdentities(ctx, st, ids, repo.AuthOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r2.Config.Format != repo.FormatVersion || r2.Legacy() {
		t.Fatalf("format after migrate: %d", r2.Config.Format)
	}
	m, err := r2.FindSnapshot(ctx, "latest", "d1")
	if err != nil || m.ID != want.Snapshot || m.Auth != manifest.AuthOK {
		t.Fatalf("old snapshot after migrate: %+v, %v", m, err)
	}
	if _, err := (&engine.Engine{Repo: r2}).Verify(ctx, m, engine.VerifyOptions{ReadData: true, Identities: ids}); err != nil {
		t.Errorf("read-data verify after migrate: %v", err)
	}
	// A bucket writer drops in a format 1 manifest (no MAC) after the migration: refused.
	raw, err := os.ReadFile(filepath.Join(dir, "repo", filepath.FromSlash(res.Vouched[0].Key)))
	if err != nil {
		t.Fatal(err)
	}
	forged := strings.Replace(string(raw), m.ID, "ffff00000000ffff", 1)
	fkey := manifest.Key(m.Time, "ffff00000000ffff")
	if err := st.Put(ctx, fkey, strings.NewReader(forged), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r2.FindSnapshot(ctx, "ffff00000000ffff", ""); !errors.Is(err, repo.ErrUnauthenticated) {
		t.Errorf("format 1 manifest added after migrate: %v", err)
	}
	// And the vouched one, edited, no longer authenticates.
	edited := strings.Replace(string(raw), `"components"`, `"host": "evil", "components"`, 1)
	if err := st.Put(ctx, res.Vouched[0].Key, strings.NewReader(edited), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r2.FindSnapshot(ctx, m.ID, ""); !errors.Is(err, repo.ErrUnauthenticated) {
		t.Errorf("edited vouched manifest: %v", err)
	}
}
