package s3api

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash"
	"hash/crc32"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// bufsReader is one request body made of several buffers back to back (a single PUT of an object
// read into part buffers), seekable so that the SDK can rewind it for a retry.
type bufsReader struct {
	bufs [][]byte
	size int64
	off  int64
}

func newBufsReader(bufs [][]byte) *bufsReader {
	r := &bufsReader{bufs: bufs}
	for _, b := range bufs {
		r.size += int64(len(b))
	}
	return r
}

func (r *bufsReader) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	n := 0
	start := int64(0)
	for _, b := range r.bufs {
		end := start + int64(len(b))
		if r.off < end && n < len(p) {
			m := copy(p[n:], b[r.off-start:])
			n += m
			r.off += int64(m)
		}
		start = end
	}
	return n, nil
}

func (r *bufsReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		offset += r.size
	}
	if offset < 0 {
		return 0, errors.New("s3api: seek before the start of the body")
	}
	r.off = offset
	return offset, nil
}

// sumBufs writes every buffer to h.
func sumBufs(h hash.Hash, bufs [][]byte) []byte {
	for _, b := range bufs {
		h.Write(b)
	}
	return h.Sum(nil)
}

// crc32cBufs is CRC32C over the buffers back to back, as an x-amz-checksum-crc32c value.
func crc32cBufs(bufs [][]byte) *string {
	var c uint32
	for _, b := range bufs {
		c = crc32.Update(c, castagnoli, b)
	}
	var s [4]byte
	binary.BigEndian.PutUint32(s[:], c)
	return aws.String(base64.StdEncoding.EncodeToString(s[:]))
}

// md5Bufs is the Content-MD5 of the buffers back to back.
func md5Bufs(bufs [][]byte) *string {
	return aws.String(base64.StdEncoding.EncodeToString(sumBufs(md5.New(), bufs)))
}

// sha256Bufs is the SHA-256 of the buffers back to back.
func sha256Bufs(bufs [][]byte) []byte { return sumBufs(sha256.New(), bufs) }
