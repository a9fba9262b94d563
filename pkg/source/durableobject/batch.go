package durableobject

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
)

// Batches carry several object requests of one class in one HTTP request to the Worker
// (<worker>/__cfbackup/v1/<Class>/_batch), which sends them to their objects at once and frames
// their answers. Each object request is signed on its own, exactly as when it is sent alone, and its
// object checks that signature and the replay guard: the batch only saves the HTTP request (and the
// Worker invocation) per object. A Worker with an older module answers the batch path 400 bad_id
// (it takes "_batch" for an object ID); the client then sends every request alone.

// BatchSegment is the path segment, in place of an object ID, of the batch endpoint.
const BatchSegment = "_batch"

// MaxBatchItems is the most object requests one batch carries (the module's MAX_BATCH_ITEMS).
const MaxBatchItems = 32

// maxBatchAnswer caps a batch's answer: MaxBatchItems pages of a batched export (BatchPageBytes
// each, plus one oversized line) stay far below it.
const maxBatchAnswer = 256 << 20

// batchReq is one object request of a batch.
type batchReq struct {
	method, id, op string
	q              url.Values
	body           []byte
}

// batchAnswer is one object's answer: its status and body, or err when it is not a 2xx.
type batchAnswer struct {
	status int
	body   []byte
	err    *httpError
}

// errNoBatch: the Worker's module has no batch endpoint (an older version).
var errNoBatch = errors.New("the Worker module has no batch endpoint")

// batchFrame is the JSON line before each object request's body.
type batchFrame struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Query  string `json:"query"`
	TS     string `json:"ts"`
	Nonce  string `json:"nonce"`
	Sig    string `json:"sig"`
	Len    int    `json:"len"`
}

// answerFrame is the JSON line before each object's answer.
type answerFrame struct {
	Status int `json:"status"`
	Len    int `json:"len"`
}

// signParts is what Sign puts into the three headers, for a request given by its parts.
func signParts(secret []byte, method, escapedPath, canonicalQuery string, body []byte, ts string) (nonce, sig string) {
	sum := sha256.Sum256(body)
	var nb [16]byte
	_, _ = rand.Read(nb[:])
	nonce = hex.EncodeToString(nb[:])
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(StringToSign(method, escapedPath, canonicalQuery, hex.EncodeToString(sum[:]), ts, nonce)))
	return nonce, hex.EncodeToString(m.Sum(nil))
}

// batchEnabled reports whether batches are sent: not when switched off (NoBatch) or when the Worker
// answered that it has no batch endpoint.
func (c *Client) batchEnabled() bool { return !c.NoBatch && !c.noBatch.Load() }

// batch sends the requests (all of class) in one HTTP request and returns one answer per request, in
// order. An error means the batch as a whole failed (none of its answers is known); errNoBatch means
// the module is older and the requests must be sent alone. A batch is sent once: an import must not
// be applied twice, and an export that failed is fetched again alone.
func (c *Client) batch(ctx context.Context, class string, reqs []batchReq) ([]batchAnswer, error) {
	var body bytes.Buffer
	ts := strconv.FormatInt(c.now().Unix(), 10)
	for _, r := range reqs {
		pu, err := url.Parse(PathPrefix + url.PathEscape(class) + "/" + r.id + "/" + r.op)
		if err != nil {
			return nil, err
		}
		escaped := pu.EscapedPath() // as once signs it: the path as sent
		nonce, sig := signParts(c.secret, r.method, escaped, CanonicalQuery(r.q), r.body, ts)
		line, _ := json.Marshal(batchFrame{Method: r.method, Path: escaped, Query: r.q.Encode(), TS: ts, Nonce: nonce, Sig: sig, Len: len(r.body)})
		body.Write(line)
		body.WriteByte('\n')
		body.Write(r.body)
	}
	u := c.BaseURL + PathPrefix + url.PathEscape(class) + "/" + BatchSegment
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body.Bytes()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("content-type", "application/x-cfbackup-batch")
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		var we workerError
		_ = json.Unmarshal(b, &we)
		if resp.StatusCode == http.StatusBadRequest && we.Error == "bad_id" || resp.StatusCode == http.StatusNotFound && we.Error != "not_found" || resp.StatusCode == http.StatusMethodNotAllowed {
			c.noBatch.Store(true)
			return nil, errNoBatch
		}
		return nil, &httpError{Status: resp.StatusCode, Code: we.Error, Msg: we.Message, Location: resp.Header.Get("Location")}
	}
	return readAnswers(bufio.NewReader(io.LimitReader(resp.Body, maxBatchAnswer)), len(reqs))
}

// readAnswers reads n framed answers.
func readAnswers(br *bufio.Reader, n int) ([]batchAnswer, error) {
	out := make([]batchAnswer, 0, n)
	for i := 0; i < n; i++ {
		line, err := br.ReadBytes('\n')
		if err != nil {
			return nil, fmt.Errorf("%w: batch answer %d of %d: %v", ErrFormat, i+1, n, err)
		}
		var f answerFrame
		if err := json.Unmarshal(line, &f); err != nil || f.Len < 0 || f.Status < 100 {
			return nil, fmt.Errorf("%w: batch answer %d of %d: bad frame %.80q", ErrFormat, i+1, n, line)
		}
		b := make([]byte, f.Len)
		if _, err := io.ReadFull(br, b); err != nil {
			return nil, fmt.Errorf("%w: batch answer %d of %d is truncated: %v", ErrFormat, i+1, n, err)
		}
		a := batchAnswer{status: f.Status, body: b}
		if f.Status/100 != 2 {
			var we workerError
			_ = json.Unmarshal(b, &we)
			if we.Message == "" {
				we.Message = string(bytes.TrimSpace(b))
			}
			a.err = &httpError{Status: f.Status, Code: we.Error, Msg: we.Message}
			a.body = nil
		}
		out = append(out, a)
	}
	return out, nil
}
