package s3server

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync"
)

// ChecksumTransport sits between an S3 client and the server to test request checksums: it records
// the checksum each PUT (object or part) carries, can damage the next PUT body on its way (the
// server must refuse it), and can refuse CRC32C the way R2 did before it supported CRC headers (501
// NotImplemented, or a 400 InvalidArgument naming the header).
type ChecksumTransport struct {
	Delegate http.RoundTripper // default http.DefaultTransport

	mu      sync.Mutex
	seen    []string
	corrupt bool
	refuse  int  // 0, http.StatusNotImplemented or http.StatusBadRequest
	create  bool // refuse a multipart create that declares CRC32C too
	refused int
}

// Seen lists "crc32c", "sha256", "md5" or "none" per PUT that reached the server.
func (ct *ChecksumTransport) Seen() string {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	return strings.Join(ct.seen, " ")
}

// Refused is how many requests were answered with a refusal of CRC32C.
func (ct *ChecksumTransport) Refused() int {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	return ct.refused
}

// CorruptNext flips one byte of the next PUT body.
func (ct *ChecksumTransport) CorruptNext() {
	ct.mu.Lock()
	ct.corrupt = true
	ct.mu.Unlock()
}

// RefuseCRC32C makes every request carrying a CRC32C header get status (501 or 400) from now on, and
// with create also a multipart create that declares CRC32C; status 0 stops it.
func (ct *ChecksumTransport) RefuseCRC32C(status int, create bool) {
	ct.mu.Lock()
	ct.refuse, ct.create = status, create
	ct.mu.Unlock()
}

func (ct *ChecksumTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	d := ct.Delegate
	if d == nil {
		d = http.DefaultTransport
	}
	crc := req.Header.Get("X-Amz-Checksum-Crc32c")
	declares := strings.EqualFold(req.Header.Get("X-Amz-Checksum-Algorithm"), "CRC32C")
	ct.mu.Lock()
	if (crc != "" || declares && ct.create) && ct.refuse != 0 {
		ct.refused++
		code, msg := "NotImplemented", "Header 'x-amz-checksum-crc32c' with value '"+crc+"' not implemented"
		if ct.refuse == http.StatusBadRequest {
			code, msg = "InvalidArgument", "Unsupported header x-amz-checksum-crc32c"
		}
		status := ct.refuse
		ct.mu.Unlock()
		body := `<?xml version="1.0" encoding="UTF-8"?><Error><Code>` + code + `</Code><Message>` + msg + `</Message></Error>`
		return &http.Response{StatusCode: status, Status: http.StatusText(status), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{"Content-Type": {"application/xml"}}, Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: req}, nil
	}
	if req.Method != http.MethodPut {
		ct.mu.Unlock()
		return d.RoundTrip(req)
	}
	switch {
	case crc != "":
		ct.seen = append(ct.seen, "crc32c")
	case req.Header.Get("X-Amz-Checksum-Sha256") != "":
		ct.seen = append(ct.seen, "sha256")
	case req.Header.Get("Content-Md5") != "":
		ct.seen = append(ct.seen, "md5")
	default:
		ct.seen = append(ct.seen, "none")
	}
	corrupt := ct.corrupt && req.Body != nil
	ct.corrupt = false
	ct.mu.Unlock()
	if corrupt {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		b[len(b)/2] ^= 1
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(b))
		req.GetBody = nil
	}
	return d.RoundTrip(req)
}
