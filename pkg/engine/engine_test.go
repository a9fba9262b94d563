package engine_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/internal/cftest"
	"github.com/cfbackup/cfbackup/internal/seed"
	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/keys"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/source/d1"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/faulty"
	"github.com/cfbackup/cfbackup/pkg/store/local"
)

// fixture is a seeded emulated account, a local repository and keys.
type fixture struct {
	srv    *cftest.Server
	cf     *cloudflare.Client
	repo   *repo.Repo
	eng    *engine.Engine
	ids    []age.Identity
	dbUUID string
	seedDB string
	base   string
}

func newFixture(t *testing.T, users int) *fixture {
	t.Helper()
	return newFixtureWith(t, users, cftest.Options{}, nil)
}

// newFixtureWith lets a test set the emulator's options and the client's HTTP transport.
func newFixtureWith(t *testing.T, users int, copts cftest.Options, rt http.RoundTripper) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	seedPath := filepath.Join(dir, "seed.sqlite")
	if _, err := seed.Generate(ctx, seedPath, seed.Options{Users: users, Seed: 7}); err != nil {
		t.Fatal(err)
	}
	srv, base := cftest.Start(t, copts) // D1-like: the export rounds integers beyond 2^53
	uuid, err := srv.AddDatabase("app", seedPath)
	if err != nil {
		t.Fatal(err)
	}
	var hc *http.Client
	if rt != nil {
		hc = &http.Client{Transport: rt}
	}
	cf, err := cloudflare.New(cloudflare.Config{AccountID: srv.AccountID(), APIToken: "test-token", BaseURL: base + "/client/v4", PollInterval: time.Millisecond, HTTPClient: hc})
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
	r, _, err := repo.Init(ctx, st, repo.InitOptions{Recipients: []string{rcp}, SegmentSize: 16 << 10, ChunkSize: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{srv: srv, cf: cf, repo: r, eng: &engine.Engine{Repo: r}, ids: ids, dbUUID: uuid, seedDB: seedPath, base: base + "/client/v4"}
}

func (f *fixture) backup(t *testing.T, ctx context.Context) (*manifest.Manifest, error) {
	t.Helper()
	o := engine.BackupOptions{Labels: map[string]string{"ticket": "OPS-1"}}
	plan, err := d1.PlanBackup(ctx, f.cf, []string{"app"})
	if err != nil {
		return nil, err
	}
	return f.eng.Backup(ctx, plan, o)
}

// tableRows reads every row of a table as strings (quote()d, so types and exact values compare).
func tableRows(t *testing.T, path, table string) []string {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cols, err := db.Query(fmt.Sprintf(`SELECT name FROM pragma_table_info('%s')`, table))
	if err != nil {
		t.Fatal(err)
	}
	var q []string
	for cols.Next() {
		var c string
		cols.Scan(&c)
		q = append(q, fmt.Sprintf(`quote("%s")`, c))
	}
	cols.Close()
	rows, err := db.Query(fmt.Sprintf(`SELECT %s FROM "%s" ORDER BY rowid`, strings.Join(q, "||','||"), table))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func scalar(t *testing.T, path, q string) string {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var s string
	if err := db.QueryRow(q).Scan(&s); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return s
}

var seedTables = []string{"users", "groups", "user_groups", "oidc_clients", "auth_events"}

func TestBackupVerifyRestoreToFile(t *testing.T) {
	f := newFixture(t, 60)
	ctx := context.Background()
	m, err := f.backup(t, ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Sources) != 1 || m.Sources[0].Name != "app" || m.Sources[0].AtBookmark == "" || m.Sources[0].Tables != len(seedTables) {
		t.Fatalf("manifest sources = %+v", m.Sources)
	}
	if len(m.Segments) < 2 {
		t.Fatalf("expected the 16 KiB segment limit to roll over, got %d segment(s)", len(m.Segments))
	}
	// The plaintext manifest must not leak table names or row content (invariant 3).
	raw := readKey(t, f.repo.Store, manifest.Key(m.Time, m.ID))
	for _, leak := range []string{"auth_events", "oidc_clients", "password_hash", "users_fts"} {
		if strings.Contains(raw, leak) {
			t.Errorf("plaintext manifest contains %q", leak)
		}
	}

	if _, err := f.eng.Verify(ctx, m, engine.VerifyOptions{}); err != nil {
		t.Fatalf("quick verify: %v", err)
	}
	res, err := f.eng.Verify(ctx, m, engine.VerifyOptions{ReadData: true, Identities: f.ids})
	if err != nil {
		t.Fatalf("read-data verify: %v", err)
	}
	if res.Items != int(m.Items) {
		t.Fatalf("verified %d items, manifest has %d", res.Items, m.Items)
	}

	cat, err := engine.OpenCatalogue(m, f.ids)
	if err != nil {
		t.Fatal(err)
	}
	sel, err := d1.Select(cat, f.dbUUID, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "restored.sqlite")
	fr, err := d1.RestoreToFile(ctx, f.eng.Opener(m, f.ids), sel, out)
	if err != nil {
		t.Fatal(err)
	}
	for _, tbl := range seedTables {
		want, got := tableRows(t, f.seedDB, tbl), tableRows(t, out, tbl)
		if !reflect.DeepEqual(want, got) {
			t.Errorf("table %s differs after restore: %d rows vs %d", tbl, len(want), len(got))
		}
		if fr.Tables[tbl] != int64(len(want)) {
			t.Errorf("restore reported %d rows for %s, want %d", fr.Tables[tbl], tbl, len(want))
		}
	}
	// Index, view, trigger and the rebuilt FTS5 table came back and work.
	for _, q := range []string{
		`SELECT count(*) FROM sqlite_master WHERE type='index' AND name='idx_auth_events_user_at'`,
		`SELECT count(*) FROM sqlite_master WHERE type='trigger' AND name='users_touch'`,
		`SELECT count(*) FROM active_users`,
		`SELECT count(*) FROM users_fts WHERE users_fts MATCH 'example'`,
	} {
		if a, b := scalar(t, f.seedDB, q), scalar(t, out, q); a != b {
			t.Errorf("%s: seed %s, restored %s", q, a, b)
		}
	}
	if scalar(t, out, `SELECT count(*) FROM users_fts WHERE users_fts MATCH 'example'`) == "0" {
		t.Errorf("FTS index is empty after restore")
	}

	// A second restore to the same path is refused and leaves the first file alone.
	if _, err := d1.RestoreToFile(ctx, f.eng.Opener(m, f.ids), sel, out); !errors.Is(err, d1.ErrTargetNotEmpty) {
		t.Fatalf("restore over existing file: %v", err)
	}

	// One table alone.
	one, err := d1.Select(cat, f.dbUUID, []string{"groups"})
	if err != nil {
		t.Fatal(err)
	}
	out2 := filepath.Join(t.TempDir(), "groups.sqlite")
	if _, err := d1.RestoreToFile(ctx, f.eng.Opener(m, f.ids), one, out2); err != nil {
		t.Fatal(err)
	}
	if got := scalar(t, out2, `SELECT count(*) FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'`); got != "1" {
		t.Errorf("single-table restore created %s tables", got)
	}
	if _, err := d1.Select(cat, f.dbUUID, []string{"nope"}); !errors.Is(err, d1.ErrNotInSnapshot) {
		t.Errorf("unknown table: %v", err)
	}
}

func TestRestoreToNewD1Database(t *testing.T) {
	f := newFixture(t, 30)
	ctx := context.Background()
	m, err := f.backup(t, ctx)
	if err != nil {
		t.Fatal(err)
	}
	cat, err := engine.OpenCatalogue(m, f.ids)
	if err != nil {
		t.Fatal(err)
	}
	sel, _ := d1.Select(cat, f.dbUUID, nil)
	target, err := f.cf.CreateDatabase(ctx, "app-restored")
	if err != nil {
		t.Fatal(err)
	}
	// A small import limit forces several import files.
	res, err := d1.RestoreToDatabase(ctx, f.cf, f.eng.Opener(m, f.ids), sel, target, d1.DatabaseOptions{ImportLimit: 200 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if res.Files < 2 {
		t.Errorf("expected the dump to be split into several import files, got %d", res.Files)
	}
	path := f.srv.DatabasePath(target.UUID)
	for _, tbl := range seedTables {
		if want, got := tableRows(t, f.seedDB, tbl), tableRows(t, path, tbl); !reflect.DeepEqual(want, got) {
			t.Errorf("table %s differs in the restored D1 database: %d vs %d rows", tbl, len(want), len(got))
		}
	}
	// Restoring again into the now non-empty database is refused, nothing changes.
	if _, err := d1.RestoreToDatabase(ctx, f.cf, f.eng.Opener(m, f.ids), sel, target, d1.DatabaseOptions{}); !errors.Is(err, d1.ErrTargetNotEmpty) {
		t.Fatalf("restore into non-empty database: %v", err)
	}
}

func TestRestoreInPlaceUndoableWithTimeTravel(t *testing.T) {
	f := newFixture(t, 20)
	ctx := context.Background()
	m, err := f.backup(t, ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Damage the live database after the backup.
	if _, _, err := f.cf.Raw(ctx, f.dbUUID, "DELETE FROM auth_events"); err != nil {
		t.Fatal(err)
	}
	before, err := f.cf.CurrentBookmark(ctx, f.dbUUID)
	if err != nil {
		t.Fatal(err)
	}
	cat, _ := engine.OpenCatalogue(m, f.ids)
	sel, _ := d1.Select(cat, f.dbUUID, nil)
	db, _ := f.cf.GetDatabase(ctx, f.dbUUID)
	if _, err := d1.RestoreToDatabase(ctx, f.cf, f.eng.Opener(m, f.ids), sel, db, d1.DatabaseOptions{InPlace: true}); err != nil {
		t.Fatal(err)
	}
	path := f.srv.DatabasePath(f.dbUUID)
	if want, got := tableRows(t, f.seedDB, "auth_events"), tableRows(t, path, "auth_events"); !reflect.DeepEqual(want, got) {
		t.Fatalf("in-place restore did not bring auth_events back: %d vs %d rows", len(want), len(got))
	}
	// The recorded bookmark undoes the restore.
	if _, err := f.cf.RestoreBookmark(ctx, f.dbUUID, before); err != nil {
		t.Fatal(err)
	}
	if got := scalar(t, path, "SELECT count(*) FROM auth_events"); got != "0" {
		t.Fatalf("undo via Time Travel left %s auth_events", got)
	}
}

func TestCorruptionAndWrongKeyAreCaught(t *testing.T) {
	f := newFixture(t, 20)
	ctx := context.Background()
	m, err := f.backup(t, ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Wrong identity.
	other, _, _ := keys.Generate(false)
	oid, err := age.ParseX25519Identity(other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := engine.OpenCatalogue(m, []age.Identity{oid}); !errors.Is(err, engine.ErrKey) {
		t.Fatalf("wrong key: %v", err)
	}
	// Flip one byte in the middle of a segment file.
	seg := m.Segments[0]
	p := filepath.Join(f.repo.Store.Location(), filepath.FromSlash(seg.Key))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = f.eng.Verify(ctx, m, engine.VerifyOptions{})
	if !errors.Is(err, engine.ErrIntegrity) || !strings.Contains(err.Error(), seg.Key) {
		t.Fatalf("quick verify after corruption: %v", err)
	}
	_, err = f.eng.Verify(ctx, m, engine.VerifyOptions{ReadData: true, Identities: f.ids})
	if !errors.Is(err, engine.ErrIntegrity) {
		t.Fatalf("read-data verify after corruption: %v", err)
	}
}

// failingStore fails every segment upload after the first few bytes, like a network cut mid-backup.
type failingStore struct {
	store.Store
	after int64
}

func (s failingStore) Put(ctx context.Context, key string, r io.Reader, o store.PutOptions) error {
	if strings.HasPrefix(key, archive.SegmentPrefix) {
		return s.Store.Put(ctx, key, io.MultiReader(io.LimitReader(r, s.after), errReader{}), o)
	}
	return s.Store.Put(ctx, key, r, o)
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset by peer") }

func TestFailedOrCancelledBackupLeavesNoSnapshot(t *testing.T) {
	f := newFixture(t, 20)
	ctx := context.Background()
	good, err := f.backup(t, ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A storage failure mid-upload.
	broken := &engine.Engine{Repo: &repo.Repo{Store: failingStore{Store: f.repo.Store, after: 10 << 10}, Config: f.repo.Config}}
	o := engine.BackupOptions{}
	plan, err := d1.PlanBackup(ctx, f.cf, []string{"app"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := broken.Backup(ctx, plan, o); err == nil {
		t.Fatal("backup through a failing store succeeded")
	}
	// A cancelled context.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := f.eng.Backup(cctx, plan, o); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled backup: %v", err)
	}
	snaps, bad, err := f.repo.ListSnapshots(ctx)
	if err != nil || len(bad) > 0 {
		t.Fatal(err, bad)
	}
	if len(snaps) != 1 || snaps[0].ID != good.ID {
		t.Fatalf("snapshots after failed backups: %d", len(snaps))
	}
	if _, err := f.eng.Verify(ctx, good, engine.VerifyOptions{ReadData: true, Identities: f.ids}); err != nil {
		t.Fatalf("earlier snapshot damaged: %v", err)
	}
}

func TestRateLimitsAndServerErrorsAreRetried(t *testing.T) {
	f := newFixture(t, 10)
	ctx := context.Background()
	f.srv.InjectFaults(cftest.Faults{Status429: 2, Status5xx: 1, RetryAfter: time.Millisecond})
	if _, err := f.backup(t, ctx); err != nil {
		t.Fatalf("backup with 429/5xx faults: %v", err)
	}
}

func TestUnknownDatabaseAndBadToken(t *testing.T) {
	f := newFixture(t, 5)
	ctx := context.Background()
	_, err := d1.PlanBackup(ctx, f.cf, []string{"nope"})
	if !errors.Is(err, cloudflare.ErrNotFound) || !strings.Contains(err.Error(), "app") {
		t.Fatalf("unknown database: %v", err)
	}
	bad, _ := cloudflare.New(cloudflare.Config{AccountID: f.srv.AccountID(), APIToken: "wrong", BaseURL: f.base, MaxRetries: 1})
	if _, err := d1.PlanBackup(ctx, bad, nil); !errors.Is(err, cloudflare.ErrAuth) {
		t.Fatalf("bad token: %v", err)
	}
}

func readKey(t *testing.T, st store.Store, key string) string {
	t.Helper()
	rc, err := st.Open(context.Background(), key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return string(b)
}

// clockJump advances the emulator's clock by two hours just before the first signed-URL download,
// so the real server finds that URL expired, as a slow start after a long export would.
type clockJump struct {
	offset    *atomic.Int64
	jumped    atomic.Bool
	downloads atomic.Int32
}

func (c *clockJump) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.Contains(r.URL.Path, "/cfemu/signed/") {
		c.downloads.Add(1)
		if c.jumped.CompareAndSwap(false, true) {
			c.offset.Add(int64(2 * time.Hour))
		}
	}
	return http.DefaultTransport.RoundTrip(r)
}

func TestExpiredSignedURLExportsAgain(t *testing.T) {
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	cj := &clockJump{offset: &offset}
	f := newFixtureWith(t, 10, cftest.Options{Now: now}, cj)
	m, err := f.backup(t, context.Background())
	if err != nil {
		t.Fatalf("backup after an expired signed URL: %v", err)
	}
	if got := cj.downloads.Load(); got != 2 {
		t.Fatalf("downloads = %d, want 2 (the expired one, then a fresh export's)", got)
	}
	if _, err := f.eng.Verify(context.Background(), m, engine.VerifyOptions{ReadData: true, Identities: f.ids}); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyRecordsResultWithoutNames(t *testing.T) {
	f := newFixture(t, 5)
	ctx := context.Background()
	m, err := f.backup(t, ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.eng.Verify(ctx, m, engine.VerifyOptions{ReadData: true, Identities: f.ids, Record: true}); err != nil {
		t.Fatal(err)
	}
	var keys []string
	f.repo.Store.List(ctx, engine.VerifyPrefix, func(oi store.ObjectInfo) error { keys = append(keys, oi.Key); return nil })
	if len(keys) != 1 || !strings.HasSuffix(keys[0], "-"+m.ID+".json") {
		t.Fatalf("verify records: %v", keys)
	}
	rec := readKey(t, f.repo.Store, keys[0])
	if !strings.Contains(rec, `"ok": true`) || !strings.Contains(rec, `"mode": "read-data"`) || strings.Contains(rec, "users") {
		t.Fatalf("record = %s", rec)
	}
}

// A child table created before its parent is dumped first by D1; replaying that order into a database
// that enforces foreign keys fails with "no such table". Restore must put parents first.
func TestRestoreOrdersParentsBeforeChildren(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	script := filepath.Join(dir, "app.sql")
	os.WriteFile(script, []byte(`
CREATE TABLE orders(id INTEGER PRIMARY KEY, customer INTEGER NOT NULL REFERENCES customers(id));
CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT);
INSERT INTO customers VALUES(1,'ada'),(2,'bob');
INSERT INTO orders VALUES(10,1),(11,2),(12,2);
`), 0o644)
	f := newFixture(t, 3)
	uuid, err := f.srv.AddDatabase("shop", script)
	if err != nil {
		t.Fatal(err)
	}
	o := engine.BackupOptions{}
	plan, err := d1.PlanBackup(ctx, f.cf, []string{"shop"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := f.eng.Backup(ctx, plan, o)
	if err != nil {
		t.Fatal(err)
	}
	cat, _ := engine.OpenCatalogue(m, f.ids)
	sel, err := d1.Select(cat, uuid, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sel.Items[0].Table != "customers" {
		t.Fatalf("replay starts with %s, want the parent table customers", sel.Items[0].Table)
	}
	target, err := f.cf.CreateDatabase(ctx, "shop-restored")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d1.RestoreToDatabase(ctx, f.cf, f.eng.Opener(m, f.ids), sel, target, d1.DatabaseOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := scalar(t, f.srv.DatabasePath(target.UUID), "SELECT group_concat(id||':'||customer) FROM orders"); got != "10:1,11:2,12:2" {
		t.Fatalf("orders = %s", got)
	}
}

// breakFirstDownload cuts the first export download after k bytes, as a dropped connection would,
// so the backup exports again and the first attempt's chunks stay in the segment unreferenced.
type breakFirstDownload struct {
	k    int64
	done atomic.Bool
}

func (b *breakFirstDownload) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil && strings.Contains(r.URL.Path, "/cfemu/signed/") && b.done.CompareAndSwap(false, true) {
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(io.LimitReader(resp.Body, b.k), errReader{}), resp.Body}
	}
	return resp, err
}

func TestVerifyReadsEachSegmentOnceAndSeesPastOrphans(t *testing.T) {
	ctx := context.Background()
	f := newFixtureWith(t, 40, cftest.Options{}, &breakFirstDownload{k: 300 << 10})
	m, err := f.backup(t, ctx)
	if err != nil {
		t.Fatalf("backup after a broken download: %v", err)
	}
	counted := faulty.New(f.repo.Store)
	e := &engine.Engine{Repo: &repo.Repo{Store: counted, Config: f.repo.Config}}
	res, err := e.Verify(ctx, m, engine.VerifyOptions{ReadData: true, Identities: f.ids})
	if err != nil {
		t.Fatalf("verify with orphaned chunks of the first attempt in the segments: %v", err)
	}
	if res.Items != int(m.Items) {
		t.Fatalf("checked %d items of %d", res.Items, m.Items)
	}
	// Every segment is read once in full; only items the fast path could not confirm (those with an
	// orphaned namesake) are read again, by range.
	if got, all := counted.TotalBytesRead(), m.StoredSize; got < all || got > all+all/2 {
		t.Fatalf("verify read %d bytes for %d stored", got, all)
	}

	// A clean snapshot is read exactly once.
	clean, err := f.backup(t, ctx)
	if err != nil {
		t.Fatal(err)
	}
	counted.Reset()
	before := counted.TotalBytesRead()
	if _, err := e.Verify(ctx, clean, engine.VerifyOptions{ReadData: true, Identities: f.ids}); err != nil {
		t.Fatal(err)
	}
	// The segments once, and the catalogue objects once (checked by the pass that reads them).
	if got, want := counted.TotalBytesRead()-before, clean.StoredSize+catSize(clean); got != want {
		t.Fatalf("verify --read-data read %d bytes, want exactly the %d stored", got, want)
	}
}

// TestVerifyRecordSaysWhatFailed: a verify/ record tells damage (integrity) from a check that could not
// run (error): an auditor must not read a network failure as a damaged snapshot, nor the reverse.
func TestVerifyRecordSaysWhatFailed(t *testing.T) {
	f := newFixture(t, 5)
	ctx := context.Background()
	m, err := f.backup(t, ctx)
	if err != nil {
		t.Fatal(err)
	}
	inner := f.eng.Repo.Store
	fst := faulty.New(inner)
	f.eng.Repo.Store = fst
	fst.FailOpen(fst.Calls(faulty.OpOpen)+1, errors.New("connection reset by peer"))
	res, err := f.eng.Verify(ctx, m, engine.VerifyOptions{Record: true})
	if err == nil || res.FailureKind != engine.FailureError || res.Failures[engine.FailureError] != 1 {
		t.Fatalf("verify with a failing read: %v, %+v", err, res)
	}
	f.eng.Repo.Store = inner
	if err := inner.Delete(ctx, m.Segments[0].Key); err != nil {
		t.Fatal(err)
	}
	res, err = f.eng.Verify(ctx, m, engine.VerifyOptions{Record: true})
	if !errors.Is(err, engine.ErrIntegrity) || res.FailureKind != engine.FailureIntegrity {
		t.Fatalf("verify with a missing segment: %v, %+v", err, res)
	}
	var recs []string
	inner.List(ctx, engine.VerifyPrefix, func(oi store.ObjectInfo) error { recs = append(recs, readKey(t, inner, oi.Key)); return nil })
	if len(recs) != 2 || !strings.Contains(recs[0], `"failure_kind": "error"`) || !strings.Contains(recs[1], `"failure_kind": "integrity"`) {
		t.Fatalf("records:\n%s", strings.Join(recs, "\n"))
	}
}

// TestTestRestoreRecordSaysAnAssertionFailed: a failed user assertion is recorded as an assertion
// failure, not as items failing their SHA-256 check.
func TestTestRestoreRecordSaysAnAssertionFailed(t *testing.T) {
	f := newFixture(t, 5)
	ctx := context.Background()
	m, err := f.backup(t, ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.eng.TestRestore(ctx, m, engine.TestRestoreOptions{Identities: f.ids, Record: true,
		Assertions: []engine.Assertion{{SQL: "SELECT count(*) FROM users", Expect: ">= 1000"}}})
	if err == nil || res.OK || res.Sources[0].ProblemKinds[0] != engine.FailureAssertion {
		t.Fatalf("test-restore: %v %+v", err, res)
	}
	var rec string
	f.repo.Store.List(ctx, engine.VerifyPrefix, func(oi store.ObjectInfo) error { rec = readKey(t, f.repo.Store, oi.Key); return nil })
	if !strings.Contains(rec, `"failure_kind": "assertion"`) || !strings.Contains(rec, `"d1: 1 assertion"`) || strings.Contains(rec, "SHA-256") || strings.Contains(rec, "users") {
		t.Fatalf("record = %s", rec)
	}
}
