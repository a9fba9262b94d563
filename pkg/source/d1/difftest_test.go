package d1

// A differential fuzzer for D1 backup and restore: random schemas and values nobody designed go
// into an emulated D1 database (real SQLite underneath, exporting the way D1's dumpSql does), are
// backed up through the export, restored three ways — to a local file, into a new D1 database, and
// in place — and each result is compared with the source value by value, storage class included,
// and schema object by object.
//
// A fixed seed set runs in the normal `go test`; `make fuzz-restore SEEDS=N` runs N more
// (CFBACKUP_FUZZ_SEEDS=N, CFBACKUP_FUZZ_FIRST=first seed). A failing seed is reproduced with
// CFBACKUP_FUZZ_FIRST=<seed> CFBACKUP_FUZZ_SEEDS=1; CFBACKUP_FUZZ_KEEP=1 logs the source SQL.

import (
	"database/sql"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/cfbackup/cfbackup/pkg/source/d1/sqldump"
)

// fixedSeeds run in every `go test`.
var fixedSeeds = []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}

type genCol struct {
	name, decl string
	pk         bool
	generated  string // expression of a generated column
	unique     bool
	ref        *genTable // foreign key target (its single-column key)
	strictType string    // the column's type in a STRICT table (its values must match it)
}

type genTable struct {
	name         string
	cols         []*genCol
	pkCols       []*genCol
	alias        bool // INTEGER PRIMARY KEY
	autoinc      bool
	withoutRowid bool
	strict       bool
	keys         []string // literals of the key column's values (single-column keys)
}

type gen struct {
	r     *rand.Rand
	used  map[string]bool
	stmts []string
	// contentless names contentless FTS5 tables (a documented difference: restored empty).
	contentless []string
}

var identPool = []string{
	"users", "Orders", "order", "select", "group", "line items", "tåble", "表", "we\"ird", "a-b", "x.y",
	"Values", "end", "trigger", "köln", "💾", "t", "T2", "where", "index", "rowid_like", "_under", "$dollar",
}

func (g *gen) ident(prefix string) string {
	for i := 0; ; i++ {
		var n string
		if g.r.Intn(3) == 0 || i > 10 {
			n = fmt.Sprintf("%s%d", prefix, g.r.Intn(1000))
		} else {
			n = identPool[g.r.Intn(len(identPool))]
			if g.r.Intn(2) == 0 {
				n = prefix + "_" + n
			}
		}
		if k := sqldump.FoldName(n); !g.used[k] && !strings.HasPrefix(k, "sqlite_") {
			g.used[k] = true
			return n
		}
	}
}

func q(s string) string { return sqldump.QuoteIdent(s) }

// caseFlip spells a name in another ASCII case: SQLite names are ASCII-case-insensitive.
func (g *gen) caseFlip(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z' && g.r.Intn(2) == 0:
			b[i] = c - 'a' + 'A'
		case c >= 'A' && c <= 'Z' && g.r.Intn(2) == 0:
			b[i] = c - 'A' + 'a'
		}
	}
	return string(b)
}

var declTypes = []string{"", "INTEGER", "INT", "TEXT", "REAL", "BLOB", "NUMERIC", "VARCHAR(10)", "DOUBLE", "BOOLEAN", "DATETIME", "ANY"}

func (g *gen) table(all []*genTable) *genTable {
	t := &genTable{name: g.ident("t")}
	t.strict = g.r.Intn(8) == 0
	switch g.r.Intn(6) {
	case 0: // no key
	case 1, 2:
		t.alias = true
		t.autoinc = g.r.Intn(3) == 0
		t.pkCols = []*genCol{{name: g.ident("id"), decl: "INTEGER", pk: true}}
	case 3:
		t.pkCols = []*genCol{{name: g.ident("code"), decl: "TEXT", pk: true}}
		t.withoutRowid = g.r.Intn(2) == 0
	case 4:
		t.pkCols = []*genCol{{name: g.ident("k"), decl: []string{"INTEGER", "", "NUMERIC", "REAL"}[g.r.Intn(4)], pk: true}}
		t.withoutRowid = g.r.Intn(2) == 0
	case 5:
		t.pkCols = []*genCol{{name: g.ident("a"), decl: "INTEGER", pk: true}, {name: g.ident("b"), decl: "TEXT", pk: true}}
		t.withoutRowid = g.r.Intn(2) == 0
	}
	t.cols = append(t.cols, t.pkCols...)
	for i, n := 0, 1+g.r.Intn(5); i < n; i++ {
		c := &genCol{name: g.ident("c"), decl: declTypes[g.r.Intn(len(declTypes))]}
		if t.strict {
			c.decl = []string{"INT", "INTEGER", "REAL", "TEXT", "BLOB", "ANY"}[g.r.Intn(6)]
		} else if c.decl == "ANY" {
			c.decl = ""
		}
		c.unique = g.r.Intn(10) == 0
		t.cols = append(t.cols, c)
	}
	// foreign keys: to a table made earlier, to itself, or (added later) to one made later (cycles)
	for i, n := 0, g.r.Intn(3); i < n; i++ {
		cands := []*genTable{t}
		for _, o := range all {
			if len(o.pkCols) == 1 {
				cands = append(cands, o)
			}
		}
		p := cands[g.r.Intn(len(cands))]
		if p == t && len(t.pkCols) != 1 {
			continue
		}
		t.cols = append(t.cols, &genCol{name: g.ident("ref"), decl: "", ref: p})
	}
	if g.r.Intn(4) == 0 && len(t.cols) > 0 {
		src := t.cols[g.r.Intn(len(t.cols))]
		t.cols = append(t.cols, &genCol{name: g.ident("g"), decl: "TEXT", generated: fmt.Sprintf("typeof(%s) || length(%s)", q(src.name), q(src.name))})
	}
	return t
}

func (t *genTable) create(g *gen) string {
	var defs []string
	for _, c := range t.cols {
		d := q(c.name)
		if c.decl != "" {
			d += " " + c.decl
		}
		if c.pk && t.alias {
			d += " PRIMARY KEY"
			if t.autoinc {
				d += " AUTOINCREMENT"
			}
		}
		if c.generated != "" {
			d += " GENERATED ALWAYS AS (" + c.generated + ")" + []string{" VIRTUAL", " STORED"}[g.r.Intn(2)]
		}
		if c.unique {
			d += " UNIQUE"
		}
		if c.ref != nil {
			if t.strict {
				d += " ANY"
			}
			d += " REFERENCES " + q(g.caseFlip(c.ref.name)) + "(" + q(c.ref.pkCols[0].name) + ") DEFERRABLE INITIALLY DEFERRED"
		}
		defs = append(defs, d)
	}
	if !t.alias && len(t.pkCols) > 0 {
		var ks []string
		for _, c := range t.pkCols {
			ks = append(ks, q(c.name))
		}
		defs = append(defs, "PRIMARY KEY ("+strings.Join(ks, ", ")+")")
	}
	s := "CREATE TABLE " + q(t.name) + " (" + strings.Join(defs, ", ") + ")"
	var opts []string
	if t.withoutRowid {
		opts = append(opts, "WITHOUT ROWID")
	}
	if t.strict {
		opts = append(opts, "STRICT")
	}
	return s + " " + strings.Join(opts, ", ")
}

// ---- values ----

var intEdges = []int64{0, 1, -1, 42, 1 << 53, 1<<53 + 1, -(1<<53 + 1), 1<<53 - 1, math.MaxInt64, math.MinInt64, math.MaxInt64 - 1, math.MinInt64 + 1, 1 << 62, 1<<63 - 1024, 1<<53 + 3, 1234567890123456789}
var realEdges = []float64{0, math.Copysign(0, -1), 1, -1, 0.5, 1e15, 1e20, 1e21, -1e21, 4503599627370496, 9.223372036854775807e18, math.MaxFloat64, -math.MaxFloat64, math.SmallestNonzeroFloat64, 2.2250738585072014e-308, 0.1, 1.0 / 3, 123456789.125, math.Inf(1), math.Inf(-1), 1e-7, 12345678901234567890.0}

func (g *gen) intLit() string {
	if g.r.Intn(2) == 0 {
		return strconv.FormatInt(intEdges[g.r.Intn(len(intEdges))], 10)
	}
	return strconv.FormatInt(g.r.Int63()>>g.r.Intn(63)*int64(1-2*g.r.Intn(2)), 10)
}

func realLit(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "9e999"
	case math.IsInf(f, -1):
		return "-9e999"
	}
	s := strconv.FormatFloat(f, 'g', -1, 64)
	if !strings.ContainsAny(s, ".eEn") {
		s += ".0"
	}
	return s
}

func (g *gen) realLit() string {
	if g.r.Intn(2) == 0 {
		return realLit(realEdges[g.r.Intn(len(realEdges))])
	}
	f := g.r.NormFloat64() * math.Pow(10, float64(g.r.Intn(40)-20))
	if g.r.Intn(3) == 0 {
		f = math.Trunc(f)
	}
	return realLit(f)
}

func textLit(s string) string { return "CAST(X'" + hex.EncodeToString([]byte(s)) + "' AS TEXT)" }

var texts = []string{"", "plain", "it's", "two\nlines", "cr\r\nlf", `back\slash \n not a newline`, "ünïcödé ✓ 表", "'; DROP TABLE x; --", "Infinity", "NULL", "0042", "1e5", " 7 ", "emoji 💾"}

func (g *gen) textLit(allowInvalid bool) string {
	switch g.r.Intn(8) {
	case 0:
		return textLit("a\x00b" + texts[g.r.Intn(len(texts))]) // NUL inside
	case 1:
		if allowInvalid {
			return textLit([]string{"bad \xff\xfe utf8 \xc3", "\x80lone", "cut \xe2\x9c", "\xc0\x80overlong", "\xed\xa0\x80surrogate"}[g.r.Intn(5)])
		}
	case 2:
		var b strings.Builder
		for i := 0; i < g.r.Intn(40); i++ {
			b.WriteRune(rune(0x20 + g.r.Intn(0x3000)))
		}
		return textLit(b.String())
	}
	return textLit(texts[g.r.Intn(len(texts))])
}

func (g *gen) blobLit(big bool) string {
	n := g.r.Intn(20)
	if big {
		n = 40_000 + g.r.Intn(110_000)
	}
	b := make([]byte, n)
	g.r.Read(b)
	return "X'" + hex.EncodeToString(b) + "'"
}

func (g *gen) bigOf(typ string) string {
	if typ == "BLOB" {
		return g.blobLit(true)
	}
	return textLit(strings.Repeat("large row ✓ '\n", 4000+g.r.Intn(8000)))
}

func (g *gen) value(c *genCol, big bool) string {
	if big {
		if g.r.Intn(2) == 0 {
			return g.blobLit(true)
		}
		return textLit(strings.Repeat("large row ✓ '\n", 4000+g.r.Intn(8000)))
	}
	if c.strict() != "" {
		switch c.strict() {
		case "INT", "INTEGER":
			return g.intLit()
		case "REAL":
			return g.realLit()
		case "TEXT":
			return g.textLit(true)
		case "BLOB":
			return g.blobLit(false)
		}
	}
	switch g.r.Intn(9) {
	case 0:
		return "NULL"
	case 1, 2:
		return g.intLit()
	case 3, 4:
		return g.realLit()
	case 5, 6:
		return g.textLit(true)
	default:
		return g.blobLit(false)
	}
}

func (c *genCol) strict() string { return c.strictType }

// ---- the whole database ----

// genDB returns the SQL that builds a random database, and the contentless FTS tables in it.
func genDB(seed int64) (string, []string) {
	g := &gen{r: rand.New(rand.NewSource(seed)), used: map[string]bool{}}
	var tables []*genTable
	for i, n := 0, 1+g.r.Intn(5); i < n; i++ {
		t := g.table(tables)
		for _, c := range t.cols {
			if t.strict && c.generated == "" && c.ref == nil {
				c.strictType = c.decl
			}
		}
		tables = append(tables, t)
	}
	// a cycle: the first table references the last one
	if len(tables) > 1 && len(tables[len(tables)-1].pkCols) == 1 && g.r.Intn(2) == 0 {
		tables[0].cols = append(tables[0].cols, &genCol{name: g.ident("back"), ref: tables[len(tables)-1]})
	}
	for _, t := range tables {
		if t.strict {
			for _, c := range t.pkCols {
				switch c.decl {
				case "NUMERIC":
					c.decl = "INTEGER"
				case "":
					c.decl = "ANY"
				}
			}
		}
		g.stmts = append(g.stmts, t.create(g))
	}
	// keys first (rows reference them), then rows
	rows := map[*genTable][][]string{}
	for _, t := range tables {
		n := g.r.Intn(12)
		seen := map[string]bool{}
		for i := 0; i < n; i++ {
			var row []string
			key := ""
			for _, c := range t.cols {
				var v string
				switch {
				case c.generated != "":
					continue
				case c.pk && (c.decl == "INTEGER" || c.decl == "NUMERIC" || c.decl == "" || c.decl == "ANY"):
					v = g.intLit()
				case c.pk && c.decl == "REAL":
					v = g.realLit()
					if strings.Contains(v, "e999") {
						v = "1.5"
					}
				case c.pk:
					v = textLit(fmt.Sprintf("key-%d-%s", i, []string{"a", "B", "ü", "x\x00y"}[g.r.Intn(4)]))
				case c.ref != nil:
					v = "NULL" // set below, once every key exists
				default:
					big := g.r.Intn(25) == 0
					if st := c.strict(); st != "" && st != "ANY" && st != "BLOB" && st != "TEXT" {
						big = false
					}
					v = g.value(c, big)
					if st := c.strict(); big && (st == "BLOB" || st == "TEXT") {
						v = g.bigOf(st)
					}
				}
				if c.pk {
					key += v + ","
				}
				row = append(row, v)
			}
			if key != "" && seen[key] {
				continue
			}
			seen[key] = true
			rows[t] = append(rows[t], row)
			if len(t.pkCols) == 1 {
				t.keys = append(t.keys, row[0])
			}
		}
	}
	for _, t := range tables {
		var names []string
		for _, c := range t.cols {
			if c.generated == "" {
				names = append(names, q(c.name))
			}
		}
		for _, row := range rows[t] {
			j := 0
			for _, c := range t.cols {
				if c.generated != "" {
					continue
				}
				if c.ref != nil && len(c.ref.keys) > 0 && g.r.Intn(4) != 0 {
					row[j] = c.ref.keys[g.r.Intn(len(c.ref.keys))]
				}
				j++
			}
			g.stmts = append(g.stmts, "INSERT OR IGNORE INTO "+q(t.name)+" ("+strings.Join(names, ", ")+") VALUES ("+strings.Join(row, ", ")+")")
		}
		if t.autoinc && g.r.Intn(2) == 0 {
			// a counter ahead of the rows (unless the largest id is already taken)
			g.stmts = append(g.stmts, fmt.Sprintf("INSERT INTO %s (%s) SELECT NULL WHERE coalesce((SELECT max(rowid) FROM %s), 0) < 9223372036854775807", q(t.name), q(t.pkCols[0].name), q(t.name)),
				"DELETE FROM "+q(t.name)+" WHERE rowid = (SELECT max(rowid) FROM "+q(t.name)+")")
		}
	}
	// the source keeps its foreign keys (rows were inserted with enforcement off, some were ignored)
	for _, t := range tables {
		for _, c := range t.cols {
			if c.ref != nil {
				g.stmts = append(g.stmts, fmt.Sprintf("UPDATE %s SET %s = NULL WHERE %s NOT IN (SELECT %s FROM %s)", q(t.name), q(c.name), q(c.name), q(c.ref.pkCols[0].name), q(c.ref.name)))
			}
		}
	}
	// indexes (plain, partial, expression, unique), views, triggers whose bodies hold ";\n"
	for _, t := range tables {
		var plain []*genCol
		for _, c := range t.cols {
			if c.generated == "" {
				plain = append(plain, c)
			}
		}
		c := plain[g.r.Intn(len(plain))]
		switch g.r.Intn(4) {
		case 0:
			g.stmts = append(g.stmts, fmt.Sprintf("CREATE INDEX %s ON %s (%s)", q(g.ident("ix")), q(g.caseFlip(t.name)), q(c.name)))
		case 1:
			g.stmts = append(g.stmts, fmt.Sprintf("CREATE INDEX %s ON %s (%s) WHERE %s IS NOT NULL", q(g.ident("ix")), q(t.name), q(c.name), q(c.name)))
		case 2:
			g.stmts = append(g.stmts, fmt.Sprintf("CREATE INDEX %s ON %s (typeof(%s), length(%s))", q(g.ident("ix")), q(t.name), q(c.name), q(c.name)))
		}
		if g.r.Intn(3) == 0 {
			g.stmts = append(g.stmts, fmt.Sprintf("CREATE VIEW %s AS SELECT %s, typeof(%s) AS ty FROM %s WHERE %s IS NOT NULL", q(g.ident("v")), q(c.name), q(c.name), q(t.name), q(c.name)))
		}
		if g.r.Intn(3) == 0 {
			logt := g.ident("log")
			g.stmts = append(g.stmts, fmt.Sprintf("CREATE TABLE %s (n INTEGER PRIMARY KEY, what TEXT)", q(logt)))
			g.stmts = append(g.stmts, fmt.Sprintf("INSERT INTO %s (what) VALUES ('before the trigger')", q(logt)))
			g.stmts = append(g.stmts, fmt.Sprintf("CREATE TRIGGER %s AFTER INSERT ON %s BEGIN\n  INSERT INTO %s (what) VALUES ('insert;\n');\n  UPDATE %s SET what = what || ';' WHERE n = 1;\nEND", q(g.ident("tr")), q(t.name), q(logt), q(logt)))
		}
	}
	// full-text tables: regular, external content, contentless
	if g.r.Intn(2) == 0 {
		name := g.ident("fts")
		g.stmts = append(g.stmts, fmt.Sprintf("CREATE VIRTUAL TABLE %s USING fts5(title, body)", q(name)))
		for i := 0; i < g.r.Intn(6); i++ {
			g.stmts = append(g.stmts, fmt.Sprintf("INSERT INTO %s (title, body) VALUES (%s, %s)", q(name), g.textLit(false), g.textLit(false)))
		}
	}
	if g.r.Intn(3) == 0 {
		docs, fts := g.ident("docs"), g.ident("docs_fts")
		g.stmts = append(g.stmts, fmt.Sprintf("CREATE TABLE %s (id INTEGER PRIMARY KEY, body TEXT)", q(docs)))
		for i := 0; i < g.r.Intn(6); i++ {
			g.stmts = append(g.stmts, fmt.Sprintf("INSERT INTO %s (body) VALUES (%s)", q(docs), textLit(texts[g.r.Intn(len(texts))])))
		}
		g.stmts = append(g.stmts, fmt.Sprintf("CREATE VIRTUAL TABLE %s USING fts5(body, content=%s, content_rowid='id')", q(fts), sqlString(docs)),
			fmt.Sprintf("INSERT INTO %s(%s) VALUES('rebuild')", q(fts), q(fts)))
	}
	if g.r.Intn(4) == 0 {
		name := g.ident("blind")
		g.stmts = append(g.stmts, fmt.Sprintf("CREATE VIRTUAL TABLE %s USING fts5(body, content='')", q(name)),
			fmt.Sprintf("INSERT INTO %s (rowid, body) VALUES (1, 'only the index knows')", q(name)))
		g.contentless = append(g.contentless, name)
	}
	return strings.Join(g.stmts, ";\n") + ";\n", g.contentless
}

func sqlString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// ---- the test ----

func fuzzSeeds(t *testing.T) []int64 {
	n, _ := strconv.Atoi(os.Getenv("CFBACKUP_FUZZ_SEEDS"))
	if n <= 0 {
		if testing.Short() {
			return fixedSeeds[:3]
		}
		return fixedSeeds
	}
	first, _ := strconv.ParseInt(os.Getenv("CFBACKUP_FUZZ_FIRST"), 10, 64)
	if first == 0 {
		first = 1000
	}
	out := make([]int64, n)
	for i := range out {
		out[i] = first + int64(i)
	}
	return out
}

// TestDifferentialRestore is the differential fuzzer (see the top of this file).
func TestDifferentialRestore(t *testing.T) {
	seeds := fuzzSeeds(t)
	classes := map[string]int{}
	failed := 0
	for _, seed := range seeds {
		seed := seed
		ok := t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			script, contentless := genDB(seed)
			if os.Getenv("CFBACKUP_FUZZ_KEEP") != "" {
				t.Logf("source SQL:\n%s", script)
			}
			diffs, cls := runDifferential(t, seed, script, contentless)
			for _, c := range cls {
				classes[c]++
			}
			if len(diffs) > 0 {
				t.Errorf("seed %d: %d differences (reproduce: CFBACKUP_FUZZ_FIRST=%d CFBACKUP_FUZZ_SEEDS=1 CFBACKUP_FUZZ_KEEP=1):\n  %s", seed, len(diffs), seed, strings.Join(diffs, "\n  "))
			}
		})
		if !ok {
			failed++
		}
	}
	var cl []string
	for c, n := range classes {
		cl = append(cl, fmt.Sprintf("%s ×%d", c, n))
	}
	sort.Strings(cl)
	t.Logf("differential restore: %d cases (×3 restores), %d failed; classes of difference: %s", len(seeds), failed, strings.Join(cl, ", "))
}

// runDifferential builds the database, backs it up and restores it three ways; it returns every
// difference and the classes they fall in.
func runDifferential(t *testing.T, seed int64, script string, contentless []string) (diffs, classes []string) {
	e := startEmu(t)
	path := filepath.Join(t.TempDir(), "src.sqlite")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(script); err != nil {
		db.Close()
		t.Fatalf("seed %d: source: %v (CFBACKUP_FUZZ_KEEP=1 logs the SQL)", seed, err)
	}
	db.Close()
	src := e.addFile(t, fmt.Sprintf("fuzz%d", seed), path)
	ws, wr := snapshotDB(t, e.srv.DatabasePath(src.UUID))
	cat, m, log := e.backup(t, src)
	skip := map[string]bool{}
	for _, n := range contentless {
		skip[n] = true
		if !strings.Contains(log, "contentless") {
			diffs = append(diffs, "contentless table "+n+" not announced at backup")
		}
		warned := false
		for _, it := range cat.Items {
			warned = warned || it.Table == n && len(it.Warnings) > 0
		}
		if !warned {
			diffs = append(diffs, "contentless table "+n+" has no warning in the catalogue")
		}
	}
	paths, errs := e.restoreAll(t, src, cat, m)
	for i, how := range []string{"file", "new-db", "in-place"} {
		if errs[i] != nil {
			msg := errs[i].Error()
			diffs = append(diffs, how+": restore failed: "+clip(msg))
			classes = append(classes, how+": restore error: "+errorClass(msg))
			continue
		}
		gs, gr := snapshotDB(t, paths[i])
		for _, d := range diffDB(ws, wr, gs, gr) {
			if name, ok := tableOf(d); ok && skip[name] {
				continue
			}
			diffs = append(diffs, how+": "+d)
			classes = append(classes, how+": "+diffClass(d))
		}
	}
	return diffs, classes
}

func tableOf(d string) (string, bool) {
	if !strings.HasPrefix(d, "table ") {
		return "", false
	}
	rest := d[len("table "):]
	i := strings.Index(rest, ": ")
	if i < 0 {
		return "", false
	}
	return rest[:i], true
}

func errorClass(msg string) string {
	for _, k := range []string{"UNIQUE constraint", "no such table", "no such column", "FOREIGN KEY", "unrecognized token", "datatype mismatch", "100,000-byte", "does not match the snapshot", "CHECK constraint", "syntax error"} {
		if strings.Contains(msg, k) {
			return k
		}
	}
	return clip(msg)[:min(60, len(msg))]
}

func diffClass(d string) string {
	switch {
	case strings.HasPrefix(d, "missing "), strings.HasPrefix(d, "extra "):
		return "schema object " + strings.Fields(d)[0] + " " + strings.Fields(d)[1]
	case strings.Contains(d, ": sql "):
		return "schema sql"
	case strings.Contains(d, "rows, want"):
		return "row count"
	}
	return "value/storage class"
}
