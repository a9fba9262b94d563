package seed

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestGenerateShapeAndDeterminism(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.sqlite"), filepath.Join(dir, "b.sqlite")
	st, err := Generate(ctx, a, Options{Users: 50, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if st.Rows["users"] != 50 || st.Rows["auth_events"] != 500 || st.Rows["groups"] != 12 || st.Rows["oidc_clients"] != 8 {
		t.Fatalf("unexpected counts: %v", st.Rows)
	}
	if st.Rows["user_groups"] < 50 {
		t.Fatalf("user_groups = %d, want >= 50", st.Rows["user_groups"])
	}
	if _, err := Generate(ctx, b, Options{Users: 50, Seed: 7}); err != nil {
		t.Fatal(err)
	}
	if ha, hb := contentHash(t, a), contentHash(t, b); ha != hb {
		t.Fatalf("same seed gave different content: %s vs %s", ha, hb)
	}
	if _, err := Generate(ctx, a, Options{}); !errors.Is(err, ErrExists) {
		t.Fatalf("overwrite: got %v, want ErrExists", err)
	}

	db, err := sql.Open("sqlite", a)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	checks := map[string]string{
		"big ints above 2^53":  `SELECT count(*) > 0 FROM users WHERE external_id > 9007199254740992`,
		"null avatars":         `SELECT count(*) > 0 FROM users WHERE avatar IS NULL`,
		"blob avatars":         `SELECT count(*) > 0 FROM users WHERE typeof(avatar) = 'blob'`,
		"1 MB value":           `SELECT max(length(CAST(profile AS BLOB))) > 1000000 FROM users`,
		"newlines and quotes":  `SELECT count(*) > 0 FROM groups WHERE description LIKE '%' || char(13,10) || '%' AND description LIKE '%''%' AND description LIKE '%"%'`,
		"CJK text":             `SELECT count(*) > 0 FROM users WHERE profile LIKE '%李雷%' OR profile LIKE '%王芳%'`,
		"fts populated":        `SELECT count(*) > 0 FROM users_fts WHERE users_fts MATCH 'example'`,
		"view works":           `SELECT count(*) > 0 FROM active_users`,
		"foreign keys intact":  `SELECT count(*) = 0 FROM pragma_foreign_key_check`,
		"integrity":            `SELECT integrity_check = 'ok' FROM pragma_integrity_check`,
		"trigger with CASE":    `SELECT sql LIKE '%CASE%END%;%END' FROM sqlite_schema WHERE type='trigger'`,
		"virtual table exists": `SELECT count(*) = 1 FROM sqlite_schema WHERE sql LIKE 'CREATE VIRTUAL TABLE%'`,
	}
	for name, q := range checks {
		var okv bool
		if err := db.QueryRow(q).Scan(&okv); err != nil || !okv {
			t.Errorf("%s: ok=%v err=%v", name, okv, err)
		}
	}
	// The trigger really fires (and its ';'-containing body is intact).
	if _, err := db.Exec(`PRAGMA foreign_keys=ON; UPDATE users SET email='changed@example.com' WHERE rowid=1`); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM auth_events WHERE event_type='email_changed; by trigger'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("trigger rows = %d, %v", n, err)
	}
}

// contentHash hashes a logical dump made by the real sqlite3 CLI.
func contentHash(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("sqlite3", path, ".dump").Output()
	if err != nil {
		t.Fatalf("sqlite3 .dump: %v", err)
	}
	if !strings.Contains(string(out), "CREATE TABLE users") {
		t.Fatal("dump lacks users table")
	}
	h := sha256.Sum256(out)
	return string(h[:])
}

func BenchmarkGenerate10k(b *testing.B) {
	for i := 0; i < b.N; i++ {
		if _, err := Generate(context.Background(), filepath.Join(b.TempDir(), "x.sqlite"), Options{Users: 10000, Seed: 1}); err != nil {
			b.Fatal(err)
		}
	}
}
