package kv

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/errclass"
)

// An "entries" item holds a batch of pairs of one namespace (docs/KV.md "Item format"), each as
//
//	{"key":K,"expiration":E,"metadata":M,"size":N,"sha256":H} "\n" <N value bytes> "\n"
//
// with expiration (Unix seconds) and metadata (raw JSON as the API returned it) left out when the
// key has none, and H the hex SHA-256 of the value. Values are raw bytes (binary-safe); key names and
// metadata exist only here, inside the age-encrypted segments.

// Entry is one pair's header.
type Entry struct {
	Key        string          `json:"key"`
	Expiration int64           `json:"expiration,omitempty"`
	Metadata   json.RawMessage `json:"metadata,omitempty"`
	Size       int64           `json:"size"`
	SHA256     string          `json:"sha256"`
}

// maxHeader bounds a header line when reading (a key is at most 512 bytes and metadata 1024, both
// escaped at most 6×): a hostile item cannot make a reader allocate more (invariant 9).
const maxHeader = 64 << 10

// ErrFormat: an entries item does not decode, or a value does not match its recorded size or hash.
var ErrFormat = errclass.New(errclass.Integrity, "malformed KV entries item")

// appendEntry appends one record to buf.
func appendEntry(buf *bytes.Buffer, key string, exp int64, meta json.RawMessage, value []byte) error {
	sum := sha256.Sum256(value)
	e := Entry{Key: key, Expiration: exp, Metadata: meta, Size: int64(len(value)), SHA256: hex.EncodeToString(sum[:])}
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil { // Encode ends the line
		return fmt.Errorf("encode the entry of a KV key: %w", err)
	}
	buf.Write(value)
	buf.WriteByte('\n')
	return nil
}

// ReadEntries decodes an entries item, calling fn with each header and a reader of exactly its value
// (fn may leave it unread). Each value's size and SHA-256 are checked, whether fn reads it or not.
func ReadEntries(r io.Reader, fn func(e Entry, value io.Reader) error) (int, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	n := 0
	for {
		line, err := readLine(br)
		if err == io.EOF && len(line) == 0 {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("%w: entry %d: %v", ErrFormat, n+1, err)
		}
		var e Entry
		dec := json.NewDecoder(bytes.NewReader(line))
		if err := dec.Decode(&e); err != nil {
			return n, fmt.Errorf("%w: entry %d: header: %v", ErrFormat, n+1, err)
		}
		if e.Key == "" || len(e.Key) > cloudflare.KVMaxKeyBytes || !utf8.ValidString(e.Key) || e.Size < 0 || e.Size > cloudflare.KVMaxValueBytes ||
			len(e.SHA256) != 64 || len(e.Metadata) > 16*cloudflare.KVMaxMetadataBytes || (len(e.Metadata) > 0 && !json.Valid(e.Metadata)) {
			return n, fmt.Errorf("%w: entry %d: header out of bounds", ErrFormat, n+1)
		}
		h := sha256.New()
		v := &io.LimitedReader{R: io.TeeReader(br, h), N: e.Size}
		// The tee hashes what fn reads; the rest is drained (and hashed) below.
		if err := fn(e, v); err != nil {
			return n, err
		}
		if _, err := io.Copy(io.Discard, v); err != nil {
			return n, fmt.Errorf("%w: entry %d: value: %v", ErrFormat, n+1, err)
		}
		if v.N != 0 {
			return n, fmt.Errorf("%w: entry %d: value shorter than its size", ErrFormat, n+1)
		}
		if nl, err := br.ReadByte(); err != nil || nl != '\n' {
			return n, fmt.Errorf("%w: entry %d: no newline after the value", ErrFormat, n+1)
		}
		if hex.EncodeToString(h.Sum(nil)) != e.SHA256 {
			return n, fmt.Errorf("%w: entry %d: value does not match its SHA-256", ErrFormat, n+1)
		}
		n++
	}
}

// readLine reads one header line (without its newline), at most maxHeader bytes.
func readLine(br *bufio.Reader) ([]byte, error) {
	var out []byte
	for {
		chunk, err := br.ReadSlice('\n')
		out = append(out, chunk...)
		if len(out) > maxHeader {
			return nil, errors.New("header line too long")
		}
		if err == nil {
			return out[:len(out)-1], nil
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF && len(out) > 0 {
			return out, io.ErrUnexpectedEOF
		}
		return out, err
	}
}

// ReadAbsent decodes an "absent" item: one JSON string (a key name) per line.
func ReadAbsent(r io.Reader, fn func(key string) error) (int, error) {
	br := bufio.NewReaderSize(r, 4<<10)
	n := 0
	for {
		line, err := readLine(br)
		if err == io.EOF && len(line) == 0 {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("%w: absent key %d: %v", ErrFormat, n+1, err)
		}
		var k string
		if err := json.Unmarshal(line, &k); err != nil || k == "" || len(k) > cloudflare.KVMaxKeyBytes || !utf8.ValidString(k) {
			return n, fmt.Errorf("%w: absent key %d is not a key name", ErrFormat, n+1)
		}
		if err := fn(k); err != nil {
			return n, err
		}
		n++
	}
}
