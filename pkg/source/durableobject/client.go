// Package durableobject backs up and restores Durable Object storage through cfbackup's Worker
// module (worker/ in this repository), which the application mounts in its Durable Object classes.
//
// Durable Object storage is readable only from inside the object, so the Go side lists namespaces and
// object IDs over Cloudflare's REST API and then asks each object, through the application's Worker,
// for its storage as NDJSON pages (KV values with type tags, SQLite tables and rows, the alarm).
// Every request is signed with HMAC-SHA256 (see Sign); each object becomes one archive item, and a
// restore replays the item in chunks below the Worker's request-body limit.
package durableobject

import (
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
	"net"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cfbackup/cfbackup/pkg/errclass"
)

// Component is the component name of Durable Objects in manifests and flags.
const Component = "do"

// Format is the NDJSON format the Worker module writes (its header line's "format"). Version 2
// carries SQL storage classes, rowids and sqlite_sequence, and names values that cannot be restored;
// version 1 exports (no storage classes) are still read and imported.
const Format = "cfbackup-do/2"

// FormatV1 is the first export format, still accepted.
const FormatV1 = "cfbackup-do/1"

// KnownFormat reports whether f is an export format this version reads.
func KnownFormat(f string) bool { return f == Format || f == FormatV1 }

// PathPrefix is the URL path prefix the Worker module answers.
const PathPrefix = "/__cfbackup/v1/"

// SignatureScheme is the first line of the string to sign.
const SignatureScheme = "CFBACKUP-HMAC-SHA256"

// MinSecretLength is the shortest secret the Worker module accepts.
const MinSecretLength = 32

// Sentinel errors, wrapped with %w.
var (
	// ErrAuth: the Worker refused the signature (wrong secret, clock skew, replay).
	ErrAuth = errclass.New(errclass.Remote, "Worker refused the request signature")
	// ErrNotConfigured: the Worker has no usable CFBACKUP_SECRET, or cfbackup has no worker URL/secret.
	ErrNotConfigured = errclass.New(errclass.Remote, "cfbackup Worker module not configured")
	// ErrNotFound: the Worker does not route this class or object (module not mounted, wrong URL).
	ErrNotFound = errclass.New(errclass.NotFound, "not found at the Worker")
	// ErrRefused: the object refused an import (backend mismatch, limits); nothing of that chunk was written.
	ErrRefused = errclass.New(errclass.Refused, "import refused by the object")
	// ErrMismatch: an import wrote other counts than the backup recorded.
	ErrMismatch = errclass.New(errclass.Integrity, "restored object does not match the backup")
	// ErrFormat: the Worker answered something that is not the expected NDJSON.
	ErrFormat = errclass.New(errclass.Remote, "unexpected answer from the Worker module")
)

var objectIDRe = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ValidObjectID reports whether id looks like a Durable Object ID (64 hex digits).
func ValidObjectID(id string) bool { return objectIDRe.MatchString(id) }

// Client talks to the Worker module of one application Worker.
type Client struct {
	// BaseURL is the application Worker's URL (https://app.example.workers.dev).
	BaseURL string
	secret  []byte
	// HTTP is the HTTP client; nil means one with sane timeouts.
	HTTP *http.Client
	// Attempts is how often a transient failure (network, 429, 5xx) is tried (default 4).
	Attempts int
	// Backoff is the first wait between attempts; it doubles (default 200 ms).
	Backoff time.Duration
	// PageLimit and PageBytes bound one export page (defaults 1000 lines, 4 MiB).
	PageLimit int
	PageBytes int
	// Now is the signing clock (default time.Now).
	Now func() time.Time
	// NoBatch sends every object request alone, never in a batch (see batch.go).
	NoBatch bool
	// BatchItems is the most objects per batch (default and maximum MaxBatchItems).
	BatchItems int
	// NoWire never asks for or sends binary framing (wire.go): plain NDJSON both ways.
	NoWire bool

	// defaultHTTP is the client used when HTTP is nil, made once: one per request would open a new
	// connection (and leave it idle) for every request of a restore of many objects.
	defaultOnce sync.Once
	defaultHTTP *http.Client
	// noBatch is set once the Worker answered that its module has no batch endpoint.
	noBatch atomic.Bool
	// wire is whether the module speaks the binary framing (wire.go): wireUnknown, wireYes, wireNo.
	wire atomic.Int32
}

// NewClient checks the URL and secret. The secret is never logged or printed.
func NewClient(baseURL, secret string) (*Client, error) {
	if baseURL == "" {
		return nil, fmt.Errorf("%w: CFBACKUP_WORKER_URL is not set: set it to the URL of the Worker that routes /__cfbackup/ to your Durable Objects", ErrNotConfigured)
	}
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: CFBACKUP_WORKER_URL %q is not an http(s) URL", ErrNotConfigured, baseURL)
	}
	if secret == "" {
		return nil, fmt.Errorf("%w: CFBACKUP_WORKER_SECRET is not set: set it (or CFBACKUP_WORKER_SECRET_FILE) to the value given to 'wrangler secret put CFBACKUP_SECRET'", ErrNotConfigured)
	}
	if len(secret) < MinSecretLength {
		return nil, fmt.Errorf("%w: CFBACKUP_WORKER_SECRET is shorter than %d characters: the Worker refuses it (make one with: openssl rand -hex 32)", ErrNotConfigured, MinSecretLength)
	}
	if u.Scheme == "http" && !IsLoopback(u.Hostname()) {
		return nil, fmt.Errorf("%w: CFBACKUP_WORKER_URL %q is plain http off this machine: signed requests, and the storage they carry, would cross the network unencrypted; use https (plain http is accepted only on a loopback address)", ErrNotConfigured, baseURL)
	}
	return &Client{BaseURL: strings.TrimRight(baseURL, "/"), secret: []byte(secret)}, nil
}

// IsLoopback reports whether host (a URL's hostname) is this machine: localhost or a loopback IP.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// noRedirects makes a redirect an answer, not a new request: following it would send the signature
// headers (and an import's body) to wherever the Location points.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		if c.HTTP.CheckRedirect == nil {
			hc := *c.HTTP
			hc.CheckRedirect = noRedirects
			return &hc
		}
		return c.HTTP
	}
	c.defaultOnce.Do(func() {
		c.defaultHTTP = &http.Client{CheckRedirect: noRedirects, Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			ResponseHeaderTimeout: 5 * time.Minute,
			MaxIdleConnsPerHost:   32,
			IdleConnTimeout:       90 * time.Second,
		}}
	})
	return c.defaultHTTP
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// rfc3986 percent-encodes everything but unreserved characters, like the module's rfc3986.
func rfc3986(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch >= 'A' && ch <= 'Z' || ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_' || ch == '.' || ch == '~' {
			b.WriteByte(ch)
		} else {
			fmt.Fprintf(&b, "%%%02X", ch)
		}
	}
	return b.String()
}

// CanonicalQuery sorts parameters by key, then value, and percent-encodes both (RFC 3986).
func CanonicalQuery(q url.Values) string {
	var pairs [][2]string
	for k, vs := range q {
		for _, v := range vs {
			pairs = append(pairs, [2]string{rfc3986(k), rfc3986(v)})
		}
	}
	sort.Slice(pairs, func(i, j int) bool {
		if pairs[i][0] != pairs[j][0] {
			return pairs[i][0] < pairs[j][0]
		}
		return pairs[i][1] < pairs[j][1]
	})
	parts := make([]string, len(pairs))
	for i, p := range pairs {
		parts[i] = p[0] + "=" + p[1]
	}
	return strings.Join(parts, "&")
}

// StringToSign is what the signature covers: scheme, method, path, canonical query, hex SHA-256 of
// the body, Unix timestamp and nonce, joined by newlines.
func StringToSign(method, path, query, bodySHA256, timestamp, nonce string) string {
	return strings.Join([]string{SignatureScheme, strings.ToUpper(method), path, query, bodySHA256, timestamp, nonce}, "\n")
}

// Sign adds the cfbackup-timestamp, cfbackup-nonce and cfbackup-signature headers to req.
func Sign(req *http.Request, secret []byte, body []byte, now time.Time) {
	sum := sha256.Sum256(body)
	var nb [16]byte
	_, _ = rand.Read(nb[:])
	ts := strconv.FormatInt(now.Unix(), 10)
	nonce := hex.EncodeToString(nb[:])
	m := hmac.New(sha256.New, secret)
	// The path as sent (percent-encoded), as the module reads it: an object name may hold any byte.
	m.Write([]byte(StringToSign(req.Method, req.URL.EscapedPath(), CanonicalQuery(req.URL.Query()), hex.EncodeToString(sum[:]), ts, nonce)))
	req.Header.Set("cfbackup-timestamp", ts)
	req.Header.Set("cfbackup-nonce", nonce)
	req.Header.Set("cfbackup-signature", hex.EncodeToString(m.Sum(nil)))
}

// workerError is the module's JSON error body.
type workerError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// httpError is a non-2xx answer; Retryable tells whether trying again may help.
type httpError struct {
	Status   int
	Code     string
	Msg      string
	Location string
}

func (e *httpError) Error() string {
	if e.Msg != "" {
		return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Code, e.Msg)
	}
	return fmt.Sprintf("HTTP %d", e.Status)
}

// deterministicMsg matches the failures of an import that the same chunk would meet again: SQLite
// constraint and schema errors and the platform's value limits (an older module answered them 500).
var deterministicMsg = regexp.MustCompile(`SQLITE_(CONSTRAINT|ERROR|MISMATCH|TOOBIG|RANGE|AUTH)|FOREIGN KEY constraint failed|Values cannot be larger than|Keys cannot be larger than`)

func (e *httpError) retryable() bool {
	if e.Status/100 == 3 {
		return false // a redirect is never followed, nor retried
	}
	if e.Status >= 500 && deterministicMsg.MatchString(e.Msg) {
		return false
	}
	return e.Status == 429 || e.Status >= 500 && e.Code != "no_secret" && e.Code != "weak_secret"
}

func classifyHTTP(e *httpError, what string) error {
	switch {
	case e.Status == 401 || e.Status == 403:
		return fmt.Errorf("%s: %w: %v", what, ErrAuth, e)
	case e.Code == "no_secret" || e.Code == "weak_secret":
		return fmt.Errorf("%s: %w: %v", what, ErrNotConfigured, e)
	case e.Status == 404 || e.Code == "bad_id" || e.Code == "wrong_object":
		return fmt.Errorf("%s: %w: %v (is the cfbackup module mounted, and is CFBACKUP_WORKER_URL the Worker that routes this class?)", what, ErrNotFound, e)
	case e.Status == 422, e.Status >= 500 && deterministicMsg.MatchString(e.Msg):
		return fmt.Errorf("%s: %w: %v", what, ErrRefused, e)
	case e.Status/100 == 3:
		return fmt.Errorf("%s: %w: the Worker answered with a redirect (HTTP %d to %q), which cfbackup does not follow: signed requests go only to CFBACKUP_WORKER_URL; set it to the final URL", what, ErrNotFound, e.Status, e.Location)
	}
	return fmt.Errorf("%s: %v", what, e)
}

// do sends one signed request, retrying transient failures; read consumes a 2xx body.
// attempts 0 means c.Attempts; imports pass 1 (a chunk must not be applied twice).
func (c *Client) do(ctx context.Context, attempts int, method, class, id, op string, q url.Values, body []byte, read func(io.Reader) error) error {
	if attempts <= 0 {
		attempts = c.Attempts
	}
	if attempts <= 0 {
		attempts = 4
	}
	wait := c.Backoff
	if wait <= 0 {
		wait = 200 * time.Millisecond
	}
	what := fmt.Sprintf("%s %s object %s", op, class, id)
	var last error
	for a := 0; a < attempts; a++ {
		if a > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
			wait *= 2
		}
		err := c.once(ctx, method, class, id, op, q, body, read)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var he *httpError
		if errors.As(err, &he) {
			if !he.retryable() {
				return classifyHTTP(he, what)
			}
			last = classifyHTTP(he, what)
			continue
		}
		if errors.Is(err, ErrFormat) {
			return fmt.Errorf("%s: %w", what, err)
		}
		last = fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%w (after %d attempts)", last, attempts)
}

func (c *Client) once(ctx context.Context, method, class, id, op string, q url.Values, body []byte, read func(io.Reader) error) error {
	u := c.BaseURL + PathPrefix + url.PathEscape(class) + "/" + id + "/" + op
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("content-type", "application/x-ndjson")
	}
	if op == "export" && !c.NoWire {
		req.Header.Set(WireHeader, Wire) // an older module ignores it and answers NDJSON
	}
	Sign(req, c.secret, body, c.now())
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		var we workerError
		_ = json.Unmarshal(b, &we)
		if we.Message == "" {
			we.Message = strings.TrimSpace(string(b))
		}
		return &httpError{Status: resp.StatusCode, Code: we.Error, Msg: we.Message, Location: resp.Header.Get("Location")}
	}
	c.noteWire(resp.Header)
	if op == "export" {
		b, err := readExport(resp, maxPage)
		if err != nil {
			return err
		}
		return read(&pageBody{bytes.NewReader(b), b})
	}
	return read(resp.Body)
}

// Info is what the module reports about one object without exporting it.
type Info struct {
	ID      string `json:"id"`
	Format  string `json:"format"`
	Backend string `json:"backend"` // "sqlite" or "kv"
	HasData bool   `json:"has_data"`
	Tables  int    `json:"tables"`
	Alarm   *int64 `json:"alarm"`
}

// Info asks an object whether it holds data (used before overwriting it).
func (c *Client) Info(ctx context.Context, class, id string) (Info, error) {
	var in Info
	err := c.do(ctx, 0, http.MethodGet, class, id, "info", nil, nil, func(r io.Reader) error {
		return json.NewDecoder(r).Decode(&in)
	})
	return in, err
}
