package cftest_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudflare/cloudflare-go/v7/d1"
	"github.com/cloudflare/cloudflare-go/v7/option"

	"github.com/cfbackup/cfbackup/internal/cftest"
	"github.com/cfbackup/cfbackup/internal/seed"
)

const acct = "acc0123456789abcdef0123456789abcd"

// clock is a settable fake clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func client(base, token string, extra ...option.RequestOption) *d1.DatabaseService {
	opts := append([]option.RequestOption{option.WithBaseURL(base + "/client/v4/"), option.WithAPIToken(token), option.WithMaxRetries(0)}, extra...)
	return d1.NewDatabaseService(opts...)
}

func start(t *testing.T, o cftest.Options) (*cftest.Server, string, *d1.DatabaseService, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	o.AccountID, o.Now = acct, c.Now
	s, base := cftest.Start(t, o)
	return s, base, client(base, "test-token"), c
}

func seeded(t *testing.T, s *cftest.Server, users int) (string, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "seed.sqlite")
	if _, err := seed.Generate(context.Background(), p, seed.Options{Users: users, Seed: 42}); err != nil {
		t.Fatal(err)
	}
	id, err := s.AddDatabase("oidc", p)
	if err != nil {
		t.Fatal(err)
	}
	return id, p
}

var realTables = []string{"users", "groups", "user_groups", "oidc_clients", "auth_events", "sqlite_sequence"}

func export(t testing.TB, c *d1.DatabaseService, id string, dump d1.DatabaseExportParamsDumpOptions) (*d1.DatabaseExportResponse, []byte, int) {
	t.Helper()
	ctx := context.Background()
	p := d1.DatabaseExportParams{}
	p.AccountID.Value, p.AccountID.Present = acct, true
	p.OutputFormat.Value, p.OutputFormat.Present = d1.DatabaseExportParamsOutputFormatPolling, true
	p.DumpOptions.Value, p.DumpOptions.Present = dump, true
	polls := 0
	for {
		r, err := c.Export(ctx, id, p)
		if err != nil {
			t.Fatalf("export: %v", err)
		}
		switch r.Status {
		case d1.DatabaseExportResponseStatusComplete:
			resp, err := http.Get(r.Result.SignedURL) // plain GET, no token
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 {
				t.Fatalf("signed GET: %d %s", resp.StatusCode, b)
			}
			return r, b, polls
		case d1.DatabaseExportResponseStatusError:
			return r, nil, polls
		}
		polls++
		p.CurrentBookmark.Value, p.CurrentBookmark.Present = r.AtBookmark, true
	}
}

func tables(names ...string) d1.DatabaseExportParamsDumpOptions {
	var o d1.DatabaseExportParamsDumpOptions
	o.Tables.Value, o.Tables.Present = names, true
	return o
}

// sqliteRows prints a table's rows with the real sqlite3 CLI in quote mode.
func sqliteRows(t *testing.T, db, table string) string {
	t.Helper()
	out, err := exec.Command("sqlite3", "-cmd", ".mode quote", db, `SELECT * FROM "`+table+`" ORDER BY rowid`).CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3 %s: %v %s", table, err, out)
	}
	return string(out)
}

func loadDump(t *testing.T, dump []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "restored.sqlite")
	cmd := exec.Command("sqlite3", p)
	cmd.Stdin = bytes.NewReader(dump)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sqlite3 load: %v %s", err, out)
	}
	return p
}

func TestListGetCreateDelete(t *testing.T) {
	s, _, c, _ := start(t, cftest.Options{})
	ctx := context.Background()
	var ids []string
	for _, n := range []string{"a", "b", "c"} {
		var p d1.DatabaseNewParams
		p.AccountID.Value, p.AccountID.Present = acct, true
		p.Name.Value, p.Name.Present = n, true
		r, err := c.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if r.Name != n || r.Version != "production" || r.UUID == "" {
			t.Fatalf("create: %+v", r)
		}
		ids = append(ids, r.UUID)
	}
	var dup d1.DatabaseNewParams
	dup.AccountID.Value, dup.AccountID.Present = acct, true
	dup.Name.Value, dup.Name.Present = "a", true
	if _, err := c.New(ctx, dup); err == nil {
		t.Fatal("duplicate name accepted")
	}
	var lp d1.DatabaseListParams
	lp.AccountID.Value, lp.AccountID.Present = acct, true
	lp.PerPage.Value, lp.PerPage.Present = 2, true
	pager := c.ListAutoPaging(ctx, lp)
	var seen []string
	for pager.Next() {
		seen = append(seen, pager.Current().Name)
	}
	if err := pager.Err(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(seen, ",") != "a,b,c" {
		t.Fatalf("list across pages = %v", seen)
	}
	if _, err := s.AddDatabase("withdata", writeSQL(t, "CREATE TABLE t(x); INSERT INTO t VALUES(1),(2);")); err != nil {
		t.Fatal(err)
	}
	lp.Name.Value, lp.Name.Present = "withdata", true
	page, err := c.List(ctx, lp)
	if err != nil || len(page.Result) != 1 {
		t.Fatalf("list by name: %v %v", page, err)
	}
	var gp d1.DatabaseGetParams
	gp.AccountID.Value, gp.AccountID.Present = acct, true
	got, err := c.Get(ctx, page.Result[0].UUID, gp)
	if err != nil {
		t.Fatal(err)
	}
	if got.NumTables != 1 || got.FileSize <= 0 {
		t.Fatalf("get: tables=%v size=%v", got.NumTables, got.FileSize)
	}
	var dp d1.DatabaseDeleteParams
	dp.AccountID.Value, dp.AccountID.Present = acct, true
	if _, err := c.Delete(ctx, ids[0], dp); err != nil {
		t.Fatal(err)
	}
	_, err = c.Get(ctx, ids[0], gp)
	var apiErr interface{ Error() string }
	if err == nil || !errors.As(err, &apiErr) || !strings.Contains(err.Error(), "404") {
		t.Fatalf("get deleted: %v", err)
	}
	if s.DatabasePath(ids[0]) != "" {
		t.Fatal("deleted database still has a path")
	}
}

func writeSQL(t *testing.T, sql string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "x.sql")
	if err := os.WriteFile(p, []byte(sql), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAuthAndAccount(t *testing.T) {
	s, base, _, _ := start(t, cftest.Options{})
	id, _ := s.CreateDatabase("x")
	for _, tc := range []struct{ name, token, acct string }{
		{"wrong token", "nope", acct}, {"no token", "", acct}, {"unknown account", "test-token", "ffff"},
	} {
		req, _ := http.NewRequest("GET", base+"/client/v4/accounts/"+tc.acct+"/d1/database/"+id, nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var env struct {
			Success bool
			Errors  []struct {
				Code    int
				Message string
			}
		}
		_ = json.NewDecoder(resp.Body).Decode(&env)
		resp.Body.Close()
		if resp.StatusCode != 403 || env.Success || len(env.Errors) != 1 {
			t.Fatalf("%s: status %d env %+v", tc.name, resp.StatusCode, env)
		}
		if tc.token != "test-token" && (env.Errors[0].Code != 10000 || env.Errors[0].Message != "Authentication error") {
			t.Fatalf("%s: %+v", tc.name, env.Errors)
		}
	}
	var gp d1.DatabaseGetParams
	gp.AccountID.Value, gp.AccountID.Present = acct, true
	if _, err := client(base, "bad").Get(context.Background(), id, gp); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("SDK with bad token: %v", err)
	}
}

func TestExportRoundTripThroughSQLite3(t *testing.T) {
	s, _, c, _ := start(t, cftest.Options{ExportPolls: 3, ExactIntegers: true})
	id, src := seeded(t, s, 60)
	r, dump, polls := export(t, c, id, tables(realTables...))
	if r.Status != d1.DatabaseExportResponseStatusComplete || polls != 3 {
		t.Fatalf("status %s after %d polls", r.Status, polls)
	}
	if !bytes.HasPrefix(dump, []byte("PRAGMA defer_foreign_keys=TRUE;\n")) || bytes.HasSuffix(dump, []byte("\n")) {
		t.Fatalf("dump framing wrong: %q … %q", dump[:40], dump[len(dump)-20:])
	}
	for _, want := range []string{`INSERT INTO "users" ("id","email","password_hash","profile","external_id","avatar","created_at","updated_at") VALUES(`,
		"X'", "replace(", "char(13)", "DELETE FROM sqlite_sequence;"} {
		if !bytes.Contains(dump, []byte(want)) {
			t.Errorf("dump lacks %q", want)
		}
	}
	restored := loadDump(t, dump)
	for _, tb := range realTables[:5] {
		if a, b := sqliteRows(t, src, tb), sqliteRows(t, restored, tb); a != b {
			t.Fatalf("table %s differs after round trip (%d vs %d bytes)", tb, len(a), len(b))
		}
	}
}

func TestExportIntegersLikeD1(t *testing.T) {
	s, _, c, _ := start(t, cftest.Options{})
	id, err := s.AddDatabase("n", writeSQL(t, `CREATE TABLE n(i INTEGER, r REAL, t TEXT);
INSERT INTO n VALUES (9007199254740993, 3.0, 'it''s'), (12345678901234567890e0, 0.1, NULL), (-7, 1e-7, 'a;b'), (1e21, 123.456, x'00ff');`))
	if err != nil {
		t.Fatal(err)
	}
	_, dump, _ := export(t, c, id, d1.DatabaseExportParamsDumpOptions{})
	want := `PRAGMA defer_foreign_keys=TRUE;
CREATE TABLE n(i INTEGER, r REAL, t TEXT);
INSERT INTO "n" ("i","r","t") VALUES(9007199254740992,3,'it''s');
INSERT INTO "n" ("i","r","t") VALUES(12345678901234567000,0.1,NULL);
INSERT INTO "n" ("i","r","t") VALUES(-7,1e-7,'a;b');
INSERT INTO "n" ("i","r","t") VALUES(1e+21,123.456,X'00ff');`
	if string(dump) != want {
		t.Fatalf("dump:\n%s\nwant:\n%s", dump, want)
	}
}

func TestExportRefusesVirtualTables(t *testing.T) {
	s, _, c, _ := start(t, cftest.Options{})
	id, _ := seeded(t, s, 5)
	r, dump, _ := export(t, c, id, d1.DatabaseExportParamsDumpOptions{})
	if r.Status != d1.DatabaseExportResponseStatusError || dump != nil ||
		r.Error != "D1 Export error: cannot export databases with Virtual Tables (fts5)" {
		t.Fatalf("export with fts5: status=%s error=%q", r.Status, r.Error)
	}
	r, _, _ = export(t, c, id, tables("users", "users_fts"))
	if r.Status != d1.DatabaseExportResponseStatusError {
		t.Fatalf("explicit virtual table: %s", r.Status)
	}
	var o d1.DatabaseExportParamsDumpOptions
	o.Tables.Value, o.Tables.Present = []string{"groups"}, true
	o.NoSchema.Value, o.NoSchema.Present = true, true
	r, dump, _ = export(t, c, id, o)
	if r.Status != d1.DatabaseExportResponseStatusComplete || bytes.Contains(dump, []byte("CREATE")) || !bytes.Contains(dump, []byte(`INSERT INTO "groups"`)) {
		t.Fatalf("no_schema groups: %s %q", r.Status, dump)
	}
}

func TestSignedURLExpires(t *testing.T) {
	s, _, c, clk := start(t, cftest.Options{SignedURLTTL: 30 * time.Second})
	id, _ := s.AddDatabase("x", writeSQL(t, "CREATE TABLE t(x); INSERT INTO t VALUES(1);"))
	r, _, _ := export(t, c, id, d1.DatabaseExportParamsDumpOptions{})
	clk.Add(31 * time.Second)
	resp, err := http.Get(r.Result.SignedURL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || !bytes.Contains(b, []byte("<Code>AccessDenied</Code><Message>Request has expired</Message>")) {
		t.Fatalf("expired URL: %d %s", resp.StatusCode, b)
	}
	resp, _ = http.Get(strings.Replace(r.Result.SignedURL, "X-Amz-Signature=", "X-Amz-Signature=0", 1))
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("tampered signature: %d", resp.StatusCode)
	}
}

func importSQL(t *testing.T, c *d1.DatabaseService, id string, sql []byte) *d1.DatabaseImportResponse {
	t.Helper()
	ctx := context.Background()
	sum := md5.Sum(sql)
	etag := hex.EncodeToString(sum[:])
	var p d1.DatabaseImportParams
	p.AccountID.Value, p.AccountID.Present = acct, true
	var ini d1.DatabaseImportParamsBodyInit
	ini.Action.Value, ini.Action.Present = d1.DatabaseImportParamsBodyInitActionInit, true
	ini.Etag.Value, ini.Etag.Present = etag, true
	p.Body = ini
	r, err := c.Import(ctx, id, p)
	if err != nil {
		t.Fatal(err)
	}
	if r.UploadURL != "" {
		req, _ := http.NewRequest("PUT", r.UploadURL, bytes.NewReader(sql))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || strings.Trim(resp.Header.Get("ETag"), `"`) != etag {
			t.Fatalf("upload: %d etag %q", resp.StatusCode, resp.Header.Get("ETag"))
		}
		var ing d1.DatabaseImportParamsBodyIngest
		ing.Action.Value, ing.Action.Present = d1.DatabaseImportParamsBodyIngestActionIngest, true
		ing.Etag.Value, ing.Etag.Present = etag, true
		ing.Filename.Value, ing.Filename.Present = r.Filename, true
		p.Body = ing
		if r, err = c.Import(ctx, id, p); err != nil {
			t.Fatal(err)
		}
	}
	for r.Status != d1.DatabaseImportResponseStatusComplete && r.Status != d1.DatabaseImportResponseStatusError {
		var poll d1.DatabaseImportParamsBodyPoll
		poll.Action.Value, poll.Action.Present = d1.DatabaseImportParamsBodyPollActionPoll, true
		poll.CurrentBookmark.Value, poll.CurrentBookmark.Present = r.AtBookmark, true
		p.Body = poll
		if r, err = c.Import(ctx, id, p); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func TestImportRoundTrip(t *testing.T) {
	s, _, c, _ := start(t, cftest.Options{ExactIntegers: true})
	// small seed: no ~1 MB row, so every statement fits D1's limit
	p := filepath.Join(t.TempDir(), "s.sqlite")
	if _, err := seed.Generate(context.Background(), p, seed.Options{Users: 1, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	src, _ := s.AddDatabase("src", p)
	_, dump, _ := export(t, c, src, tables(realTables...))
	dst, _ := s.CreateDatabase("dst")
	r := importSQL(t, c, dst, dump)
	if r.Status != d1.DatabaseImportResponseStatusComplete || r.Result.NumQueries < 10 || r.Result.FinalBookmark == "" {
		t.Fatalf("import: %s %q %+v", r.Status, r.Error, r.Result)
	}
	for _, tb := range realTables[:5] {
		if a, b := sqliteRows(t, p, tb), sqliteRows(t, s.DatabasePath(dst), tb); a != b {
			t.Fatalf("table %s differs after import", tb)
		}
	}
	// Same etag again: init answers poll-style without upload_url.
	if r2 := importSQL(t, c, dst, dump); r2.Status != d1.DatabaseImportResponseStatusError {
		t.Fatalf("re-import of same rows should fail on UNIQUE, got %s", r2.Status)
	}
}

func TestImportFailureRollsBack(t *testing.T) {
	s, _, c, _ := start(t, cftest.Options{})
	id, _ := s.AddDatabase("x", writeSQL(t, "CREATE TABLE t(x PRIMARY KEY); INSERT INTO t VALUES(1);"))
	before := sqliteRows(t, s.DatabasePath(id), "t")
	r := importSQL(t, c, id, []byte("INSERT INTO t VALUES(2);\nCREATE TABLE u(y);\nINSERT INTO t VALUES(1);"))
	if r.Status != d1.DatabaseImportResponseStatusError || !strings.Contains(r.Error, "UNIQUE") {
		t.Fatalf("want UNIQUE error, got %s %q", r.Status, r.Error)
	}
	if after := sqliteRows(t, s.DatabasePath(id), "t"); after != before {
		t.Fatalf("rows changed after failed import: %q", after)
	}
	big := []byte("INSERT INTO t VALUES('" + strings.Repeat("x", 100_001) + "');")
	r = importSQL(t, c, id, big)
	if r.Status != d1.DatabaseImportResponseStatusError || !strings.Contains(r.Error, "100000 bytes") {
		t.Fatalf("oversized statement: %s %q", r.Status, r.Error)
	}
	// deferred foreign keys let children come before parents
	fk := []byte("PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE c(p REFERENCES pa(id));\nCREATE TABLE pa(id INTEGER PRIMARY KEY);\nINSERT INTO c VALUES(5);\nINSERT INTO pa VALUES(5);")
	if r = importSQL(t, c, id, fk); r.Status != d1.DatabaseImportResponseStatusComplete {
		t.Fatalf("deferred FK import: %s %q", r.Status, r.Error)
	}
	// without the pragma the same order violates the foreign key
	nofk := []byte("CREATE TABLE c2(p REFERENCES pa2(id));\nCREATE TABLE pa2(id INTEGER PRIMARY KEY);\nINSERT INTO c2 VALUES(5);\nINSERT INTO pa2 VALUES(5);")
	if r = importSQL(t, c, id, nofk); r.Status != d1.DatabaseImportResponseStatusError || !strings.Contains(r.Error, "FOREIGN KEY") {
		t.Fatalf("FK violation import: %s %q", r.Status, r.Error)
	}
}

func TestUploadChecksAndLimit(t *testing.T) {
	s, _, c, _ := start(t, cftest.Options{ImportLimit: 10})
	id, _ := s.CreateDatabase("x")
	ctx := context.Background()
	body := []byte("SELECT 1;   -- too long")
	sum := md5.Sum(body)
	var p d1.DatabaseImportParams
	p.AccountID.Value, p.AccountID.Present = acct, true
	var ini d1.DatabaseImportParamsBodyInit
	ini.Action.Value, ini.Action.Present = d1.DatabaseImportParamsBodyInitActionInit, true
	ini.Etag.Value, ini.Etag.Present = hex.EncodeToString(sum[:]), true
	p.Body = ini
	r, err := c.Import(ctx, id, p)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("PUT", r.UploadURL, bytes.NewReader(body))
	resp, _ := http.DefaultClient.Do(req)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !bytes.Contains(b, []byte("EntityTooLarge")) {
		t.Fatalf("over limit: %d %s", resp.StatusCode, b)
	}
	req, _ = http.NewRequest("PUT", r.UploadURL, strings.NewReader("SELECT 2;"))
	resp, _ = http.DefaultClient.Do(req)
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !bytes.Contains(b, []byte("BadDigest")) {
		t.Fatalf("wrong md5: %d %s", resp.StatusCode, b)
	}
}

func rawPost(t *testing.T, base, id, path, body string) []byte {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/client/v4/accounts/"+acct+"/d1/database/"+id+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer test-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}

func TestQueryAndRaw(t *testing.T) {
	s, base, c, _ := start(t, cftest.Options{})
	id, _ := s.CreateDatabase("q")
	ctx := context.Background()
	var p d1.DatabaseQueryParams
	p.AccountID.Value, p.AccountID.Present = acct, true
	var one d1.DatabaseQueryParamsBodyD1SingleQuery
	one.Sql.Value, one.Sql.Present = "CREATE TABLE t(a INTEGER, b TEXT, c BLOB); INSERT INTO t VALUES(9007199254740993, 'x;y', x'0102')", true
	p.Body = one
	res, err := c.Query(ctx, id, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Result) != 2 || !res.Result[1].Success || res.Result[1].Meta.Changes != 1 {
		t.Fatalf("batch: %+v", res.Result)
	}
	one.Sql.Value = "SELECT a, b FROM t WHERE b = ?"
	one.Params.Value, one.Params.Present = []string{"x;y"}, true
	p.Body = one
	if res, err = c.Query(ctx, id, p); err != nil || len(res.Result[0].Results) != 1 {
		t.Fatalf("select: %v %+v", err, res)
	}
	// exact int64 in the JSON text
	b := rawPost(t, base, id, "/query", `{"sql":"SELECT a, c FROM t"}`)
	if !bytes.Contains(b, []byte(`{"a":9007199254740993,"c":[1,2]}`)) {
		t.Fatalf("query JSON: %s", b)
	}
	b = rawPost(t, base, id, "/raw", `{"sql":"SELECT a, b FROM t"}`)
	if !bytes.Contains(b, []byte(`"results":{"columns":["a","b"],"rows":[[9007199254740993,"x;y"]]}`)) {
		t.Fatalf("raw JSON: %s", b)
	}
	var rp d1.DatabaseRawParams
	rp.AccountID.Value, rp.AccountID.Present = acct, true
	var rq d1.DatabaseRawParamsBodyD1SingleQuery
	rq.Sql.Value, rq.Sql.Present = "SELECT b FROM t", true
	rp.Body = rq
	raw, err := c.Raw(ctx, id, rp)
	if err != nil || len(raw.Result) != 1 || raw.Result[0].Results.Columns[0] != "b" || raw.Result[0].Results.Rows[0][0] != "x;y" {
		t.Fatalf("SDK raw: %v %+v", err, raw)
	}
	// a failing statement rolls back the whole batch
	b = rawPost(t, base, id, "/query", `{"batch":[{"sql":"INSERT INTO t VALUES(1,'z',NULL)"},{"sql":"SELECT nope FROM t"}]}`)
	if !bytes.Contains(b, []byte(`"success":false`)) {
		t.Fatalf("bad batch: %s", b)
	}
	if got := sqliteRows(t, s.DatabasePath(id), "t"); strings.Count(got, "\n") != 1 {
		t.Fatalf("batch not rolled back: %q", got)
	}
}

func TestFaults(t *testing.T) {
	s, base, _, _ := start(t, cftest.Options{Faults: &cftest.Faults{Status429: 2, RetryAfter: 2 * time.Second}})
	id, _ := s.CreateDatabase("f")
	get := func() *http.Response {
		req, _ := http.NewRequest("GET", base+"/client/v4/accounts/"+acct+"/d1/database/"+id, nil)
		req.Header.Set("Authorization", "Bearer test-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for i := 0; i < 2; i++ {
		if r := get(); r.StatusCode != 429 || r.Header.Get("Retry-After") != "2" {
			t.Fatalf("request %d: %d %q", i, r.StatusCode, r.Header.Get("Retry-After"))
		}
	}
	if r := get(); r.StatusCode != 200 {
		t.Fatalf("after faults: %d", r.StatusCode)
	}
	s.InjectFaults(cftest.Faults{Status5xx: 1})
	if r := get(); r.StatusCode != 500 {
		t.Fatalf("5xx: %d", r.StatusCode)
	}
	// The SDK's own retry (honouring Retry-After) gets through 429s.
	s.InjectFaults(cftest.Faults{Status429: 1, RetryAfter: time.Second})
	sdk := d1.NewDatabaseService(option.WithBaseURL(base+"/client/v4/"), option.WithAPIToken("test-token"), option.WithMaxRetries(2))
	var gp d1.DatabaseGetParams
	gp.AccountID.Value, gp.AccountID.Present = acct, true
	if _, err := sdk.Get(context.Background(), id, gp); err != nil {
		t.Fatalf("SDK retry: %v", err)
	}
	// concurrent requests consume exactly N faults
	s.InjectFaults(cftest.Faults{Status429: 5})
	var wg sync.WaitGroup
	var mu sync.Mutex
	n429 := 0
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if get().StatusCode == 429 {
				mu.Lock()
				n429++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if n429 != 5 {
		t.Fatalf("429s under concurrency = %d, want 5", n429)
	}
}

func TestTimeTravelRestore(t *testing.T) {
	s, base, c, clk := start(t, cftest.Options{Retention: 7 * 24 * time.Hour})
	id, _ := s.AddDatabase("tt", writeSQL(t, "CREATE TABLE t(x); INSERT INTO t VALUES('v1');"))
	ctx := context.Background()
	var bp d1.DatabaseTimeTravelGetBookmarkParams
	bp.AccountID.Value, bp.AccountID.Present = acct, true
	bm1, err := c.TimeTravel.GetBookmark(ctx, id, bp)
	if err != nil {
		t.Fatal(err)
	}
	t1 := clk.Now()
	clk.Add(time.Hour)
	rawPost(t, base, id, "/query", `{"sql":"UPDATE t SET x='v2'"}`)
	bm2, _ := c.TimeTravel.GetBookmark(ctx, id, bp)
	if !(bm2.Bookmark > bm1.Bookmark) {
		t.Fatalf("bookmarks not increasing: %s then %s", bm1.Bookmark, bm2.Bookmark)
	}
	clk.Add(time.Hour)
	rawPost(t, base, id, "/query", `{"sql":"DELETE FROM t"}`)

	// timestamp lookup resolves to the point at or before it
	bp.Timestamp.Value, bp.Timestamp.Present = t1.Add(30*time.Minute), true
	if got, _ := c.TimeTravel.GetBookmark(ctx, id, bp); got.Bookmark != bm1.Bookmark {
		t.Fatalf("bookmark at t1+30m = %s, want %s", got.Bookmark, bm1.Bookmark)
	}
	var rp d1.DatabaseTimeTravelRestoreParams
	rp.AccountID.Value, rp.AccountID.Present = acct, true
	rp.Bookmark.Value, rp.Bookmark.Present = bm2.Bookmark, true
	res, err := c.TimeTravel.Restore(ctx, id, rp)
	if err != nil {
		t.Fatal(err)
	}
	if got := sqliteRows(t, s.DatabasePath(id), "t"); got != "'v2'\n" {
		t.Fatalf("after restore to bm2: %q", got)
	}
	if res.PreviousBookmark == "" || res.Bookmark <= res.PreviousBookmark {
		t.Fatalf("restore result: %+v", res)
	}
	// restore by timestamp
	rp = d1.DatabaseTimeTravelRestoreParams{}
	rp.AccountID.Value, rp.AccountID.Present = acct, true
	rp.Timestamp.Value, rp.Timestamp.Present = t1, true
	if _, err := c.TimeTravel.Restore(ctx, id, rp); err != nil {
		t.Fatal(err)
	}
	if got := sqliteRows(t, s.DatabasePath(id), "t"); got != "'v1'\n" {
		t.Fatalf("after restore to t1: %q", got)
	}
	// undo via previous_bookmark (the emptied table)
	rp = d1.DatabaseTimeTravelRestoreParams{}
	rp.AccountID.Value, rp.AccountID.Present = acct, true
	rp.Bookmark.Value, rp.Bookmark.Present = res.PreviousBookmark, true
	if _, err := c.TimeTravel.Restore(ctx, id, rp); err != nil {
		t.Fatal(err)
	}
	if got := sqliteRows(t, s.DatabasePath(id), "t"); got != "" {
		t.Fatalf("after undo: %q", got)
	}
	// outside retention
	clk.Add(8 * 24 * time.Hour)
	rp.Bookmark.Value = bm1.Bookmark
	if _, err := c.TimeTravel.Restore(ctx, id, rp); err == nil {
		t.Fatal("restore beyond retention accepted")
	}
}

func TestConcurrentWritersAndExport(t *testing.T) {
	s, base, c, _ := start(t, cftest.Options{})
	id, _ := s.AddDatabase("c", writeSQL(t, "CREATE TABLE t(i INTEGER PRIMARY KEY, v TEXT);"))
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				rawPost(t, base, id, "/query", `{"sql":"INSERT INTO t(v) VALUES('x')"}`)
			}
		}()
	}
	_, dump, _ := export(t, c, id, d1.DatabaseExportParamsDumpOptions{})
	wg.Wait()
	if n := bytes.Count(dump, []byte("INSERT INTO")); n > 40 {
		t.Fatalf("dump has %d rows", n)
	}
	out, _ := exec.Command("sqlite3", s.DatabasePath(id), "SELECT count(*) FROM t").Output()
	if strings.TrimSpace(string(out)) != "40" {
		t.Fatalf("rows = %s", out)
	}
}

// A full schema (index, view, trigger with ';' and CASE…END, AUTOINCREMENT)
// survives export → emulated import with nothing lost.
func TestFullSchemaExportImport(t *testing.T) {
	s, _, c, _ := start(t, cftest.Options{})
	src, err := s.AddDatabase("src", writeSQL(t, `
CREATE TABLE p(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE, at TEXT);
CREATE TABLE ch(id INTEGER PRIMARY KEY, p INTEGER REFERENCES p(id) ON DELETE CASCADE, note TEXT);
CREATE INDEX ch_p ON ch(p);
CREATE VIEW v AS SELECT p.name, count(ch.id) AS n FROM p LEFT JOIN ch ON ch.p = p.id GROUP BY p.id;
CREATE TRIGGER tr AFTER INSERT ON ch BEGIN
  UPDATE p SET at = CASE WHEN NEW.note IS NULL THEN 'none;' ELSE NEW.note END WHERE id = NEW.p;
END;
INSERT INTO p(name) VALUES ('a'), ('b''s'), ('多');
INSERT INTO ch(p, note) VALUES (1, 'line1
line2'), (2, NULL), (3, 'x');
DELETE FROM p WHERE id = 3;`))
	if err != nil {
		t.Fatal(err)
	}
	_, dump, _ := export(t, c, src, d1.DatabaseExportParamsDumpOptions{})
	dst, _ := s.CreateDatabase("dst")
	if r := importSQL(t, c, dst, dump); r.Status != d1.DatabaseImportResponseStatusComplete {
		t.Fatalf("import: %s %q", r.Status, r.Error)
	}
	schema := func(db string) string {
		out, err := exec.Command("sqlite3", db, "SELECT type, name, sql FROM sqlite_schema ORDER BY name").CombinedOutput()
		if err != nil {
			t.Fatal(err, string(out))
		}
		return string(out)
	}
	if a, b := schema(s.DatabasePath(src)), schema(s.DatabasePath(dst)); a != b {
		t.Fatalf("schema differs:\n%s\n---\n%s", a, b)
	}
	for _, tb := range []string{"p", "ch", "v", "sqlite_sequence"} {
		if a, b := sqliteRows(t, s.DatabasePath(src), tb), sqliteRows(t, s.DatabasePath(dst), tb); a != b {
			t.Fatalf("%s differs: %q vs %q", tb, a, b)
		}
	}
}

func BenchmarkExport(b *testing.B) {
	s, base := cftest.Start(b, cftest.Options{AccountID: acct})
	p := filepath.Join(b.TempDir(), "s.sqlite")
	if _, err := seed.Generate(context.Background(), p, seed.Options{Users: 5000, Seed: 1}); err != nil {
		b.Fatal(err)
	}
	id, _ := s.AddDatabase("bench", p)
	c := client(base, "test-token")
	b.ResetTimer()
	var n int64
	for i := 0; i < b.N; i++ {
		_, dump, _ := export(b, c, id, tables(realTables...))
		n = int64(len(dump))
	}
	b.SetBytes(n)
}
