package d1

import (
	"strings"
	"testing"
)

// checkExact backs up the database made by script, restores it to a file, into a new D1 database
// and in place, and fails on any difference in schema, value or storage class.
func checkExact(t *testing.T, name, script string) (log string) {
	t.Helper()
	e := startEmu(t)
	src := e.addSQL(t, name, script)
	ws, wr := snapshotDB(t, e.srv.DatabasePath(src.UUID))
	cat, m, log := e.backup(t, src)
	paths, errs := e.restoreAll(t, src, cat, m)
	for i, how := range []string{"to file", "to new database", "in place"} {
		if errs[i] != nil {
			t.Errorf("restore %s: %v", how, errs[i])
			continue
		}
		gs, gr := snapshotDB(t, paths[i])
		if d := diffDB(ws, wr, gs, gr); len(d) > 0 {
			t.Errorf("restore %s differs:\n  %s", how, strings.Join(d, "\n  "))
		}
	}
	return log
}

func TestRestoreForeignKeyCycleIntoD1(t *testing.T) {
	checkExact(t, "cycle", `
CREATE TABLE cyc_b (id INTEGER PRIMARY KEY, a_id INTEGER REFERENCES cyc_a(id) DEFERRABLE INITIALLY DEFERRED);
CREATE TABLE cyc_a (id INTEGER PRIMARY KEY, b_id INTEGER REFERENCES cyc_b(id) DEFERRABLE INITIALLY DEFERRED);
INSERT INTO cyc_b VALUES (1, 1), (2, NULL);
INSERT INTO cyc_a VALUES (1, 1), (2, 2);
CREATE TABLE selfref (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES selfref(id));
INSERT INTO selfref VALUES (2, 1), (1, NULL), (3, 2);
`)
}

func TestRestoreReferencesAreCaseInsensitive(t *testing.T) {
	checkExact(t, "casefk", `
CREATE TABLE lines (id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL REFERENCES orders(id));
CREATE TABLE Orders (id INTEGER PRIMARY KEY, note TEXT);
INSERT INTO Orders VALUES (1, 'a'), (2, 'b');
INSERT INTO lines VALUES (10, 1), (11, 2), (12, 2);
`)
}
