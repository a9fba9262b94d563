package sqldump

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// hostileFixture is a directory holding a victim SQLite database with rows (a file a hostile dump
// would like to change) and the directory of the restore target.
type hostileFixture struct {
	root, victim, targetDir, target string
}

func newHostileFixture(t *testing.T) hostileFixture {
	t.Helper()
	root := t.TempDir()
	f := hostileFixture{root: root, victim: filepath.Join(root, "victim.db"), targetDir: filepath.Join(root, "target")}
	f.target = filepath.Join(f.targetDir, "restored.db")
	if err := os.Mkdir(f.targetDir, 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", f.victim)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE accounts(id INTEGER PRIMARY KEY, owner TEXT); CREATE TABLE keep(x); INSERT INTO accounts(owner) VALUES('ann'),('bob'),('cy'); INSERT INTO keep VALUES(1)"); err != nil {
		t.Fatal(err)
	}
	return f
}

// outside hashes every file under root that is not in the target's directory.
func (f hostileFixture) outside(t *testing.T) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	err := filepath.WalkDir(f.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p == f.targetDir {
				return filepath.SkipDir
			}
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out[p] = sha256.Sum256(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (f hostileFixture) assertUntouched(t *testing.T, before map[string][32]byte) {
	t.Helper()
	after := f.outside(t)
	for p, h := range after {
		if b, ok := before[p]; !ok {
			t.Errorf("new file outside the target: %s", p)
		} else if b != h {
			t.Errorf("file outside the target changed: %s", p)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			t.Errorf("file outside the target removed: %s", p)
		}
	}
}

// openTarget opens the restore target the way RestoreToFile does.
func openTarget(t *testing.T, path string) *sql.Conn {
	t.Helper()
	db, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); db.Close() })
	return conn
}

// hostileDumps are forged D1 items: each starts like a real dump (so partial writes would show) and
// then tries to reach a file outside the target. %R is the fixture's root, %V the victim.
var hostileDumps = map[string]string{
	"attach-victim":          `ATTACH DATABASE '%V' AS v; DELETE FROM v.accounts; DROP TABLE v.keep;`,
	"attach-comment":         `/* looks harmless */ ATTACH '%V' AS v; DELETE FROM v.accounts;`,
	"attach-new-file":        `ATTACH '%R/authorized_keys' AS k; CREATE TABLE k.x(a); INSERT INTO k.x VALUES('ssh-ed25519 AAAA attacker');`,
	"attach-in-expression":   `INSERT INTO t VALUES((SELECT 1)); ATTACH '%R/x.db' || '' AS k;`,
	"detach":                 `DETACH DATABASE main;`,
	"vacuum-into":            `VACUUM INTO '%R/copy.db';`,
	"vacuum":                 `VACUUM;`,
	"load-extension-select":  `SELECT load_extension('%R/evil.so');`,
	"load-extension-insert":  `INSERT INTO t VALUES(load_extension('%R/evil.so'));`,
	"load-extension-quoted":  `INSERT INTO t VALUES("load_extension"('%R/evil.so'));`,
	"writable-schema":        `PRAGMA writable_schema=ON; UPDATE sqlite_schema SET sql='CREATE TABLE t(a, b)' WHERE name='t';`,
	"writable-schema-spaced": `PRAGMA   Writable_Schema = 1;`,
	"pragma-journal-wal":     `PRAGMA journal_mode=WAL;`,
	"pragma-temp-dir":        `PRAGMA temp_store_directory='%R';`,
	"pragma-schema":          `PRAGMA main.defer_foreign_keys=TRUE;`,
	"trigger-load-extension": "CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT load_extension('%R/evil.so'); END;\nINSERT INTO t VALUES(2);",
	"trigger-attach":         "CREATE TRIGGER tr AFTER INSERT ON t BEGIN ATTACH '%V' AS v; END;\nINSERT INTO t VALUES(2);",
	"trigger-qualified":      "CREATE TRIGGER tr AFTER INSERT ON t BEGIN DELETE FROM v.accounts; END;\nINSERT INTO t VALUES(2);",
	"view-load-extension":    "CREATE VIEW v AS SELECT load_extension('%R/evil.so') AS x;\nINSERT INTO t SELECT x FROM v;",
	"temp-trigger":           "CREATE TEMP TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END;",
	"temp-table":             "CREATE TEMPORARY TABLE tt(a);",
	"vtab-dbpage":            "CREATE VIRTUAL TABLE p USING sqlite_dbpage;",
	"vtab-dbstat":            "CREATE VIRTUAL TABLE s USING dbstat;",
	"dbpage-write":           "INSERT INTO sqlite_dbpage(pgno, data) VALUES(1, zeroblob(4096));",
	"drop":                   "DROP TABLE t;",
	"drop-stage-elsewhere":   "DROP TABLE v.cfbackup_stage;",
	"alter":                  "ALTER TABLE t RENAME TO u;",
	"savepoint-smuggled":     "INSERT INTO t VALUES(3); COMMIT; ATTACH '%V' AS v;",
	"select":                 "SELECT * FROM t;",
	"with-insert":            "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x;",
	"replace-into-other-db":  "REPLACE INTO v.accounts VALUES(1, 'mallory');",
	"create-in-other-schema": "CREATE TABLE v.x(a);",
}

func expand(s string, f hostileFixture) string {
	return strings.NewReplacer("%R", f.root, "%V", f.victim).Replace(s)
}

// TestLoadRefusesHostileDump: every forged dump is refused with ErrNotAllowed (naming the statement)
// and nothing outside the target changes; the target keeps none of the dump's earlier writes.
func TestLoadRefusesHostileDump(t *testing.T) {
	ctx := context.Background()
	for name, body := range hostileDumps {
		t.Run(name, func(t *testing.T) {
			f := newHostileFixture(t)
			before := f.outside(t)
			conn := openTarget(t, f.target)
			dump := "PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE t(a);\nINSERT INTO \"t\" (\"a\") VALUES(1);\n" + expand(body, f)
			_, err := Load(ctx, conn, strings.NewReader(dump), LoadOptions{})
			if err == nil {
				t.Fatal("hostile dump loaded")
			}
			if name != "trigger-attach" && name != "trigger-qualified" { // not even valid SQL: a syntax error
				if !errors.Is(err, ErrNotAllowed) {
					t.Fatalf("err = %v, want ErrNotAllowed", err)
				}
				if !strings.Contains(err.Error(), "statement ") {
					t.Errorf("error does not name the statement: %v", err)
				}
			}
			if strings.ContainsAny(err.Error(), "\n\r\x1b") {
				t.Errorf("error carries control characters: %q", err)
			}
			f.assertUntouched(t, before)
			var n int
			if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Errorf("the failed load left %d schema objects in the target", n)
			}
		})
	}
}

// TestGuardAloneRefuses runs hostile statements past the classifier, straight on a guarded
// connection, so SQLite's own guards (authorizer, attached limit, defensive mode) are shown to hold
// by themselves — including inside a trigger body created earlier, fired by a later INSERT.
func TestGuardAloneRefuses(t *testing.T) {
	ctx := context.Background()
	f := newHostileFixture(t)
	before := f.outside(t)
	conn := openTarget(t, f.target)
	g := &guard{}
	if err := g.install(ctx, conn); err != nil {
		t.Fatal(err)
	}
	setup := []string{"CREATE TABLE t(a)", "CREATE TABLE log(x)",
		"CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO log VALUES(load_extension('" + f.root + "/evil.so')); END"}
	for _, q := range setup {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, q := range []string{
		"ATTACH DATABASE '" + f.victim + "' AS v",
		"ATTACH DATABASE '" + f.root + "/new.db' AS n",
		"VACUUM INTO '" + f.root + "/copy.db'",
		"SELECT load_extension('" + f.root + "/evil.so')",
		"PRAGMA writable_schema=ON",
		"PRAGMA temp_store_directory='" + f.root + "'",
		"CREATE TEMP TABLE x(a)",
		"CREATE VIRTUAL TABLE p USING sqlite_dbpage",
		"INSERT INTO t VALUES(1)", // fires the trigger
		"BEGIN",
	} {
		g.begin()
		_, err := conn.ExecContext(ctx, q)
		denied := g.end()
		if err == nil {
			t.Errorf("%s: ran", q)
			continue
		}
		if denied == "" {
			t.Errorf("%s: failed, but not by the guard: %v", q, err)
		}
		t.Logf("%s: %v (%s)", q, err, denied)
	}
	f.assertUntouched(t, before)
}

// TestLoadRequiresDefensive: a connection opened without OpenFile is refused before any SQL runs.
func TestLoadRequiresDefensive(t *testing.T) {
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "plain.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = Load(context.Background(), conn, strings.NewReader("CREATE TABLE t(a);"), LoadOptions{})
	if !errors.Is(err, ErrUnguarded) {
		t.Fatalf("err = %v, want ErrUnguarded", err)
	}
}

// TestLoadAcceptsEveryDumpStatementKind: each kind of statement a D1 dump or a cfbackup item holds
// loads through the guards: the PRAGMAs D1 and sqlite3 emit, CREATE TABLE (IF NOT EXISTS, quoted,
// WITHOUT ROWID, AUTOINCREMENT, CHECK/DEFAULT/generated expressions), indexes (unique, partial,
// expression), a trigger that writes another table when it fires, a view, FTS5 (regular and external
// content) with its rebuild, rtree, INSERT with replace()/char(), REPLACE, sqlite_sequence statements,
// ANALYZE and sqlite_stat1 rows, the fixups' UPDATE, and BEGIN/COMMIT (skipped).
func TestLoadAcceptsEveryDumpStatementKind(t *testing.T) {
	ctx := context.Background()
	dump := strings.Join([]string{
		"BEGIN TRANSACTION;",
		"PRAGMA defer_foreign_keys=TRUE;",
		"PRAGMA foreign_keys=OFF;",
		`CREATE TABLE IF NOT EXISTS "p ""q"""(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT CHECK (length(name) < 100) DEFAULT (lower('X')), up TEXT GENERATED ALWAYS AS (upper(name)) VIRTUAL);`,
		`CREATE TABLE c(k TEXT PRIMARY KEY, p INTEGER REFERENCES "p ""q"""(id), v ANY) WITHOUT ROWID;`,
		`CREATE TABLE log(msg TEXT, at TEXT);`,
		`INSERT INTO "p ""q""" ("id","name") VALUES(1,replace('a\nb','\n',char(10)));`,
		`INSERT INTO "p ""q""" ("id","name") VALUES(2,'O''Brien');`,
		`REPLACE INTO c VALUES('k1', 1, X'00ff');`,
		`INSERT INTO c VALUES('k2', 2, 9223372036854775807);`,
		`UPDATE c SET v = -9223372036854775808 WHERE k = 'k2';`,
		`DELETE FROM sqlite_sequence;`,
		`INSERT INTO "sqlite_sequence" VALUES('p "q"',7);`,
		`UPDATE sqlite_sequence SET seq = 9 WHERE name = 'p "q"';`,
		`INSERT INTO sqlite_sequence (name, seq) SELECT 'p "q"', 9 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'p "q"');`,
		`CREATE UNIQUE INDEX c_by_v ON c(v) WHERE v IS NOT NULL;`,
		`CREATE INDEX p_lower ON "p ""q"""(lower(name));`,
		"CREATE TRIGGER p_log AFTER INSERT ON \"p \"\"q\"\"\" BEGIN\n  INSERT INTO log VALUES (CASE WHEN NEW.id > 1 THEN 'big; END;' ELSE 'small' END, datetime('now'));\nEND;",
		`CREATE VIEW pv AS SELECT id, json_object('n', name) AS j FROM "p ""q""";`,
		`INSERT INTO "p ""q""" ("id","name") VALUES(3,'fires the trigger');`,
		`CREATE VIRTUAL TABLE docs USING fts5(body);`,
		`INSERT INTO docs(body) VALUES('hello world');`,
		`CREATE VIRTUAL TABLE pidx USING fts5(name, content="p ""q""", content_rowid=id);`,
		`INSERT INTO pidx(pidx) VALUES('rebuild');`,
		`CREATE VIRTUAL TABLE boxes USING rtree(id, minx, maxx);`,
		`INSERT INTO boxes VALUES(1, 0, 1);`,
		`ANALYZE sqlite_schema;`,
		`INSERT INTO "sqlite_stat1" ("tbl","idx","stat") VALUES('c','c_by_v','2 1');`,
		"COMMIT;",
	}, "\n")
	conn := openTarget(t, filepath.Join(t.TempDir(), "ok.db"))
	st, err := Load(ctx, conn, strings.NewReader(dump), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Skipped != 2 {
		t.Errorf("skipped %d transaction statements, want 2", st.Skipped)
	}
	for q, want := range map[string]string{
		`SELECT count(*) FROM log`:                               "1",
		`SELECT seq FROM sqlite_sequence`:                        "9",
		`SELECT typeof(v) || v FROM c WHERE k='k2'`:              "integer-9223372036854775808",
		`SELECT count(*) FROM docs WHERE docs MATCH 'hello'`:     "1",
		`SELECT count(*) FROM pidx WHERE pidx MATCH 'trigger'`:   "1",
		`SELECT j FROM pv WHERE id = 2`:                          `{"n":"O'Brien"}`,
		`SELECT count(*) FROM sqlite_stat1 WHERE idx = 'c_by_v'`: "1",
	} {
		var got string
		if err := conn.QueryRowContext(ctx, q).Scan(&got); err != nil {
			t.Errorf("%s: %v", q, err)
		} else if got != want {
			t.Errorf("%s = %s, want %s", q, got, want)
		}
	}
	if err := Check(ctx, conn); err != nil {
		t.Error(err)
	}
}

func TestExcerptSanitizes(t *testing.T) {
	for in, want := range map[string]string{
		"ATTACH  '/x'\n AS y;":                   "ATTACH '/x' AS y;",
		"a\x1b[31mred":                           "a?[31mred",
		strings.Repeat("x", 50):                  strings.Repeat("x", 40) + "…",
		"   lead":                                "lead",
		"bad\xffutf8":                            "bad?utf8",
		"日本語":                                    "日本語",
		"INSERT\r\nINTO\tt VALUES('\u202eevil')": "INSERT INTO t VALUES('?evil')",
	} {
		if got := excerpt(in); got != want {
			t.Errorf("excerpt(%q) = %q, want %q", in, got, want)
		}
	}
}
