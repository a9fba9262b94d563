package cftest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
)

// MaxStatementBytes is D1's per-statement size limit; the emulator enforces it on
// imports so a dump that would fail on Cloudflare fails here too.
const MaxStatementBytes = 100_000

// ErrStatementTooLong reports a statement over MaxStatementBytes.
var ErrStatementTooLong = errors.New("statement too long")

// splitter cuts a stream of SQL text into complete statements the way
// sqlite3_complete() decides completeness: semicolons inside quotes, comments
// and CREATE TRIGGER … BEGIN … END bodies do not end a statement. It reads from
// a bufio.Reader so arbitrarily large dumps are processed in bounded memory.
type splitter struct {
	r     *bufio.Reader
	limit int
}

func newSplitter(r io.Reader, limit int) *splitter {
	return &splitter{r: bufio.NewReaderSize(r, 64<<10), limit: limit}
}

// trigger-tracking states, after sqlite3_complete's state machine.
const (
	stNormal  = iota // inside an ordinary statement
	stCreate         // saw CREATE (optionally TEMP)
	stTrigger        // inside CREATE TRIGGER
	stSemi           // inside trigger, just after ';'
	stEnd            // inside trigger, saw '; END'
)

// next returns the next statement without its terminating ';' and trimmed, or
// io.EOF. A trailing statement without ';' is returned too.
func (s *splitter) next() (string, error) {
	var b strings.Builder
	state := stNormal
	words := 0 // words seen in this statement (CREATE must be the first)
	var word strings.Builder
	flushWord := func() {
		if word.Len() == 0 {
			return
		}
		w := strings.ToUpper(word.String())
		word.Reset()
		words++
		switch state {
		case stNormal:
			if words == 1 && w == "CREATE" {
				state = stCreate
			}
		case stCreate:
			switch w {
			case "TEMP", "TEMPORARY":
			case "TRIGGER":
				state = stTrigger
			default:
				state = stNormal
			}
		case stSemi:
			if w == "END" {
				state = stEnd
			} else {
				state = stTrigger
			}
		case stEnd:
			state = stTrigger
		}
	}
	add := func(r rune) error {
		b.WriteRune(r)
		if s.limit > 0 && b.Len() > s.limit {
			return fmt.Errorf("%w: a statement exceeds D1's limit of %d bytes (SQLITE_TOOBIG)", ErrStatementTooLong, s.limit)
		}
		return nil
	}
	for {
		r, _, err := s.r.ReadRune()
		if err == io.EOF {
			flushWord()
			if st := strings.TrimSpace(b.String()); st != "" {
				return st, nil
			}
			return "", io.EOF
		}
		if err != nil {
			return "", err
		}
		switch {
		case r == '\'' || r == '"' || r == '`' || r == '[':
			flushWord()
			if state == stSemi || state == stEnd {
				state = stTrigger
			}
			closer := r
			if r == '[' {
				closer = ']'
			}
			if err := add(r); err != nil {
				return "", err
			}
			for {
				c, _, err := s.r.ReadRune()
				if err != nil {
					return "", fmt.Errorf("unterminated quoted text: %w", io.ErrUnexpectedEOF)
				}
				if err := add(c); err != nil {
					return "", err
				}
				if c == closer {
					break
				}
			}
		case r == '-':
			flushWord()
			if p, _ := s.r.Peek(1); len(p) == 1 && p[0] == '-' {
				// line comment: skip to end of line
				for {
					c, _, err := s.r.ReadRune()
					if err != nil || c == '\n' {
						break
					}
				}
				if err := add('\n'); err != nil {
					return "", err
				}
				continue
			}
			if err := add(r); err != nil {
				return "", err
			}
		case r == '/':
			flushWord()
			if p, _ := s.r.Peek(1); len(p) == 1 && p[0] == '*' {
				_, _ = s.r.ReadByte()
				prev := rune(0)
				for {
					c, _, err := s.r.ReadRune()
					if err != nil {
						break
					}
					if prev == '*' && c == '/' {
						break
					}
					prev = c
				}
				if err := add(' '); err != nil {
					return "", err
				}
				continue
			}
			if err := add(r); err != nil {
				return "", err
			}
		case r == ';':
			flushWord()
			switch state {
			case stTrigger, stSemi:
				state = stSemi
			case stEnd:
				state = stNormal
				if st := strings.TrimSpace(b.String()); st != "" {
					return st, nil
				}
				continue
			default:
				if st := strings.TrimSpace(b.String()); st != "" {
					return st, nil
				}
				b.Reset()
				words = 0
				continue
			}
			if err := add(r); err != nil {
				return "", err
			}
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || r == '$':
			word.WriteRune(r)
			if err := add(r); err != nil {
				return "", err
			}
		default:
			flushWord()
			if err := add(r); err != nil {
				return "", err
			}
		}
	}
}

// splitSQL splits a complete SQL string into statements.
func splitSQL(sql string) ([]string, error) {
	s := newSplitter(strings.NewReader(sql), 0)
	var out []string
	for {
		st, err := s.next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
}
