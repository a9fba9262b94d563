package d1

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source/d1/sqldump"
)

// memOpener serves items' SQL from memory by item name.
func memOpener(items map[string]string) Opener {
	return func(_ context.Context, ref archive.ItemRef) (io.ReadCloser, error) {
		s, ok := items[ref.Name]
		if !ok {
			return nil, errors.New("no item " + ref.Name)
		}
		return io.NopCloser(strings.NewReader(s)), nil
	}
}

func tableSel(sqlText string, rows int64) (Selection, Opener) {
	it := item("table", "t")
	it.Rows = rows
	return Selection{Items: []manifest.Item{it}}, memOpener(map[string]string{it.Name: sqlText})
}

// TestRestoreToFileMode0600: the restored database holds user data, so it is readable by its owner
// only, like R2 files.
func TestRestoreToFileMode0600(t *testing.T) {
	sel, open := tableSel("CREATE TABLE t(a);\nINSERT INTO \"t\" (\"a\") VALUES(1);\nINSERT INTO \"t\" (\"a\") VALUES('x');", 2)
	path := filepath.Join(t.TempDir(), "out.db")
	res, err := RestoreToFile(context.Background(), open, sel, path)
	if err != nil {
		t.Fatal(err)
	}
	if res.Tables["t"] != 2 {
		t.Errorf("rows = %v", res.Tables)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the database", len(entries))
	}
}

// TestRestoreToFileRefusesHostileSQL: a forged table item that ATTACHes a victim database is refused
// with ErrNotAllowed; the victim is byte-identical, nothing new appears beside it, and neither the
// target nor its .partial file is left.
func TestRestoreToFileRefusesHostileSQL(t *testing.T) {
	root := t.TempDir()
	victim := filepath.Join(root, "victim.db")
	vdb, err := sql.Open("sqlite", victim)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vdb.Exec("CREATE TABLE accounts(owner TEXT); INSERT INTO accounts VALUES('ann'),('bob')"); err != nil {
		t.Fatal(err)
	}
	vdb.Close()
	before, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(root, "out", "restored.db")
	if err := os.Mkdir(filepath.Dir(target), 0o700); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"attach":      "ATTACH DATABASE '" + victim + "' AS v;\nDELETE FROM v.accounts;",
		"vacuum-into": "VACUUM INTO '" + filepath.Join(root, "copy.db") + "';",
		"trigger":     "CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT load_extension('" + filepath.Join(root, "evil.so") + "'); END;\nINSERT INTO \"t\" (\"a\") VALUES(2);",
	} {
		t.Run(name, func(t *testing.T) {
			sel, open := tableSel("CREATE TABLE t(a);\nINSERT INTO \"t\" (\"a\") VALUES(1);\n"+body, 1)
			_, err := RestoreToFile(context.Background(), open, sel, target)
			if !errors.Is(err, sqldump.ErrNotAllowed) {
				t.Fatalf("err = %v, want ErrNotAllowed", err)
			}
			after, err := os.ReadFile(victim)
			if err != nil || sha256.Sum256(after) != sha256.Sum256(before) {
				t.Errorf("victim changed (%v)", err)
			}
			for _, dir := range []string{root, filepath.Dir(target)} {
				entries, _ := os.ReadDir(dir)
				for _, e := range entries {
					if p := filepath.Join(dir, e.Name()); p != victim && p != filepath.Dir(target) {
						t.Errorf("left behind: %s", p)
					}
				}
			}
		})
	}
}

// TestRestoreToFileForeignKeyViolation: Load leaves foreign_key_check to RestoreToFile's Check,
// which must still refuse a dump whose rows break a foreign key, leaving nothing at the path.
func TestRestoreToFileForeignKeyViolation(t *testing.T) {
	sel, open := tableSel("CREATE TABLE p(id INTEGER PRIMARY KEY);\nCREATE TABLE t(a REFERENCES p(id));\nINSERT INTO \"t\" (\"a\") VALUES(7);", 1)
	path := filepath.Join(t.TempDir(), "out.db")
	_, err := RestoreToFile(context.Background(), open, sel, path)
	if !errors.Is(err, sqldump.ErrCheckFailed) || !strings.Contains(err.Error(), "foreign key") {
		t.Fatalf("err = %v, want a foreign key check failure", err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 0 {
		t.Errorf("a failed restore left %d file(s)", len(entries))
	}
}
