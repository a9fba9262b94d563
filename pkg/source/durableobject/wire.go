package durableobject

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
)

// Binary framing ("bin1") moves large SQL BLOBs between cfbackup and the Worker as raw bytes, not
// base64 inside JSON: encoding and decoding base64 and JSON of megabytes in the Worker's JavaScript
// cost most of the time of a large object. The stored item does not change: cfbackup turns a framed
// export back into the NDJSON the module would have written, and frames an import chunk from it.
//
// In a framed body a 0x00 byte starts a frame: a 4-byte big-endian length n, then n raw bytes,
// which stand for their base64 (padded) in place. JSON text never holds a raw 0x00, so every other
// byte is text. The module frames only a row's BLOB values ({"$t":"ab","v":"<frame>"}).
//
// Negotiation: a module that speaks it says so in the WireHeader of every answer. cfbackup asks for
// a framed export in that header (an older module ignores it and answers NDJSON), and frames an import
// chunk (query wire=bin1, signed) only once the module said it speaks it, asking the object's info
// first when it does not know yet. A Worker with an older module is never sent a framed body.

// Wire is the framing cfbackup and the module speak besides plain NDJSON.
const Wire = "bin1"

// WireHeader carries Wire: in a request, "frame the export"; in an answer, "this module speaks it".
const WireHeader = "cfbackup-wire"

// FramedType is the content type of a framed export page.
const FramedType = "application/x-cfbackup-ndjson-framed"

// frameMin is the shortest base64 string an import frames (a frame of fewer bytes saves nothing).
const frameMin = 1024

// wire states: unknown until the module answered, then yes or no.
const (
	wireUnknown int32 = iota
	wireYes
	wireNo
)

// noteWire records from an answer's headers whether the module speaks the framing.
func (c *Client) noteWire(h http.Header) {
	if h.Get(WireHeader) == Wire {
		c.wire.Store(wireYes)
	} else {
		c.wire.CompareAndSwap(wireUnknown, wireNo)
	}
}

// wireOK reports whether an import may be framed, asking the object's info once when unknown.
func (c *Client) wireOK(ctx context.Context, class, id string) bool {
	if c.NoWire {
		return false
	}
	if c.wire.Load() == wireUnknown {
		_, _ = c.Info(ctx, class, id) // its answer's header settles it (noteWire)
	}
	return c.wire.Load() == wireYes
}

// unframe turns a framed export page back into NDJSON: each frame becomes the base64 of its bytes.
func unframe(b []byte) ([]byte, error) {
	if bytes.IndexByte(b, 0) < 0 {
		return b, nil
	}
	out := make([]byte, 0, len(b)+len(b)/3+64)
	for {
		z := bytes.IndexByte(b, 0)
		if z < 0 {
			return append(out, b...), nil
		}
		out = append(out, b[:z]...)
		if len(b) < z+5 {
			return nil, fmt.Errorf("%w: truncated frame in a framed export page", ErrFormat)
		}
		n := int(binary.BigEndian.Uint32(b[z+1 : z+5]))
		if n > len(b)-z-5 {
			return nil, fmt.Errorf("%w: truncated frame in a framed export page", ErrFormat)
		}
		out = base64.StdEncoding.AppendEncode(out, b[z+5:z+5+n])
		b = b[z+5+n:]
	}
}

var (
	strictB64 = base64.StdEncoding.Strict()
	rowPrefix = []byte(`{"t":"row",`) // how the module starts every row line (JSON.stringify keeps the key order)
	abPrefix  = []byte(`{"$t":"ab","v":"`)
)

// frameChunk frames an import chunk (whole NDJSON lines of an item): in every row line, each BLOB
// value {"$t":"ab","v":"<base64>"} whose base64 is at least frameMin long is replaced by a frame of
// its bytes. It reports false when nothing was framed. In valid JSON the prefix can only start an
// object (inside a string its quote would end the string), and a row's values are SQL values, whose
// only object with the tag "ab" is a BLOB (or text that is not UTF-8), so nothing else is touched.
func frameChunk(chunk []byte) ([]byte, bool) {
	var out []byte
	last := 0 // chunk[last:] is not yet in out
	for off := 0; off < len(chunk); {
		nl := bytes.IndexByte(chunk[off:], '\n')
		end := len(chunk)
		if nl >= 0 {
			end = off + nl + 1
		}
		line := chunk[off:end]
		if bytes.HasPrefix(line, rowPrefix) {
			eachBlobString(line, func(s, p int) {
				q := p - s
				if q < frameMin {
					return
				}
				raw, err := strictB64.AppendDecode(nil, line[s:p])
				if err != nil || base64.StdEncoding.EncodedLen(len(raw)) != q {
					return // not canonical base64 (it would not come back byte for byte): sent as text
				}
				if out == nil {
					out = make([]byte, 0, len(chunk))
				}
				out = append(out, chunk[last:off+s]...)
				out = append(out, 0)
				out = binary.BigEndian.AppendUint32(out, uint32(len(raw)))
				out = append(out, raw...)
				last = off + p
			})
		}
		off = end
	}
	if out == nil {
		return chunk, false
	}
	return append(out, chunk[last:]...), true
}

// eachBlobString calls fn with the bounds line[s:e] of every BLOB value's string in a row line
// ({"$t":"ab","v":"<s…e>"}), in order; e is the closing quote.
func eachBlobString(line []byte, fn func(s, e int)) {
	for p := 0; ; {
		i := bytes.Index(line[p:], abPrefix)
		if i < 0 {
			return
		}
		s := p + i + len(abPrefix)
		q := bytes.IndexByte(line[s:], '"')
		if q < 0 {
			return
		}
		p = s + q
		fn(s, p)
	}
}

// importBody is a chunk as sent: framed (true) when the module speaks the framing and the chunk
// has BLOBs to frame; then its query must say wire=bin1.
func (c *Client) importBody(ctx context.Context, class, id string, chunk []byte) ([]byte, bool) {
	if c.NoWire || c.wire.Load() == wireNo {
		return chunk, false
	}
	framed, ok := frameChunk(chunk)
	if !ok || !c.wireOK(ctx, class, id) {
		return chunk, false
	}
	return framed, true
}

// readExport reads an export answer's body as NDJSON (at most limit bytes as sent), unframed when
// the module framed it. It reads into one buffer of the announced length: io.ReadAll would grow its
// buffer by doubling and clear every new one, several times the page's size for a page of megabytes.
func readExport(resp *http.Response, limit int64) ([]byte, error) {
	var b []byte
	if n := resp.ContentLength; n >= 0 && n <= limit {
		b = make([]byte, n)
		if _, err := io.ReadFull(resp.Body, b); err != nil {
			return nil, err
		}
	} else {
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(io.LimitReader(resp.Body, limit+1)); err != nil {
			return nil, err
		}
		b = buf.Bytes()
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: export page larger than %d bytes", ErrFormat, limit)
	}
	if resp.Header.Get("content-type") != FramedType {
		return b, nil
	}
	return unframe(b)
}

// pageBody hands an export page read by readExport to the request's reader without a copy.
type pageBody struct {
	*bytes.Reader
	b []byte
}

// readPage is the whole body a request's reader was given: the page itself when it is a pageBody.
func readPage(r io.Reader, limit int64) ([]byte, error) {
	if p, ok := r.(*pageBody); ok {
		return p.b, nil
	}
	return io.ReadAll(io.LimitReader(r, limit+1))
}
