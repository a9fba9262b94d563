package durableobject

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// Counts are what an object's export holds, counted line by line.
type Counts struct {
	KV, Tables, Rows, Schema, Sequences int64
}

// Decoder reads one object's export (cfbackup-do/1 or /2, an archive item) line by line: a header
// first, then kv, table, row, schema and seq lines that each parse as JSON, and an end line last. It
// is the one parser of the item format: a restore replays the lines it returns, test-restore checks
// them (DecodeItem).
type Decoder struct {
	br *bufio.Reader
	n  int
	// Header and End are the export's first and last lines once read; Counts the lines between.
	Header *Header
	End    *End
	Counts Counts
	// scratch holds a row line without its long base64 strings (validRow).
	scratch []byte
}

// NewDecoder reads an export from r.
func NewDecoder(r io.Reader) *Decoder {
	return newDecoderSize(r, 256<<10)
}

// newDecoderSize reads with a buffer of size bytes (at least 4 KiB): a small item needs no 256 KiB
// buffer, and a restore of many small objects would allocate and clear one per object.
func newDecoderSize(r io.Reader, size int) *Decoder {
	return &Decoder{br: bufio.NewReaderSize(r, max(size, 4096))}
}

// Next returns the next line, its newline included, after checking it; io.EOF after the last one.
func (d *Decoder) Next() ([]byte, error) {
	line, err := d.br.ReadBytes('\n')
	if err != nil && err != io.EOF {
		return nil, err // reading the item failed: not a fault of its format
	}
	if len(line) == 0 {
		return nil, io.EOF
	}
	d.n++
	if line[len(line)-1] != '\n' {
		return nil, itemErrorf("line %d is truncated (no newline)", d.n)
	}
	if d.End != nil {
		return nil, itemErrorf("line %d follows the end line", d.n)
	}
	if err := d.check(line); err != nil {
		return nil, err
	}
	return line, nil
}

// check parses one line and counts it.
func (d *Decoder) check(line []byte) error {
	if d.n > 1 && bytes.HasPrefix(line, rowPrefix) {
		// Most of an item, and all of a large one: checking the JSON once is enough (Unmarshal
		// checks it and then walks it again). A later "t" key would make it another line type for
		// the module; the counts it reports then differ from the end line's, which a restore checks.
		if !d.validRow(line) {
			return itemErrorf("line %d does not parse as JSON", d.n)
		}
		d.Counts.Rows++
		return nil
	}
	var l struct {
		T      string `json:"t"`
		Format string `json:"format"`
	}
	if err := json.Unmarshal(line, &l); err != nil {
		return itemErrorf("line %d does not parse as JSON: %v", d.n, err)
	}
	if d.n == 1 {
		var h Header
		if l.T != "header" || !KnownFormat(l.Format) || json.Unmarshal(line, &h) != nil {
			return itemErrorf("the export does not start with a %s or %s header", Format, FormatV1)
		}
		d.Header = &h
		return nil
	}
	switch l.T {
	case "kv":
		d.Counts.KV++
	case "table":
		d.Counts.Tables++
	case "row":
		d.Counts.Rows++
	case "schema":
		d.Counts.Schema++
	case "seq":
		d.Counts.Sequences++
	case "end":
		var e End
		if err := json.Unmarshal(line, &e); err != nil {
			return itemErrorf("bad end line: %v", err)
		}
		d.End = &e
	default:
		return itemErrorf("line %d has unknown type %q", d.n, l.T)
	}
	return nil
}

// validRow checks a row line's JSON. Its BLOBs' base64 strings of at least frameMin characters
// are checked as base64 characters only (no quote, backslash or control character, so they are
// valid string contents) and left out of the JSON check, which walks text 10 times slower.
func (d *Decoder) validRow(line []byte) bool {
	buf, last := d.scratch[:0], 0
	eachBlobString(line, func(s, e int) {
		if e-s >= frameMin && isBase64Text(line[s:e]) {
			buf = append(buf, line[last:s]...)
			last = e
		}
	})
	if last == 0 {
		return json.Valid(line)
	}
	buf = append(buf, line[last:]...)
	if cap(buf) <= 1<<20 {
		d.scratch = buf // kept for the next line while small
	}
	return json.Valid(buf)
}

// base64Chars marks the characters of standard base64 with its padding.
var base64Chars = func() (t [256]bool) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") {
		t[c] = true
	}
	return t
}()

func isBase64Text(b []byte) bool {
	for _, c := range b {
		if !base64Chars[c] {
			return false
		}
	}
	return true
}

// Complete checks that the export had its header and end line.
func (d *Decoder) Complete() error {
	switch {
	case d.Header == nil:
		return itemErrorf("the export does not start with a %s or %s header", Format, FormatV1)
	case d.End == nil:
		return itemErrorf("the export has no end line")
	}
	return nil
}

// DecodeItem reads a whole export and checks it: every line (Decoder), the header and end line
// present, and the end line's counts equal to the lines'.
func DecodeItem(r io.Reader) (Counts, End, error) {
	d := NewDecoder(r)
	for {
		if _, err := d.Next(); err == io.EOF {
			break
		} else if err != nil {
			return d.Counts, End{}, err
		}
	}
	if err := d.Complete(); err != nil {
		return d.Counts, End{}, err
	}
	c, e := d.Counts, *d.End
	if c.KV != e.KV || c.Tables != e.Tables || c.Rows != e.Rows || c.Schema != e.Schema || c.Sequences != e.Sequences {
		return c, e, itemErrorf("the export holds %d kv, %d table, %d row and %d schema line(s); its end line says %d, %d, %d, %d",
			c.KV, c.Tables, c.Rows, c.Schema, e.KV, e.Tables, e.Rows, e.Schema)
	}
	return c, e, nil
}

// ItemError is an export that does not decode: its lines, not the reading of them, are wrong.
type ItemError struct{ msg string }

func (e *ItemError) Error() string { return e.msg }

func itemErrorf(format string, a ...any) error { return &ItemError{msg: fmt.Sprintf(format, a...)} }
