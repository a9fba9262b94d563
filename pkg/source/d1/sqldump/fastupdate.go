package sqldump

import "strings"

// A snapshot's fixups (pkg/source/d1/fixups.go) are one UPDATE per row whose values D1's export
// rounds: `UPDATE t SET c = v[, …] WHERE k = v[ AND …];`, tens of thousands in a large table, and
// compiled one by one they cost as much as the table's INSERTs. splitUpdate turns such a statement
// into a template with the values as parameters, run through the insert cache's prepared
// statements like a literal INSERT (one statement at a time: an UPDATE is never batched). A value
// is a literal splitInsert binds, or CAST(X'…' AS TEXT) (how fixups write exact text), which
// becomes CAST(? AS TEXT) bound to the same bytes: the expression, its affinity and the comparison
// rules stay what they were, only the constant moved into a parameter.

// splitUpdate parses `UPDATE name SET col = v[, col = v…] WHERE col = v[ AND col = v…];` strictly
// and returns its template (each v replaced by ? or CAST(? AS TEXT)) and the values appended to
// args. Anything else (an expression, a comment, another clause) returns ok false: the statement
// runs as text.
func splitUpdate(s string, args []any) (tmpl string, out []any, ok bool) {
	p := &litParser{s: s}
	if !p.word("UPDATE") || !p.ident() {
		return "", args, false
	}
	var b strings.Builder
	b.Grow(len(s))
	b.WriteString(s[:p.i])
	if !p.word("SET") {
		return "", args, false
	}
	b.WriteString(" SET ")
	if args, ok = p.assignments(&b, args, ","); !ok || !p.word("WHERE") {
		return "", args, false
	}
	b.WriteString(" WHERE ")
	if args, ok = p.assignments(&b, args, "AND"); !ok {
		return "", args, false
	}
	p.space()
	if p.peek() != ';' {
		return "", args, false
	}
	p.i++
	p.space()
	if p.i != len(s) {
		return "", args, false
	}
	return b.String(), args, true
}

// assignments parses `col = v` terms separated by sep ("," or the word AND) into b.
func (p *litParser) assignments(b *strings.Builder, args []any, sep string) ([]any, bool) {
	for n := 0; ; n++ {
		if n > 0 {
			if sep == "," {
				b.WriteString(", ")
			} else {
				b.WriteString(" AND ")
			}
		}
		p.space()
		start := p.i
		if !p.ident() {
			return args, false
		}
		b.WriteString(p.s[start:p.i])
		p.space()
		if p.peek() != '=' {
			return args, false
		}
		p.i++
		b.WriteString(" = ")
		v, cast, ok := p.value()
		if !ok || len(args) == maxBoundColumns {
			return args, false
		}
		if cast {
			b.WriteString("CAST(? AS TEXT)")
		} else {
			b.WriteByte('?')
		}
		args = append(args, v)
		p.space()
		if sep == "," && p.peek() == ',' {
			p.i++
			continue
		}
		if sep == "AND" && p.word("AND") {
			continue
		}
		return args, true
	}
}

// value parses a literal, or CAST(X'…' AS TEXT) (cast true, v the blob's bytes).
func (p *litParser) value() (v any, cast, ok bool) {
	p.space()
	if c := p.peek(); c != 'C' && c != 'c' {
		v, ok = p.literal()
		return v, false, ok
	}
	if !p.word("CAST") {
		return nil, false, false
	}
	p.space()
	if p.peek() != '(' {
		return nil, false, false
	}
	p.i++
	p.space()
	if c := p.peek(); c != 'X' && c != 'x' {
		return nil, false, false
	}
	v, ok = p.blob()
	if !ok || !p.word("AS") || !p.word("TEXT") {
		return nil, false, false
	}
	p.space()
	if p.peek() != ')' {
		return nil, false, false
	}
	p.i++
	return v, true, true
}
