// Package cdc cuts a byte stream into content-defined chunks (FastCDC with a gear rolling hash and
// normalised chunking), so that a small change in a large stream — a few rows updated in a table's
// SQL dump — changes only the chunks around it: the boundaries elsewhere are found again at the same
// content, and an incremental backup stores only the chunks it has not stored before.
//
// The gear table is derived from a fixed label, not from any key: boundaries only decide what
// deduplicates, never what is readable, and a keyed table would give another repository (or a new
// writer secret) no chunks in common. Chunk identity is keyed (pkg/archive ChunkID), boundaries
// are not. Changing the table or the parameters costs one full backup, never correctness.
package cdc

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"math/bits"
)

// Params bound chunk sizes: no chunk is shorter than Min (except the stream's last) or longer than
// Max, and cut points fall on average about every Avg bytes. Avg must be a power of two.
type Params struct {
	Min, Avg, Max int
}

// Default is what D1 table dumps use: chosen by measurement (docs/D1.md "The trade-off in the
// chunk size"): small enough that a row changed here and there rewrites little, large enough that
// each chunk's own cost (a tar header and LZ4 frame, an index entry, an entry in a list chunk)
// stays small. Chunk lists (docs/FORMAT.md) keep an unchanged backup's metadata from growing with
// the number of chunks, which is what made the earlier 16 KiB average necessary.
var Default = Params{Min: 1 << 10, Avg: 4 << 10, Max: 16 << 10}

// Check reports whether p is usable.
func (p Params) Check() error {
	if p.Min <= 0 || p.Avg <= p.Min || p.Max <= p.Avg || bits.OnesCount(uint(p.Avg)) != 1 {
		return errors.New("cdc: need 0 < Min < Avg < Max with Avg a power of two")
	}
	return nil
}

var gear = func() (g [256]uint64) {
	for i := range g {
		s := sha256.Sum256([]byte{'c', 'f', 'b', 'a', 'c', 'k', 'u', 'p', ' ', 'c', 'd', 'c', ' ', 'v', '1', byte(i)})
		g[i] = binary.LittleEndian.Uint64(s[:8])
	}
	return g
}()

// masks: FastCDC's normalised chunking, level 2: before Avg a cut needs 2 more zero bits (rarer),
// after it 2 fewer (likelier), which narrows the spread of sizes around Avg. The bits are the hash's
// highest, which depend on the last 64 bytes seen (the gear hash shifts left once per byte).
func masks(avg int) (small, large uint64) {
	b := bits.TrailingZeros(uint(avg))
	top := func(n int) uint64 { return ^uint64(0) << (64 - n) }
	return top(b + 2), top(max(b-2, 1))
}

// Cut returns the length of the first chunk of data, which holds everything left of the stream
// when final (otherwise at least Max bytes must be given, or all that is left).
func (p Params) Cut(data []byte) int {
	n := len(data)
	if n <= p.Min {
		return n
	}
	if n > p.Max {
		n = p.Max
	}
	normal := min(p.Avg, n)
	ms, ml := masks(p.Avg)
	var h uint64
	i := p.Min
	for ; i < normal; i++ {
		h = h<<1 + gear[data[i]]
		if h&ms == 0 {
			return i + 1
		}
	}
	for ; i < n; i++ {
		h = h<<1 + gear[data[i]]
		if h&ml == 0 {
			return i + 1
		}
	}
	return n
}

// Chunker reads a stream and returns its chunks one by one, holding at most 2×Max bytes.
type Chunker struct {
	r          io.Reader
	p          Params
	buf        []byte
	start, end int
	eof        bool
}

// New returns a Chunker over r. It panics on unusable params (a programming error: see Check).
func New(r io.Reader, p Params) *Chunker {
	if err := p.Check(); err != nil {
		panic(err)
	}
	return &Chunker{r: r, p: p, buf: make([]byte, 2*p.Max)}
}

// Next returns the next chunk, valid until the following call, or io.EOF after the last one. A
// read error of the underlying reader is returned as is, at once: the item is lost anyway.
func (c *Chunker) Next() ([]byte, error) {
	if c.end-c.start < c.p.Max && !c.eof {
		if err := c.fill(); err != nil {
			return nil, err
		}
	}
	if c.start == c.end {
		return nil, io.EOF
	}
	data := c.buf[c.start:c.end]
	n := c.p.Cut(data)
	c.start += n
	return data[:n], nil
}

func (c *Chunker) fill() error {
	copy(c.buf, c.buf[c.start:c.end])
	c.end -= c.start
	c.start = 0
	for c.end < len(c.buf) && !c.eof {
		k, err := c.r.Read(c.buf[c.end:])
		c.end += k
		if err == io.EOF {
			c.eof = true
		} else if err != nil {
			return err
		}
	}
	return nil
}
