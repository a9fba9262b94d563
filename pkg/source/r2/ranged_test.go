package r2_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source/r2"
)

// hookTransport lets a test see (and act on) every request the backup's client sends, and rewrite
// the answer.
type hookTransport struct {
	mu     sync.Mutex
	before func(*http.Request)
	after  func(*http.Request, *http.Response) *http.Response
	gets   []string // "key range if-match" of every GET
}

func (h *hookTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodGet && req.URL.Query().Get("list-type") == "" {
		h.mu.Lock()
		h.gets = append(h.gets, fmt.Sprintf("%s %s %s", req.URL.Path, req.Header.Get("Range"), req.Header.Get("If-Match")))
		h.mu.Unlock()
	}
	if h.before != nil {
		h.before(req)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil && h.after != nil {
		resp = h.after(req, resp)
	}
	return resp, err
}

// ranges lists, per GET of key, its Range header and whether it carried If-Match.
func (h *hookTransport) ranges(key string) (out []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, g := range h.gets {
		f := strings.SplitN(g, " ", 3)
		if strings.HasSuffix(f[0], "/"+key) {
			out = append(out, f[1]+map[bool]string{true: " if-match", false: ""}[f[2] != ""])
		}
	}
	return out
}

func hookEnv(t *testing.T) (*env, *hookTransport) {
	t.Helper()
	e := newEnv(t, "src", "out")
	h := &hookTransport{}
	cl, err := r2.New(r2.Config{Endpoint: e.srv.Endpoint, Region: e.srv.Region, AccessKeyID: e.srv.AccessKey, SecretAccessKey: e.srv.SecretKey,
		HTTPClient: &http.Client{Transport: h}})
	if err != nil {
		t.Fatal(err)
	}
	e.cl = cl
	return e, h
}

func bigObject(seed int64, n int) obj {
	rng := rand.New(rand.NewSource(seed))
	var b bytes.Buffer
	for b.Len() < n/2 {
		fmt.Fprintf(&b, `{"id":%d,"v":%.3f}`+"\n", rng.Intn(1e6), rng.Float64())
	}
	data := make([]byte, n)
	copy(data, b.Bytes())
	rng.Read(data[b.Len():])
	return obj{data: data, meta: manifest.ObjectMeta{ContentType: "video/mp4", Metadata: map[string]string{"seed": strconv.FormatInt(seed, 10)}}}
}

// Large objects are read as ranged GETs of RangeChunk bytes, several at once, every one after the
// first pinned to the first one's ETag; the snapshot restores byte for byte with all metadata, also
// when a small prefetch budget makes the chunks small.
func TestLargeObjectsInRanges(t *testing.T) {
	e, h := hookEnv(t)
	ctx := context.Background()
	model := seed(t, e, "src", 30)
	model["big/a"] = bigObject(1, 4*r2.RangeChunk+12345) // 5 ranges
	e.put(t, "src", "big/a", model["big/a"])
	model["big/b"] = bigObject(2, 3*r2.RangeChunk) // 3 ranges, multipart ETag
	e.putMultipart(t, "src", "big/b", model["big/b"])

	m, st, err := e.backup(ctx, r2.BackupOptions{Bucket: "src"})
	if err != nil {
		t.Fatal(err)
	}
	if st.GETs != 32 || st.RangeGETs != 4+2 {
		t.Fatalf("GETs %d (want 32, one per object), further range GETs %d (want 6)", st.GETs, st.RangeGETs)
	}
	want := []string{fmt.Sprintf("bytes=0-%d", r2.RangeChunk-1)}
	for i := int64(1); i < 5; i++ {
		want = append(want, fmt.Sprintf("bytes=%d-%d if-match", i*r2.RangeChunk, min((i+1)*r2.RangeChunk, int64(len(model["big/a"].data)))-1))
	}
	got := h.ranges("big/a")
	slices.Sort(got[1:])
	slices.Sort(want[1:])
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("GETs of big/a:\n got %q\nwant %q", got, want)
	}
	restoreAndCompare(t, e, m, model)

	// A budget smaller than one chunk: one stream of budget-sized ranges.
	m, st, err = e.backup(ctx, r2.BackupOptions{Bucket: "src", WriterSecret: []byte{}, PrefetchBudget: 1 << 20, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	if st.RangeGETs != 4*4+(3*4-1) { // 17 and 12 chunks of 1 MiB
		t.Fatalf("1 MiB budget: %d further range GETs, want %d", st.RangeGETs, 4*4+(3*4-1))
	}
	restoreAndCompare(t, e, m, model)
}

// An object replaced while it is read in ranges is not stored as a mix of two versions: the range
// GET after the change fails its If-Match, and the object is read again in one stream.
func TestLargeObjectChangedWhileRead(t *testing.T) {
	e, h := hookEnv(t)
	ctx := context.Background()
	model := seed(t, e, "src", 5)
	model["big"] = bigObject(1, 3*r2.RangeChunk+1)
	e.put(t, "src", "big", model["big"])
	var once sync.Once
	h.before = func(req *http.Request) {
		if strings.HasSuffix(req.URL.Path, "/big") && strings.HasPrefix(req.Header.Get("Range"), fmt.Sprintf("bytes=%d-", r2.RangeChunk)) {
			once.Do(func() {
				model["big"] = bigObject(3, 3*r2.RangeChunk+1)
				e.put(t, "src", "big", model["big"])
			})
		}
	}
	m, st, err := e.backup(ctx, r2.BackupOptions{Bucket: "src"})
	if err != nil {
		t.Fatal(err)
	}
	if st.GETs != 7 { // 6 objects, big twice
		t.Fatalf("GETs %d, want 7", st.GETs)
	}
	if got := h.ranges("big"); got[len(got)-1] != "" {
		t.Fatalf("the retry after a change was not one plain GET: %q", got)
	}
	restoreAndCompare(t, e, m, model)
}

// A server that ignores Range gets the object streamed by one plain GET; an object that became
// empty after listing (a range past its end) too.
func TestRangesIgnoredOrUnsatisfiable(t *testing.T) {
	e, h := hookEnv(t)
	ctx := context.Background()
	model := seed(t, e, "src", 5)
	model["big"] = bigObject(1, 2*r2.RangeChunk+3)
	e.put(t, "src", "big", model["big"])
	model["shrinks"] = bigObject(2, r2.RangeChunk+5)
	e.put(t, "src", "shrinks", model["shrinks"])
	// Answer a ranged GET of "big" with the whole object, as a server without range support would.
	h.after = func(req *http.Request, resp *http.Response) *http.Response {
		if !strings.HasSuffix(req.URL.Path, "/big") || resp.StatusCode != http.StatusPartialContent {
			return resp
		}
		resp.Body.Close()
		out, err := e.admin.GetObject(req.Context(), &s3.GetObjectInput{Bucket: aws.String("src"), Key: aws.String("big")})
		if err != nil {
			t.Error(err)
			return resp
		}
		body, _ := io.ReadAll(out.Body)
		out.Body.Close()
		resp.StatusCode, resp.Status = http.StatusOK, "200 OK"
		resp.Header.Del("Content-Range")
		resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
		resp.ContentLength = int64(len(body))
		resp.Body = io.NopCloser(bytes.NewReader(body))
		return resp
	}
	hook := func(key string) {
		if key == "shrinks" {
			model["shrinks"] = obj{}
			e.put(t, "src", "shrinks", model["shrinks"])
		}
	}
	m, st, err := e.backup(ctx, r2.BackupOptions{Bucket: "src", BeforeGet: hook})
	if err != nil {
		t.Fatal(err)
	}
	if st.RangeGETs != 0 {
		t.Fatalf("%d further range GETs, want 0", st.RangeGETs)
	}
	if got := h.ranges("big"); len(got) != 2 || got[1] != "" {
		t.Fatalf("GETs of big: %q, want one ranged then one plain", got)
	}
	restoreAndCompare(t, e, m, model)
}
