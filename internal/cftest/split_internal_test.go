package cftest

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestSplitSQL(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want []string
	}{
		{"plain", "SELECT 1; SELECT 2", []string{"SELECT 1", "SELECT 2"}},
		{"quotes", `INSERT INTO "a;b" VALUES('x;''y', [c;d], ` + "`e;f`" + `);`, []string{`INSERT INTO "a;b" VALUES('x;''y', [c;d], ` + "`e;f`" + `)`}},
		{"comments", "SELECT 1; -- a; b\nSELECT /* ; */ 2;", []string{"SELECT 1", "SELECT   2"}},
		{"trigger with case", "CREATE TRIGGER tr AFTER UPDATE ON t BEGIN UPDATE t SET x = CASE WHEN 1 THEN 2 ELSE 3 END; INSERT INTO l VALUES('a;b'); END; SELECT 3;",
			[]string{"CREATE TRIGGER tr AFTER UPDATE ON t BEGIN UPDATE t SET x = CASE WHEN 1 THEN 2 ELSE 3 END; INSERT INTO l VALUES('a;b'); END", "SELECT 3"}},
		{"temp trigger", "create temp trigger x after insert on t begin select 1; end;select 2", []string{"create temp trigger x after insert on t begin select 1; end", "select 2"}},
		{"empty statements", ";;SELECT 1;;", []string{"SELECT 1"}},
		{"create table named trigger", "CREATE TABLE trigger_log(a); SELECT 1;", []string{"CREATE TABLE trigger_log(a)", "SELECT 1"}},
	} {
		got, err := splitSQL(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	_, err := newSplitter(strings.NewReader("SELECT '"+strings.Repeat("x", 200)+"';"), 100).next()
	if !errors.Is(err, ErrStatementTooLong) {
		t.Fatalf("limit: %v", err)
	}
}

func TestJSNumber(t *testing.T) {
	for f, want := range map[float64]string{
		0: "0", 3: "3", -7: "-7", 0.1: "0.1", 1e-7: "1e-7", 1.5e-7: "1.5e-7", 0.000001: "0.000001",
		123.456: "123.456", 1e21: "1e+21", 1.2345e22: "1.2345e+22", 1e20: "100000000000000000000",
		9007199254740993: "9007199254740992", math.Inf(1): "Infinity", -2.5: "-2.5",
	} {
		if got := jsNumber(f); got != want {
			t.Errorf("jsNumber(%v) = %q, want %q", f, got, want)
		}
	}
}

// A CTE that only reads must not count as a write (a write would take a Time Travel copy per batch).
func TestIsReadOnly(t *testing.T) {
	for stmt, want := range map[string]bool{
		"WITH x AS (SELECT 1) SELECT * FROM x":                 true,
		"  with recursive c(n) AS (VALUES(1)) SELECT n FROM c": true,
		"SELECT 1":                 true,
		"PRAGMA table_info(t)":     true,
		"PRAGMA foreign_keys = ON": false,
		"CREATE TABLE t(a)":        false,
		"INSERT INTO t VALUES(1)":  false,
		"DROP TABLE t":             false,
	} {
		if got := isReadOnly(stmt); got != want {
			t.Errorf("isReadOnly(%q) = %v, want %v", stmt, got, want)
		}
	}
}
