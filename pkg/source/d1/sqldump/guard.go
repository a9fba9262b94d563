package sqldump

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/cfbackup/cfbackup/pkg/errclass"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// ErrNotAllowed: a dump holds a statement a D1 dump cannot contain (ATTACH, VACUUM, a PRAGMA
// outside the allow-list, load_extension(), a TEMP object, an unknown virtual-table module…), or
// SQLite's own guards refused an operation while it ran. SQL read from a repository is untrusted
// input, so the restore stops there; callers map it to the integrity exit status.
var ErrNotAllowed = errclass.New(errclass.Integrity, "statement not allowed in a D1 dump")

// ErrUnguarded: Load was given a connection without SQLite's defensive mode (open it with
// OpenFile), so a hostile dump could corrupt the file through writable_schema and the like.
var ErrUnguarded = errclass.New(errclass.Failure, "sqlite connection is not in defensive mode")

// dumpPragmas are the only PRAGMAs a dump may hold: D1 writes "PRAGMA defer_foreign_keys=TRUE;",
// sqlite3 .dump "PRAGMA foreign_keys=OFF;". Neither reaches a file.
var dumpPragmas = map[string]bool{"defer_foreign_keys": true, "foreign_keys": true}

// deniedFunctions reach beyond the database (load_extension loads code from any file; a two-argument
// fts3_tokenizer installs a pointer). They are refused always, in dump statements and in any trigger,
// view or CHECK body they appear in, and by the classifier in schema text, so no restored file
// carries a call to them for a later reader to run either.
var deniedFunctions = map[string]bool{"load_extension": true, "fts3_tokenizer": true, "readfile": true, "writefile": true, "edit": true}

// allowedModules are the virtual-table modules a D1 database can hold and restore rebuilds (see
// shadowSuffixes); dbstat, sqlite_dbpage and anything unknown are refused.
var allowedModules = map[string]bool{"fts5": true, "fts4": true, "fts3": true, "rtree": true, "rtree_i32": true, "geopoly": true}

// checkAllowed is the first, friendlier layer: it refuses by statement shape what a D1 dump never
// holds, with a message naming it. SQLite's authorizer (guard) enforces the same rules underneath,
// for the statements themselves and for every trigger and view body they run.
func checkAllowed(st *Statement) error {
	l := &lexer{s: st.SQL}
	first, _ := l.next()
	refuse := func(why string) error {
		return fmt.Errorf("%w: statement %d (%s): %s", ErrNotAllowed, st.Number, excerpt(st.SQL), why)
	}
	if st.Schema != "" && !strings.EqualFold(st.Schema, "main") {
		return refuse("names schema " + excerpt(st.Schema) + " (a dump only writes the main database)")
	}
	switch st.Kind {
	case Insert, Delete:
		return nil // the authorizer checks functions, tables and trigger bodies
	case Transaction:
		return nil // skipped, never executed
	case Pragma:
		name, _ := l.next()
		if d, ok := l.next(); ok && d.text == "." && !d.quoted {
			return refuse("a PRAGMA naming a schema")
		}
		if !dumpPragmas[strings.ToLower(name.text)] {
			return refuse(fmt.Sprintf("PRAGMA %s (a dump may only set %s)", excerpt(name.text), "defer_foreign_keys and foreign_keys"))
		}
		return nil
	case CreateTable, CreateIndex, CreateView, CreateTrigger, CreateVirtualTable:
		if t, _ := l.next(); t.is("TEMP") || t.is("TEMPORARY") {
			return refuse("a TEMP object")
		}
		if st.Kind == CreateVirtualTable {
			module, _, _ := VirtualTableInfo(st.SQL)
			if !allowedModules[module] {
				return refuse(fmt.Sprintf("virtual-table module %q", excerpt(module)))
			}
		}
		if fn := callsDeniedFunction(st.SQL); fn != "" {
			return refuse("calls " + fn + "()")
		}
		return nil
	}
	switch {
	case first.is("UPDATE"), first.is("ANALYZE"):
		// UPDATE: cfbackup's own fixup items (exact big integers, sqlite_sequence);
		// ANALYZE: D1's dump of a database with sqlite_stat tables.
		return nil
	case first.is("DROP"):
		// The Rewriter's stage table for rows over D1's statement limit, and nothing else.
		if t, _ := l.next(); t.is("TABLE") {
			l.skipIfExists()
			if n := l.name(); strings.EqualFold(n, StageTable) && l.schema == "" {
				return nil
			}
		}
		return refuse("DROP is not a statement a D1 dump contains")
	case first.word:
		return refuse(excerpt(strings.ToUpper(first.text)) + " is not a statement a D1 dump contains")
	default:
		return refuse("not a statement a D1 dump contains")
	}
}

// callsDeniedFunction returns the name of a denied function called in sql ("name(" with the name
// bare or quoted), or "".
func callsDeniedFunction(sql string) string {
	l := &lexer{s: sql}
	prev := tok{}
	for {
		t, ok := l.next()
		if !ok {
			return ""
		}
		if t.text == "(" && !t.quoted && (prev.word || prev.quoted) && deniedFunctions[strings.ToLower(prev.text)] {
			return strings.ToLower(prev.text)
		}
		prev = t
	}
}

// guard holds the SQLite-level policy Load installs on its connection: an authorizer that keeps
// every operation inside the main database and refuses ATTACH/DETACH, PRAGMAs outside the
// allow-list (while dump statements run), denied functions, TEMP objects and unknown virtual-table
// modules; plus SQLITE_LIMIT_ATTACHED = 0. It stays on the connection after Load returns, so what
// runs later on it (checks, row counts, reads through views the dump created) is held to it too.
type guard struct {
	mu     sync.Mutex
	dump   bool   // a dump statement is being prepared or run
	denied string // the first operation refused while dump was set
}

// trustedPragmas are what cfbackup itself runs on a restore connection outside dump statements.
var trustedPragmas = map[string]bool{"foreign_keys": true, "defer_foreign_keys": true, "foreign_key_check": true,
	"integrity_check": true, "data_version": true, "quick_check": true, "table_info": true, "table_xinfo": true, "table_list": true,
	"index_list": true, "index_info": true, "index_xinfo": true, "foreign_key_list": true}

// modulePragmas are read-only PRAGMAs SQLite's own modules run while a dump statement executes
// (FTS5 reads data_version, rtree page_size), read only; the classifier still refuses them as dump statements.
var modulePragmas = map[string]bool{"data_version": true, "page_size": true}

var actionNames = map[sqlite.AuthorizerActionCode]string{
	sqlite.AuthAttach: "ATTACH", sqlite.AuthDetach: "DETACH", sqlite.AuthPragma: "PRAGMA",
	sqlite.AuthTransaction: "a transaction statement", sqlite.AuthSavepoint: "SAVEPOINT",
	sqlite.AuthAlterTable: "ALTER TABLE",
	sqlite.AuthDropTable:  "DROP TABLE", sqlite.AuthDropIndex: "DROP INDEX", sqlite.AuthDropView: "DROP VIEW",
	sqlite.AuthDropTrigger: "DROP TRIGGER", sqlite.AuthDropVTable: "DROP of a virtual table",
	sqlite.AuthCreateTempTable: "a TEMP table", sqlite.AuthCreateTempIndex: "a TEMP index",
	sqlite.AuthCreateTempTrigger: "a TEMP trigger", sqlite.AuthCreateTempView: "a TEMP view",
	sqlite.AuthDropTempTable: "DROP of a TEMP table", sqlite.AuthDropTempIndex: "DROP of a TEMP index",
	sqlite.AuthDropTempTrigger: "DROP of a TEMP trigger", sqlite.AuthDropTempView: "DROP of a TEMP view",
}

// authorize is the authorizer callback. It must not touch the connection.
func (g *guard) authorize(action sqlite.AuthorizerActionCode, arg1, arg2, db, trigger string) sqlite.AuthorizerReturnCode {
	g.mu.Lock()
	defer g.mu.Unlock()
	why := g.why(action, arg1, arg2, db)
	if why == "" {
		return sqlite.AuthorizerOK
	}
	if g.dump && g.denied == "" {
		if trigger != "" {
			why += " (in trigger or view " + excerpt(trigger) + ")"
		}
		g.denied = why
	}
	return sqlite.AuthorizerDeny
}

// why returns why an operation is refused, or "" if it is allowed.
func (g *guard) why(action sqlite.AuthorizerActionCode, arg1, arg2, db string) string {
	switch action {
	case sqlite.AuthAttach, sqlite.AuthDetach:
		return actionNames[action]
	case sqlite.AuthFunction:
		if deniedFunctions[strings.ToLower(arg2)] {
			return "function " + strings.ToLower(arg2) + "()"
		}
		return ""
	case sqlite.AuthPragma:
		name := strings.ToLower(arg1)
		if db != "" && !strings.EqualFold(db, "main") {
			return "PRAGMA on schema " + excerpt(db)
		}
		if g.dump && !dumpPragmas[name] && !(modulePragmas[name] && arg2 == "") || !g.dump && !trustedPragmas[name] {
			return "PRAGMA " + excerpt(name)
		}
		return ""
	case sqlite.AuthTransaction, sqlite.AuthSavepoint:
		if g.dump {
			return actionNames[action] // Load runs the one transaction; the dump's are skipped
		}
		return ""
	case sqlite.AuthCreateVTable:
		if !allowedModules[strings.ToLower(arg2)] {
			return "virtual-table module " + excerpt(arg2)
		}
		return ""
	case sqlite.AuthDropTable:
		if g.dump && !(strings.EqualFold(arg1, StageTable) && strings.EqualFold(db, "main")) {
			return actionNames[action]
		}
		return ""
	case sqlite.AuthCreateTempTable, sqlite.AuthCreateTempIndex, sqlite.AuthCreateTempTrigger, sqlite.AuthCreateTempView,
		sqlite.AuthDropTempTable, sqlite.AuthDropTempIndex, sqlite.AuthDropTempTrigger, sqlite.AuthDropTempView,
		sqlite.AuthAlterTable, sqlite.AuthDropIndex, sqlite.AuthDropView,
		sqlite.AuthDropTrigger, sqlite.AuthDropVTable:
		if g.dump {
			return actionNames[action]
		}
		return ""
	case sqlite.AuthInsert, sqlite.AuthUpdate, sqlite.AuthDelete, sqlite.AuthRead,
		sqlite.AuthCreateTable, sqlite.AuthCreateIndex, sqlite.AuthCreateTrigger, sqlite.AuthCreateView, sqlite.AuthAnalyze,
		sqlite.AuthReindex: // CREATE INDEX asks for REINDEX of the new index
		// arg1 is the table (or index/trigger/view) name, db the schema it lives in.
		if db != "" && !strings.EqualFold(db, "main") && !(action == sqlite.AuthRead && strings.EqualFold(db, "temp")) {
			return "access to schema " + excerpt(db)
		}
		if strings.EqualFold(arg1, "sqlite_dbpage") || (action != sqlite.AuthCreateIndex && action != sqlite.AuthCreateTrigger && strings.EqualFold(arg2, "sqlite_dbpage")) {
			return "access to sqlite_dbpage"
		}
		return ""
	case sqlite.AuthSelect, sqlite.AuthRecursive:
		return ""
	}
	if g.dump {
		return fmt.Sprintf("operation %d", action)
	}
	return ""
}

// install puts the guard on conn: defensive mode must already be on (OpenFile), extension loading
// is left off (SQLite's default; the authorizer refuses load_extension() too), no database may be
// attached, and the authorizer applies to everything the connection prepares from now on.
func (g *guard) install(ctx context.Context, conn *sql.Conn) error {
	// A guard of an earlier Load on this connection would refuse the probe: take it off first.
	if err := conn.Raw(func(dc any) error {
		if r, ok := dc.(sqlite.AuthorizerRegisterer); ok {
			return r.RegisterAuthorizer(nil)
		}
		return nil
	}); err != nil {
		return err
	}
	if err := requireDefensive(ctx, conn); err != nil {
		return err
	}
	if _, err := sqlite.Limit(conn, sqlite3.SQLITE_LIMIT_ATTACHED, 0); err != nil {
		return fmt.Errorf("limit attached databases: %w", err)
	}
	return conn.Raw(func(dc any) error {
		r, ok := dc.(sqlite.AuthorizerRegisterer)
		if !ok {
			return fmt.Errorf("%w: the driver connection (%T) has no authorizer", ErrUnguarded, dc)
		}
		return r.RegisterAuthorizer(g.authorize)
	})
}

// requireDefensive checks that SQLITE_DBCONFIG_DEFENSIVE is on: there PRAGMA writable_schema=ON is
// a no-op. The probe runs before the authorizer is installed (it would refuse the PRAGMA).
func requireDefensive(ctx context.Context, conn *sql.Conn) error {
	if _, err := conn.ExecContext(ctx, "PRAGMA writable_schema=ON"); err != nil {
		return fmt.Errorf("probe defensive mode: %w", err)
	}
	var on int
	if err := conn.QueryRowContext(ctx, "PRAGMA writable_schema").Scan(&on); err != nil {
		return fmt.Errorf("probe defensive mode: %w", err)
	}
	if on != 0 {
		if _, err := conn.ExecContext(ctx, "PRAGMA writable_schema=OFF"); err != nil {
			return fmt.Errorf("probe defensive mode: %w", err)
		}
		return fmt.Errorf("%w: open the target with sqldump.OpenFile", ErrUnguarded)
	}
	return nil
}

// begin marks the start of a dump statement; end returns what the authorizer refused during it.
func (g *guard) begin() {
	g.mu.Lock()
	g.dump, g.denied = true, ""
	g.mu.Unlock()
}

func (g *guard) end() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.dump = false
	return g.denied
}

// mmapSize is how much of a restored file SQLite reads through a memory map instead of read(2).
// A load's index inserts and checks read pages at random, far more than the page cache holds, and
// through modernc.org/sqlite each read is a system call that costs more than the page's work: the
// map makes them memory reads (about a sixth of a restore's CPU, docs/D1.md). SQLite still writes
// with write(2), so the mapped pages are the file's clean pages in the OS cache (they count in the
// process's RSS, not in its heap). Where mapping fails SQLite reads as before.
const mmapSize = 1 << 30

// OpenFile opens (creating) the SQLite file at path as a restore target for Load: defensive mode is
// on from the first statement (writable_schema, journal_mode=OFF and writes to shadow tables or
// sqlite_dbpage are refused), the rollback journal is kept in memory (the target is a new file
// that is deleted if the load fails) and writes are not synced (the caller syncs the finished
// file). Pages are read through a memory map of up to mmapSize bytes of the file. The pool holds
// one connection.
func OpenFile(path string) (*sql.DB, error) {
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	db, err := sql.Open("sqlite", "file:"+esc+"?_defensive=1&_pragma=journal_mode(MEMORY)&_pragma=synchronous(OFF)"+
		fmt.Sprintf("&_pragma=mmap_size(%d)", mmapSize))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

// excerpt shortens untrusted SQL (or a name from it) for an error message: at most 40 characters,
// control and other non-printing characters shown as '?', so a hostile dump cannot put terminal
// escapes or a whole row into logs.
func excerpt(s string) string {
	const max = 40
	var b strings.Builder
	n := 0
	space := false
	for len(s) > 0 {
		r, size := utf8.DecodeRuneInString(s)
		s = s[size:]
		switch {
		case r == ' ' || r == '\t' || r == '\n' || r == '\r':
			if space || n == 0 {
				continue
			}
			space = true
			r = ' '
		case r == utf8.RuneError && size <= 1, !unicode.IsPrint(r):
			r, space = '?', false
		default:
			space = false
		}
		if n == max {
			return strings.TrimRight(b.String(), " ") + "…"
		}
		b.WriteRune(r)
		n++
	}
	return strings.TrimRight(b.String(), " ")
}
