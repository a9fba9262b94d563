package durableobject

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// Header is the first line of an object's export.
type Header struct {
	T       string `json:"t"`
	Format  string `json:"format"`
	ID      string `json:"id"`
	Backend string `json:"backend"`
	Alarm   *int64 `json:"alarm"`
	Time    int64  `json:"time"`
	// Name is the name the object was created from (idFromName), when the module knows it.
	Name string `json:"name,omitempty"`
}

// End is the last line of an object's export: how much it holds, and (format 2) what cannot be
// restored as it is: Unrestorable counts such values, Warnings names the first of them.
type End struct {
	T            string `json:"t"`
	KV           int64  `json:"kv"`
	Tables       int64  `json:"tables"`
	Rows         int64  `json:"rows"`
	Schema       int64  `json:"schema"`
	Sequences    int64  `json:"sequences,omitempty"`
	Unrestorable int64  `json:"unrestorable,omitempty"`
	// FKCycle: foreign keys form a cycle or reference their own table. An import in several chunks
	// checks foreign keys per chunk, so such an object restores only while its item fits one chunk.
	FKCycle  bool     `json:"fk_cycle,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

// maxPage caps one page's body: PageBytes plus one oversized line (a 2 MB value, base64-tagged).
const maxPage = 64 << 20

// Page is one export page: Data holds its NDJSON lines (the end line included, the continuation line
// not); Next is the cursor of the following page, "" on the last one, where End is set.
type Page struct {
	Data []byte
	Next string
	End  *End
	// Header is the export's header line (first page only).
	Header *Header
}

// ExportPage fetches one page of an object's export (cursor "" for the first).
func (c *Client) ExportPage(ctx context.Context, class, id, cursor string) (Page, error) {
	var p Page
	err := c.do(ctx, 0, http.MethodGet, class, id, "export", c.exportQuery(cursor), nil, func(r io.Reader) error {
		b, err := readPage(r, maxPage)
		if err != nil {
			return err
		}
		if len(b) > maxPage {
			return fmt.Errorf("%w: export page larger than %d bytes", ErrFormat, maxPage)
		}
		p, err = parsePage(b, cursor == "")
		return err
	})
	return p, err
}

// name is the object's name from the first page's header ("" when the module did not know it).
func (p Page) name() string {
	if p.Header == nil {
		return ""
	}
	return p.Header.Name
}

func parsePage(b []byte, first bool) (Page, error) {
	if len(b) == 0 || b[len(b)-1] != '\n' {
		return Page{}, fmt.Errorf("%w: export page is truncated (no final newline)", ErrFormat)
	}
	var hdr *Header
	if first {
		nl := bytes.IndexByte(b, '\n')
		var h Header
		if err := json.Unmarshal(b[:nl], &h); err != nil || h.T != "header" {
			return Page{}, fmt.Errorf("%w: export does not start with a header line", ErrFormat)
		}
		if !KnownFormat(h.Format) {
			return Page{}, fmt.Errorf("%w: export format %q, this cfbackup reads %q and %q: update the Worker module or cfbackup", ErrFormat, h.Format, Format, FormatV1)
		}
		hdr = &h
	}
	start := bytes.LastIndexByte(b[:len(b)-1], '\n') + 1
	var ctl struct {
		T      string `json:"t"`
		Cursor string `json:"cursor"`
	}
	if err := json.Unmarshal(b[start:], &ctl); err != nil {
		return Page{}, fmt.Errorf("%w: bad last line: %v", ErrFormat, err)
	}
	switch ctl.T {
	case "next":
		if ctl.Cursor == "" {
			return Page{}, fmt.Errorf("%w: continuation without a cursor", ErrFormat)
		}
		return Page{Data: b[:start], Next: ctl.Cursor, Header: hdr}, nil
	case "end":
		var e End
		if err := json.Unmarshal(b[start:], &e); err != nil {
			return Page{}, fmt.Errorf("%w: bad end line: %v", ErrFormat, err)
		}
		return Page{Data: b, End: &e, Header: hdr}, nil
	}
	return Page{}, fmt.Errorf("%w: page ends with %q, not next or end", ErrFormat, ctl.T)
}

// Export writes an object's whole export to w, page by page (memory: one page).
func (c *Client) Export(ctx context.Context, class, id string, w io.Writer) (End, error) {
	cursor := ""
	for {
		p, err := c.ExportPage(ctx, class, id, cursor)
		if err != nil {
			return End{}, err
		}
		if _, err := w.Write(p.Data); err != nil {
			return End{}, err
		}
		if p.End != nil {
			return *p.End, nil
		}
		cursor = p.Next
	}
}

// pagesReader streams an export that did not fit in its first page, fetching the rest on demand.
// While one page is read, the next one is already being fetched: the Worker writes page n+1 while
// cfbackup compresses and encrypts page n (memory: two pages).
type pagesReader struct {
	ctx       context.Context
	c         *Client
	class, id string
	buf       []byte
	next      string
	end       *End
	onPage    func(int)
	err       error
	ahead     chan pageResult // the page of cursor next, being fetched; nil when none is
}

type pageResult struct {
	p   Page
	err error
}

// fetch starts fetching the page of cursor next.
func (r *pagesReader) fetch() {
	ch := make(chan pageResult, 1) // never blocks: an abandoned fetch ends on its own
	r.ahead = ch
	ctx, c, class, id, cursor := r.ctx, r.c, r.class, r.id, r.next
	go func() {
		p, err := c.ExportPage(ctx, class, id, cursor)
		ch <- pageResult{p, err}
	}()
}

func (r *pagesReader) Read(b []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.next == "" {
			return 0, io.EOF
		}
		if r.ahead == nil {
			r.fetch()
		}
		res := <-r.ahead
		r.ahead = nil
		if res.err != nil {
			r.err = res.err
			return 0, res.err
		}
		p := res.p
		r.buf, r.next, r.end = p.Data, p.Next, p.End
		if r.next != "" {
			r.fetch()
		}
		if r.onPage != nil {
			r.onPage(len(p.Data))
		}
	}
	n := copy(b, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}
