package cli_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	_ "modernc.org/sqlite"

	"github.com/cfbackup/cfbackup/internal/cftest"
	"github.com/cfbackup/cfbackup/internal/cli"
	"github.com/cfbackup/cfbackup/internal/testutil/s3server"
)

// readerScript is the independent reader written from docs/FORMAT.md alone.
var readerScript = filepath.Join("..", "..", "testdata", "reader", "cfreader.py")

// interopSource is a D1 database with what an application may have: a child table created before its
// parent, a mixed-case table referenced in lower case, a foreign-key cycle, int64 edges (in a rowid table, in a table with
// rowid gaps and in a WITHOUT ROWID table), REAL values that look like integers in untyped and NUMERIC
// columns, text with NUL-free awkward characters, BLOBs, an AUTOINCREMENT counter, an index, a view, a
// trigger whose body holds ";\n", an FTS5 table, and one table large enough to span chunks and segments.
const interopSource = `
CREATE TABLE line_items (id INTEGER PRIMARY KEY, order_id INTEGER REFERENCES orders(id), qty INTEGER, price REAL);
CREATE TABLE "Orders" (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id), total REAL, note TEXT);
CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, big INTEGER, loose, score NUMERIC);
CREATE TABLE kv (k TEXT PRIMARY KEY, v BLOB, n INTEGER) WITHOUT ROWID;
CREATE TABLE gaps (a, b TEXT);
CREATE TABLE bulk (id INTEGER PRIMARY KEY, payload TEXT, r REAL);
CREATE TABLE cyc_a (id INTEGER PRIMARY KEY, b_id INTEGER REFERENCES cyc_b(id) DEFERRABLE INITIALLY DEFERRED);
CREATE TABLE cyc_b (id INTEGER PRIMARY KEY, a_id INTEGER REFERENCES cyc_a(id) DEFERRABLE INITIALLY DEFERRED);
CREATE INDEX users_by_name ON users(name);
CREATE UNIQUE INDEX kv_n ON kv(n) WHERE n IS NOT NULL;
CREATE VIEW user_totals AS SELECT u.name, sum(o.total) AS t FROM users u JOIN "Orders" o ON o.user_id = u.id GROUP BY u.name;
CREATE TRIGGER orders_note AFTER INSERT ON "Orders" WHEN NEW.note IS NULL BEGIN
  UPDATE "Orders" SET note = 'auto;' WHERE id = NEW.id;
END;
CREATE VIRTUAL TABLE notes USING fts5(body);
INSERT INTO users (name, big, loose, score) VALUES ('Ada', 9223372036854775807, 42, 3.0);
INSERT INTO users (name, big, loose, score) VALUES ('Bjørn «東京» it''s', -9223372036854775808, 1.0, 2.5);
INSERT INTO users (name, big, loose, score) VALUES ('line' || char(10) || 'sep' || char(8232) || 'end "q"', 9007199254740993, 'text', NULL);
INSERT INTO users (name, big, loose, score) VALUES ('blob <&>', -9007199254740993, x'00ff10', -0.0);
INSERT INTO users (name, big, loose, score) VALUES ('tiny', 1, 1e300, 7);
DELETE FROM users WHERE name = 'tiny';
INSERT INTO "Orders" (id, user_id, total, note) VALUES (1, 1, 10.0, 'first'), (2, 2, 0.5, NULL), (3, 1, 1e-300, 'x');
INSERT INTO line_items (order_id, qty, price) VALUES (1, 2, 5.0), (2, 9007199254740995, 0.25), (3, 1, 100);
INSERT INTO kv VALUES ('a', x'', 9223372036854775806), ('b', NULL, -9223372036854775807), ('c', x'deadbeef', 12);
INSERT INTO gaps VALUES (1, 'one'), (9007199254740999, 'two'), (3.0, 'three'), (-9223372036854775808, 'four'), (5, 'five'), (9223372036854775807, 'six');
DELETE FROM gaps WHERE b IN ('one', 'three');
INSERT INTO cyc_a VALUES (1, NULL), (2, NULL);
INSERT INTO cyc_b VALUES (1, 1), (2, 2);
UPDATE cyc_a SET b_id = id;
INSERT INTO notes (body) VALUES ('the quick brown fox'), ('jumps over the lazy dog');
WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 3000)
  INSERT INTO bulk SELECT i, hex(randomblob(200)), i * 1.0 FROM s;
`

// TestReaderInterop: a repository cfbackup wrote is read by testdata/reader/cfreader.py, an
// independent reader written from docs/FORMAT.md without the Go sources, and its restores must equal
// cfbackup's: D1 table by table with storage class and exact value, schema objects by sqlite_master;
// R2 files byte for byte with their metadata; config files byte for byte. The format 1 fixture is
// read the same way.
func TestReaderInterop(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the Python reader")
	}
	for _, tool := range []string{"python3", "age"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s not installed (CI is set): run scripts/install-tools.sh", tool)
			}
			t.Skipf("%s not installed", tool)
		}
	}
	dir := t.TempDir()
	srcSQL := filepath.Join(dir, "source.sql")
	if err := os.WriteFile(srcSQL, []byte(interopSource), 0o600); err != nil {
		t.Fatal(err)
	}
	emu, base := cftest.Start(t, cftest.Options{DataDir: filepath.Join(dir, "emu")})
	uuid, err := emu.AddDatabase("interop", srcSQL)
	if err != nil {
		t.Fatal(err)
	}
	emu.SeedWorkersExample()
	a := &interopAccount{dir: dir, env: map[string]string{
		"CFBACKUP_CLOUDFLARE_API_URL": base + "/client/v4",
		"CLOUDFLARE_ACCOUNT_ID":       emu.AccountID(),
		"CLOUDFLARE_API_TOKEN":        "test-token",
		"CFBACKUP_REPOSITORY":         filepath.Join(dir, "repo"),
		"CFBACKUP_WRITER_KEY_FILE":    filepath.Join(dir, "writer.key"),
		"CFBACKUP_SEGMENT_SIZE":       "1048576", // the bulk table spans segments
		"CFBACKUP_CHUNK_SIZE":         "65536",   // and chunks
		"HOME":                        dir,
		"XDG_CONFIG_HOME":             filepath.Join(dir, ".config"),
	}}
	key := filepath.Join(dir, "key.txt")
	rcpt := strings.TrimSpace(a.must(t, "key", "generate", "-o", key))
	a.must(t, "init", "--recipient", rcpt)
	a.env["CFBACKUP_IDENTITY_FILE"] = key
	// Labels with what canonical JSON must escape as Go does (U+2028/2029, control characters) and
	// must not (HTML characters, DEL): the reader has to authenticate this manifest.
	a.must(t, "backup", "--component", "d1,config", "--d1-database", "interop", "--no-progress",
		"--label", "note=a\u2028b\u2029c\x01d\x7fe<f>&g\"h\\i\tj", "--label", "ünï=東京")

	t.Run("d1", func(t *testing.T) {
		want := filepath.Join(dir, "cfbackup.sqlite")
		a.must(t, "restore", "latest", "--component", "d1", "--d1-database", "interop", "--to-file", want)
		got := filepath.Join(dir, "reader.sqlite")
		runReader(t, filepath.Join(dir, "repo"), key, "verify", "latest")
		runReader(t, filepath.Join(dir, "repo"), key, "restore-d1", "latest", "--to-file", got)
		compareDatabases(t, want, got, t.Errorf)
		// Against the source itself, for information: differences here are cfbackup's (both restores
		// follow the same items), tracked in issue 12 §4, not the reader's.
		compareDatabases(t, emu.DatabasePath(uuid), got, func(f string, args ...any) { t.Logf("vs source: "+f, args...) })
	})
	t.Run("d1-tables", func(t *testing.T) {
		// A partial restore keeps the selected tables' items and, of the schema items, only the
		// statements on a selected table: indexes, triggers, AUTOINCREMENT counters; no views.
		for i, tables := range [][]string{{"users", "Orders"}, {"kv"}, {"notes"}} {
			want := filepath.Join(dir, fmt.Sprintf("cfbackup-part%d.sqlite", i))
			got := filepath.Join(dir, fmt.Sprintf("reader-part%d.sqlite", i))
			args, rargs := []string{"restore", "latest", "--component", "d1", "--to-file", want}, []string{"restore-d1", "latest", "--to-file", got}
			for _, tb := range tables {
				args, rargs = append(args, "--table", tb), append(rargs, "--table", tb)
			}
			a.must(t, args...)
			runReader(t, filepath.Join(dir, "repo"), key, rargs...)
			compareDatabases(t, want, got, func(f string, args ...any) {
				// cfbackup's partial restore drops the AUTOINCREMENT counter statements, so the
				// counter falls back to the highest restored id; FORMAT.md keeps them (the reader
				// does). Logged until cfbackup follows the document.
				if msg := fmt.Sprintf(f, args...); strings.HasPrefix(msg, "table sqlite_sequence ") {
					t.Logf("known cfbackup difference (partial restore %v): %s", tables, msg)
					return
				}
				t.Errorf(f, args...)
			})
		}
	})
	t.Run("config", func(t *testing.T) {
		want, got := filepath.Join(dir, "config-cfbackup"), filepath.Join(dir, "config-reader")
		a.must(t, "restore", "latest", "--component", "config", "--to-dir", want)
		runReader(t, filepath.Join(dir, "repo"), key, "restore-config", "latest", "--to-dir", got)
		compareTrees(t, want, got, nil)
	})
	t.Run("r2", func(t *testing.T) {
		srv := s3server.Start(t)
		srv.CreateBucket(t, "media", false)
		a.env["CFBACKUP_R2_ENDPOINT"] = srv.Endpoint
		a.env["CFBACKUP_R2_ACCESS_KEY_ID"] = srv.AccessKey
		a.env["CFBACKUP_R2_SECRET_ACCESS_KEY"] = srv.SecretKey
		big := make([]byte, 300<<10) // incompressible, several chunks
		if _, err := rand.Read(big); err != nil {
			t.Fatal(err)
		}
		// Keys a file-system-backed S3 server can hold (no "a" beside "a/b", no empty or dot elements).
		long := strings.Repeat("é", 120) // 240 bytes: one path element cut in two
		objects := map[string][]byte{
			"a/b":              []byte("inside a\n"),
			"pct%20 and\\back": []byte("percent and backslash\n"),
			"long/" + long:     []byte("a long element\n"),
			"empty":            {},
			"big.bin":          big,
		}
		for k, b := range objects {
			in := &s3.PutObjectInput{Bucket: aws.String("media"), Key: aws.String(k), Body: bytes.NewReader(b)}
			if k == "a/b" {
				in.ContentType = aws.String("text/plain; charset=utf-8")
				in.CacheControl = aws.String("max-age=60")
				in.Metadata = map[string]string{"owner": "team-a", "note": "x y"}
			}
			if _, err := srv.Client().PutObject(context.Background(), in); err != nil {
				t.Fatal(err)
			}
		}
		a.must(t, "backup", "--component", "r2", "--r2-bucket", "media", "--no-progress")
		want, got := filepath.Join(dir, "r2-cfbackup"), filepath.Join(dir, "r2-reader")
		a.must(t, "restore", "latest", "--component", "r2", "--r2-bucket", "media", "--to-dir", want)
		runReader(t, filepath.Join(dir, "repo"), key, "verify", "latest")
		runReader(t, filepath.Join(dir, "repo"), key, "restore-r2", "latest", "--bucket", "media", "--to-dir", got)
		compareTrees(t, want, got, map[string]bool{"%cfbackup-objects.jsonl": true, "%cfreader-objects.json": true})
		compareR2Metadata(t, filepath.Join(want, "%cfbackup-objects.jsonl"), filepath.Join(got, "%cfreader-objects.json"), len(objects))
	})
	t.Run("forged", func(t *testing.T) {
		// A changed label (the bucket writer's edit) or a changed config.json must not authenticate.
		for _, c := range []struct{ file, from, to string }{
			{"snapshots", `"ünï": "東京"`, `"ünï": "京東"`},
			{"config.json", `"chunk_size": 65536`, `"chunk_size": 65537`},
		} {
			repo := filepath.Join(t.TempDir(), "repo")
			if err := os.CopyFS(repo, os.DirFS(filepath.Join(dir, "repo"))); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(repo, c.file)
			if c.file == "snapshots" {
				ms, _ := filepath.Glob(filepath.Join(repo, "snapshots", "*.json"))
				sort.Strings(ms)
				p = ms[0] // the d1,config snapshot, the one with the labels
			}
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(b, []byte(c.from)) {
				t.Fatalf("%s holds no %s:\n%s", p, c.from, b)
			}
			if err := os.WriteFile(p, bytes.Replace(b, []byte(c.from), []byte(c.to), 1), 0o600); err != nil {
				t.Fatal(err)
			}
			id := strings.TrimSuffix(filepath.Base(p), ".json")
			id = id[strings.LastIndex(id, "-")+1:]
			cmd := exec.Command("python3", readerScript, "--repo", repo, "--identity", key, "restore-config", id, "--to-dir", filepath.Join(t.TempDir(), "out"))
			out, err := cmd.CombinedOutput()
			if err == nil || !bytes.Contains(out, []byte("authenticate")) && !bytes.Contains(out, []byte("mac wrong")) {
				t.Errorf("reader accepted a changed %s (%v):\n%s", c.file, err, out)
			}
		}
	})
	t.Run("forged-newer", func(t *testing.T) {
		// A manifest that does not authenticate, newer by its key, stops "latest" (no silent fallback).
		repo := filepath.Join(t.TempDir(), "repo")
		if err := os.CopyFS(repo, os.DirFS(filepath.Join(dir, "repo"))); err != nil {
			t.Fatal(err)
		}
		ms, _ := filepath.Glob(filepath.Join(repo, "snapshots", "*.json"))
		b, err := os.ReadFile(ms[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(repo, "snapshots", "20990101T000000Z-aaaaaaaaaaaaaaaa.json"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("python3", readerScript, "--repo", repo, "--identity", key, "restore-config", "latest", "--to-dir", filepath.Join(t.TempDir(), "out")).CombinedOutput()
		if err == nil || !bytes.Contains(out, []byte("20990101T000000Z-aaaaaaaaaaaaaaaa.json is unreadable")) {
			t.Errorf("reader chose latest past an unreadable newer manifest (%v):\n%s", err, out)
		}
	})
	t.Run("hostile-sql", func(t *testing.T) {
		// The reader's loader refuses what FORMAT.md says a D1 item may not contain, writing nothing
		// outside its target and removing the target.
		td := t.TempDir()
		victim := filepath.Join(td, "victim.sqlite")
		for i, stmt := range []string{
			"ATTACH DATABASE '" + victim + "' AS v;\nCREATE TABLE v.x(a);",
			"VACUUM INTO '" + victim + "';",
			"CREATE TABLE t(a);\nCREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT load_extension('x'); END;\nINSERT INTO t VALUES(1);",
			"PRAGMA writable_schema=ON;",
			"CREATE TEMP TABLE t(a);",
			"CREATE VIRTUAL TABLE d USING sqlite_dbpage;",
		} {
			target := filepath.Join(td, fmt.Sprintf("t%d.sqlite", i))
			code := "import sys; sys.dont_write_bytecode = True; sys.path.insert(0, sys.argv[1]); import cfreader\ntry:\n cfreader.load_sql(sys.argv[2], sys.argv[3])\nexcept Exception as e:\n print('refused', e); sys.exit(3)"
			out, err := exec.Command("python3", "-c", code, filepath.Dir(readerScript), target, stmt).CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
				t.Errorf("%q: not refused (%v): %s", stmt, err, out)
			}
			for _, p := range []string{victim, target} {
				if _, err := os.Stat(p); err == nil {
					t.Errorf("%q: %s exists after the refusal", stmt, p)
				}
			}
		}
	})
	t.Run("lz4", func(t *testing.T) {
		// "Readers must accept any valid LZ4 frame": frames the lz4 CLI makes with other flags
		// (dependent blocks, block checksums, content size, other block sizes) and a skippable frame.
		if _, err := exec.LookPath("lz4"); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("lz4 not installed (CI is set)")
			}
			t.Skip("lz4 not installed")
		}
		td := t.TempDir()
		data := bytes.Repeat([]byte("compressible text, compressible text; "), 8000)
		noise := make([]byte, 150<<10)
		if _, err := rand.Read(noise); err != nil {
			t.Fatal(err)
		}
		data = append(append(data, noise...), data[:100000]...)
		src := filepath.Join(td, "data")
		if err := os.WriteFile(src, data, 0o600); err != nil {
			t.Fatal(err)
		}
		skippable := []byte{0x50, 0x2A, 0x4D, 0x18, 3, 0, 0, 0, 'a', 'b', 'c'}
		// Every variant into one file, a skippable frame after each: one run of the reader.
		var all, want []byte
		for _, opts := range [][]string{{}, {"-BD"}, {"-BX"}, {"--content-size"}, {"--no-frame-crc"}, {"-B4", "-BD", "-BX"}} {
			dst := filepath.Join(td, "data.lz4")
			if out, err := exec.Command("lz4", append(append([]string{"-q", "-f"}, opts...), src, dst)...).CombinedOutput(); err != nil {
				t.Fatalf("lz4 %v: %v\n%s", opts, err, out)
			}
			frame, err := os.ReadFile(dst)
			if err != nil {
				t.Fatal(err)
			}
			all = append(append(all, frame...), skippable...)
			want = append(want, data...)
		}
		both := filepath.Join(td, "all.lz4")
		if err := os.WriteFile(both, all, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := exec.Command("python3", readerScript, "lz4cat", both).Output()
		if err != nil {
			t.Fatalf("lz4cat: %v", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("the reader decoded %d bytes, want %d", len(got), len(want))
		}
	})
	t.Run("format1", func(t *testing.T) {
		fixture := filepath.Join("..", "..", "testdata", "compat", "v1")
		repo := filepath.Join(dir, "v1")
		if err := os.CopyFS(repo, os.DirFS(filepath.Join(fixture, "repo"))); err != nil {
			t.Fatal(err)
		}
		v1key := filepath.Join(fixture, "key.txt")
		want, got := filepath.Join(dir, "v1-cfbackup.sqlite"), filepath.Join(dir, "v1-reader.sqlite")
		v1 := &interopAccount{dir: dir, env: map[string]string{"CFBACKUP_REPOSITORY": repo, "CFBACKUP_IDENTITY_FILE": v1key, "HOME": dir}}
		v1.must(t, "restore", "latest", "--component", "d1", "--to-file", want)
		runReader(t, repo, v1key, "verify", "latest")
		runReader(t, repo, v1key, "restore-d1", "latest", "--to-file", got)
		compareDatabases(t, want, got, t.Errorf)
	})
}

type interopAccount struct {
	dir string
	env map[string]string
}

func (a *interopAccount) must(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Run(context.Background(), args, cli.IO{In: strings.NewReader(""), Out: &out, Err: &errb}, func(k string) string { return a.env[k] })
	if code != 0 {
		t.Fatalf("cfbackup %v: exit %d\nstdout: %s\nstderr: %s", args, code, out.String(), errb.String())
	}
	return out.String()
}

func runReader(t *testing.T, repo, key string, args ...string) {
	t.Helper()
	cmd := exec.Command("python3", append([]string{readerScript, "--repo", repo, "--identity", key}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cfreader.py %v: %v\n%s", args, err, out)
	}
}

// compareDatabases requires the same schema objects and, table by table, the same rows with the
// same storage class and exact value of every column (and the same rowid where the table has one).
func compareDatabases(t *testing.T, wantPath, gotPath string, report func(string, ...any)) {
	t.Helper()
	open := func(p string) *sql.DB {
		db, err := sql.Open("sqlite", "file:"+p+"?mode=ro")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	want, got := open(wantPath), open(gotPath)
	master := func(db *sql.DB) []string {
		return queryStrings(t, db, `SELECT type || ' ' || name || ' ' || tbl_name || ' ' || coalesce(sql, '') FROM sqlite_master ORDER BY type, name`)
	}
	wm, gm := master(want), master(got)
	if strings.Join(wm, "\n") != strings.Join(gm, "\n") {
		report("sqlite_master differs:\ncfbackup:\n%s\nreader:\n%s", strings.Join(wm, "\n"), strings.Join(gm, "\n"))
	}
	tables := queryStrings(t, want, `SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`)
	if len(tables) == 0 {
		t.Fatalf("only %d table(s) restored", len(tables))
	}
	for _, tbl := range tables {
		cols := queryStrings(t, want, fmt.Sprintf(`SELECT name FROM pragma_table_info(%s)`, sqlQuote(tbl)))
		var sel []string
		for _, c := range cols {
			q := `"` + strings.ReplaceAll(c, `"`, `""`) + `"`
			sel = append(sel, "typeof("+q+") || ':' || quote("+q+")")
		}
		if len(sel) == 0 {
			continue
		}
		qt := `"` + strings.ReplaceAll(tbl, `"`, `""`) + `"`
		row := strings.Join(sel, " || '|' || ")
		q := fmt.Sprintf(`SELECT quote(rowid) || '#' || %s FROM %s`, row, qt)
		if _, err := want.Exec(fmt.Sprintf(`SELECT rowid FROM %s LIMIT 0`, qt)); err != nil {
			q = fmt.Sprintf(`SELECT %s FROM %s`, row, qt) // WITHOUT ROWID or virtual
		}
		wr, gr := queryStrings(t, want, q), queryStrings(t, got, q)
		sort.Strings(wr)
		sort.Strings(gr)
		if len(wr) != len(gr) {
			report("table %s: cfbackup %d rows, reader %d", tbl, len(wr), len(gr))
			continue
		}
		for i := range wr {
			if wr[i] != gr[i] {
				report("table %s differs:\ncfbackup: %s\nreader:   %s", tbl, wr[i], gr[i])
				break
			}
		}
	}
}

func sqlQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func queryStrings(t *testing.T, db *sql.DB, q string) []string {
	t.Helper()
	rows, err := db.Query(q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
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
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// compareTrees requires the same regular files with the same bytes under both directories.
func compareTrees(t *testing.T, want, got string, ignore map[string]bool) {
	t.Helper()
	read := func(root string) map[string][]byte {
		m := map[string][]byte{}
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			if ignore[rel] {
				return nil
			}
			b, err := os.ReadFile(p)
			m[filepath.ToSlash(rel)] = b
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	w, g := read(want), read(got)
	if len(w) == 0 {
		t.Fatalf("cfbackup restored no file into %s", want)
	}
	for p, b := range w {
		gb, ok := g[p]
		switch {
		case !ok:
			t.Errorf("%s: restored by cfbackup, missing from the reader's restore", p)
		case !bytes.Equal(b, gb):
			t.Errorf("%s: bytes differ (cfbackup %d bytes, reader %d)", p, len(b), len(gb))
		}
	}
	for p := range g {
		if _, ok := w[p]; !ok {
			t.Errorf("%s: restored by the reader only", p)
		}
	}
}

// compareR2Metadata compares cfbackup's %cfbackup-objects.jsonl with the reader's records.
func compareR2Metadata(t *testing.T, cfPath, readerPath string, n int) {
	t.Helper()
	norm := func(r map[string]any) string {
		keep := map[string]any{}
		for k, v := range r {
			if s, ok := v.(string); ok && s == "" {
				continue
			}
			if m, ok := v.(map[string]any); ok && len(m) == 0 {
				continue
			}
			keep[k] = v
		}
		b, _ := json.Marshal(keep)
		return string(b)
	}
	var want []string
	b, err := os.ReadFile(cfPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%s: %v", cfPath, err)
		}
		want = append(want, norm(r))
	}
	var recs []map[string]any
	b, err = os.ReadFile(readerPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &recs); err != nil {
		t.Fatalf("%s: %v", readerPath, err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, norm(r))
	}
	sort.Strings(want)
	sort.Strings(got)
	if len(want) != n || strings.Join(want, "\n") != strings.Join(got, "\n") {
		t.Errorf("R2 metadata differs:\ncfbackup:\n%s\nreader:\n%s", strings.Join(want, "\n"), strings.Join(got, "\n"))
	}
}

// TestReaderInteropDurableObjects: Durable Object items written by cfbackup from the real Workers
// runtime are read by the independent reader (cfreader.py restore-do), which checks each against
// FORMAT.md and docs/DURABLE_OBJECTS.md (cfbackup-do/2 header, end-line counts, kv + rows = the
// catalogue's rows) and writes it out; its files must be the export lines cfbackup's own test-restore
// accepted, one per object.
func TestReaderInteropDurableObjects(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the Workers runtime")
	}
	for _, tool := range []string{"python3", "age"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s not installed (CI is set): run scripts/install-tools.sh", tool)
			}
			t.Skipf("%s not installed", tool)
		}
	}
	a := startDOAccount(t)
	const sessions, limiters = 6, 3
	parallel(sessions+limiters, func(i int) {
		if i < sessions {
			get(t, fmt.Sprintf("%s/sessions/name:session-%d/__test/seed?i=%d", a.w.URL, i, i))
		} else {
			get(t, fmt.Sprintf("%s/ratelimit/name:client-%d/__test/seed?i=%d", a.w.URL, i, i))
		}
	})
	a.initRepo(t)
	a.must(t, "backup", "--component", "do")
	a.must(t, "test-restore", "latest", "--component", "do")
	out := filepath.Join(a.dir, "do-reader")
	runReader(t, a.env["CFBACKUP_REPOSITORY"], a.env["CFBACKUP_IDENTITY_FILE"], "restore-do", "latest", "--to-dir", out)
	files, err := filepath.Glob(filepath.Join(out, "do", "*", "*.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != sessions+limiters {
		t.Fatalf("reader wrote %d Durable Object items, want %d: %v", len(files), sessions+limiters, files)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if !strings.Contains(lines[0], `"cfbackup-do/2"`) || !strings.Contains(lines[len(lines)-1], `"t":"end"`) {
			t.Errorf("%s: not a cfbackup-do/2 export:\n%s", f, b)
		}
	}
}
