package sqldump

import "strings"

// lexer is a tiny SQL tokenizer over one statement, used only to read the first few tokens
// (kind, object name, target table); it never looks at the VALUES of an INSERT.
type lexer struct {
	s      string
	i      int
	schema string // schema part of the last name() read, unquoted ("" if unqualified)
}

type tok struct {
	text   string // keyword upper-cased, identifier unquoted, or the punctuation byte
	word   bool   // bare word (keyword or unquoted identifier)
	quoted bool   // "…", […], `…` or '…'
}

func (l *lexer) next() (tok, bool) {
	for l.i < len(l.s) {
		c := l.s[l.i]
		switch {
		case c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v':
			l.i++
		case c == '-' && strings.HasPrefix(l.s[l.i:], "--"):
			j := strings.IndexByte(l.s[l.i:], '\n')
			if j < 0 {
				l.i = len(l.s)
			} else {
				l.i += j + 1
			}
		case c == '/' && strings.HasPrefix(l.s[l.i:], "/*"):
			j := strings.Index(l.s[l.i+2:], "*/")
			if j < 0 {
				l.i = len(l.s)
			} else {
				l.i += j + 4
			}
		case c == '"' || c == '\'' || c == '`' || c == '[':
			q := c
			if c == '[' {
				q = ']'
			}
			if k := strings.IndexByte(l.s[l.i+1:], q); k >= 0 {
				end := l.i + 1 + k
				if q == ']' || end+1 >= len(l.s) || l.s[end+1] != q { // no doubled quote: no copy
					t := tok{text: l.s[l.i+1 : end], quoted: true}
					l.i = end + 1
					return t, true
				}
			}
			var b strings.Builder
			j := l.i + 1
			for {
				k := strings.IndexByte(l.s[j:], q)
				if k < 0 {
					b.WriteString(l.s[j:])
					l.i = len(l.s)
					return tok{text: b.String(), quoted: true}, true
				}
				b.WriteString(l.s[j : j+k])
				j += k + 1
				if q != ']' && j < len(l.s) && l.s[j] == q {
					b.WriteByte(q)
					j++
					continue
				}
				break
			}
			l.i = j
			return tok{text: b.String(), quoted: true}, true
		case identChar[c]:
			j := l.i + 1
			for j < len(l.s) && identChar[l.s[j]] {
				j++
			}
			w := l.s[l.i:j]
			l.i = j
			return tok{text: w, word: true}, true
		default:
			l.i++
			return tok{text: string(c)}, true
		}
	}
	return tok{}, false
}

// is reports whether t is the keyword kw (kw upper case).
func (t tok) is(kw string) bool { return t.word && strings.EqualFold(t.text, kw) }

// name reads a possibly schema-qualified object name and returns its last part, unquoted.
func (l *lexer) name() string {
	t, ok := l.next()
	if !ok {
		return ""
	}
	n := t.text
	save := l.i
	l.schema = ""
	if d, ok := l.next(); ok && d.text == "." && !d.quoted {
		if t2, ok := l.next(); ok {
			l.schema = n
			return t2.text
		}
	}
	l.i = save
	return n
}

// skipIfExists consumes "IF EXISTS" when present.
func (l *lexer) skipIfExists() {
	save := l.i
	if t, ok := l.next(); ok && t.is("IF") {
		l.next()
		return
	}
	l.i = save
}

// skipIfNotExists consumes "IF NOT EXISTS" when present.
func (l *lexer) skipIfNotExists() {
	save := l.i
	if t, ok := l.next(); ok && t.is("IF") {
		l.next()
		l.next()
		return
	}
	l.i = save
}

func classify(st *Statement) {
	l := &lexer{s: st.SQL}
	t, ok := l.next()
	if !ok || !t.word {
		return
	}
	switch strings.ToUpper(t.text) {
	case "PRAGMA":
		st.Kind = Pragma
	case "BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE":
		st.Kind = Transaction
	case "INSERT", "REPLACE":
		for {
			t, ok := l.next()
			if !ok {
				return
			}
			if t.is("INTO") {
				break
			}
		}
		st.Kind = Insert
		st.Table = l.name()
		st.Schema = l.schema
	case "DELETE":
		if t, _ := l.next(); t.is("FROM") {
			st.Kind = Delete
			st.Table = l.name()
			st.Schema = l.schema
		}
	case "CREATE":
		t, _ := l.next()
		if t.is("TEMP") || t.is("TEMPORARY") {
			t, _ = l.next()
		}
		switch {
		case t.is("TABLE"):
			st.Kind = CreateTable
			l.skipIfNotExists()
			st.Name = l.name()
			st.Schema = l.schema
			st.Table = st.Name
		case t.is("VIRTUAL"):
			if t, _ := l.next(); t.is("TABLE") {
				st.Kind = CreateVirtualTable
				l.skipIfNotExists()
				st.Name = l.name()
				st.Schema = l.schema
				st.Table = st.Name
			}
		case t.is("UNIQUE") || t.is("INDEX"):
			if t.is("UNIQUE") {
				l.next()
			}
			st.Kind = CreateIndex
			l.skipIfNotExists()
			st.Name = l.name()
			st.Schema = l.schema
			if t, _ := l.next(); t.is("ON") {
				st.Table = l.name()
			}
		case t.is("VIEW"):
			st.Kind = CreateView
			l.skipIfNotExists()
			st.Name = l.name()
			st.Schema = l.schema
		case t.is("TRIGGER"):
			st.Kind = CreateTrigger
			l.skipIfNotExists()
			st.Name = l.name()
			st.Schema = l.schema
			for n := 0; n < 200; n++ { // BEFORE|AFTER|INSTEAD OF, event, UPDATE OF cols…, ON
				t, ok := l.next()
				if !ok {
					break
				}
				if t.is("ON") {
					st.Table = l.name()
					break
				}
			}
		}
	}
}
