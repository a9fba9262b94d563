package sqldump

import "strings"

// shadowSuffixes lists the shadow tables SQLite's built-in virtual-table modules create.
var shadowSuffixes = map[string][]string{
	"fts5":      {"_data", "_idx", "_content", "_docsize", "_config"},
	"fts4":      {"_content", "_segments", "_segdir", "_docsize", "_stat"},
	"fts3":      {"_content", "_segments", "_segdir", "_docsize", "_stat"},
	"rtree":     {"_node", "_rowid", "_parent"},
	"rtree_i32": {"_node", "_rowid", "_parent"},
	"geopoly":   {"_node", "_rowid", "_parent"},
}

// ShadowTables returns the shadow tables of the given virtual tables (name → CREATE VIRTUAL TABLE
// sql) that exist in allTables, in allTables order. D1 refuses to export a database containing
// virtual tables, so cfbackup exports the real tables minus the virtual tables and these (they are
// rebuilt on restore), i.e. this is what to leave out of dump_options.tables. Names compare
// ASCII-case-insensitively, as in SQLite. Unknown modules contribute nothing: guessing could drop a real
// table.
func ShadowTables(vtabs map[string]string, allTables []string) []string {
	want := map[string]bool{}
	for name, sql := range vtabs {
		module, _, _ := VirtualTableInfo(sql)
		for _, suf := range shadowSuffixes[module] {
			want[FoldName(name+suf)] = true
		}
	}
	var out []string
	for _, t := range allTables {
		if want[FoldName(t)] {
			out = append(out, t)
		}
	}
	return out
}

// VirtualTableInfo parses CREATE VIRTUAL TABLE sql so restore knows how to refill the table:
// module is the lower-cased module name (fts5, fts4, rtree…); externalContent is the content=
// table of an external-content FTS table (restore runs INSERT INTO fts(fts) VALUES('rebuild') after
// that table is restored); contentless is true for content=” (nothing to restore but the index,
// which cannot be rebuilt without the source rows). For a regular FTS table both are zero: its rows
// must be paged out at backup time and re-inserted.
func VirtualTableInfo(createSQL string) (module, externalContent string, contentless bool) {
	l := &lexer{s: createSQL}
	for {
		t, ok := l.next()
		if !ok {
			return "", "", false
		}
		if t.is("USING") {
			break
		}
	}
	t, ok := l.next()
	if !ok {
		return "", "", false
	}
	module = strings.ToLower(t.text)
	if t, ok := l.next(); !ok || t.text != "(" || t.quoted {
		return module, "", false
	}
	// arguments: split at top-level commas; look for content = value
	depth := 0
	var arg []tok
	flush := func() {
		if len(arg) >= 3 && arg[0].text != "" && strings.EqualFold(arg[0].text, "content") && arg[1].text == "=" && !arg[1].quoted {
			v := arg[2]
			if v.text == "" {
				contentless = true
			} else {
				externalContent = v.text
			}
		}
		arg = arg[:0]
	}
	for {
		t, ok := l.next()
		if !ok {
			break
		}
		if !t.quoted && !t.word {
			switch t.text {
			case "(":
				depth++
			case ")":
				if depth == 0 {
					flush()
					return module, externalContent, contentless
				}
				depth--
			case ",":
				if depth == 0 {
					flush()
					continue
				}
			}
		}
		arg = append(arg, t)
	}
	flush()
	return module, externalContent, contentless
}

// ReferencedTables returns the parent tables a CREATE TABLE statement's foreign keys name
// (REFERENCES clauses), deduplicated, in order, without the table itself. D1 enforces foreign keys
// on import and rejects rows whose parent table does not exist yet, so a restore that imports
// table parts separately must order parents first; this gives it the edges.
func ReferencedTables(createTableSQL string) []string {
	l := &lexer{s: createTableSQL}
	self := ""
	var out []string
	seen := map[string]bool{}
	for {
		t, ok := l.next()
		if !ok {
			return out
		}
		if t.is("TABLE") && self == "" {
			l.skipIfNotExists()
			self = FoldName(l.name())
			continue
		}
		if t.is("REFERENCES") {
			p := l.name()
			if k := FoldName(p); p != "" && k != self && !seen[k] {
				seen[k] = true
				out = append(out, p)
			}
		}
	}
}
