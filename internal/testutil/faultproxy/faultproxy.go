// Package faultproxy is a reverse proxy for tests that sits in front of a real HTTP server (versitygw,
// the Cloudflare API emulator) and injects the faults a network and a loaded provider produce: error
// statuses (500, 503, 429), connections dropped before the request reaches the server, responses cut
// mid-body, and responses lost after the server acted on the request. Faults are drawn from a seeded
// generator at a configured rate, or scripted one at a time with Next, and counted so tests can report
// what they survived.
package faultproxy

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
)

// Kind is one fault.
type Kind string

// The faults the proxy injects.
const (
	Pass Kind = "pass"
	// Status500 and Status503 answer without forwarding (an S3 InternalError / SlowDown).
	Status500 Kind = "500"
	Status503 Kind = "503"
	// Status429 answers 429 with Retry-After without forwarding (Cloudflare API rate limiting).
	Status429 Kind = "429"
	// Drop closes the connection without forwarding the request and without answering.
	Drop Kind = "drop"
	// Cut forwards the request and sends the response headers and about half the body, then closes
	// the connection (a response shorter than its Content-Length). Answers without a body are dropped.
	Cut Kind = "cut"
	// Lost forwards the request, lets the server complete it, and closes the connection instead of
	// answering: the server acted, the client cannot know.
	Lost Kind = "lost"
)

// S3Kinds are the faults of an S3 endpoint under load and over a bad network.
var S3Kinds = []Kind{Status500, Status503, Drop, Cut, Lost}

// Options configure a Proxy.
type Options struct {
	// Target is the server's base URL (http://127.0.0.1:PORT).
	Target string
	// Seed seeds the fault generator.
	Seed uint64
	// Rate is the share of requests (0..1) that get a random fault from Kinds.
	Rate float64
	// Kinds to draw from (default S3Kinds).
	Kinds []Kind
	// RetryAfter is the Retry-After value of 429 answers (default "0").
	RetryAfter string
	// Skip exempts requests from random faults (scripted ones still apply).
	Skip func(*http.Request) bool
}

// Proxy is a running fault-injecting proxy.
type Proxy struct {
	URL string

	opts   Options
	target *url.URL
	tr     *http.Transport

	mu       sync.Mutex
	rng      *rand.Rand
	rate     float64
	scripted []scripted
	counts   map[Kind]int
	requests int
	log      []string
}

type scripted struct {
	kind  Kind
	match func(*http.Request) bool
}

// Start runs a proxy in front of opts.Target until the test ends.
func Start(t testing.TB, opts Options) *Proxy {
	t.Helper()
	u, err := url.Parse(opts.Target)
	if err != nil || u.Host == "" {
		t.Fatalf("faultproxy: bad target %q: %v", opts.Target, err)
	}
	if len(opts.Kinds) == 0 {
		opts.Kinds = S3Kinds
	}
	if opts.RetryAfter == "" {
		opts.RetryAfter = "0"
	}
	p := &Proxy{opts: opts, target: u, rng: rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)), rate: opts.Rate,
		counts: map[Kind]int{}, tr: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64}}
	srv := httptest.NewServer(p)
	p.URL = srv.URL
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		p.tr.CloseIdleConnections()
	})
	return p
}

// SetRate changes the random fault rate (0 turns random faults off).
func (p *Proxy) SetRate(r float64) {
	p.mu.Lock()
	p.rate = r
	p.mu.Unlock()
}

// Next makes the next request that match accepts (nil: any) get kind, before any random fault.
func (p *Proxy) Next(kind Kind, match func(*http.Request) bool) {
	p.mu.Lock()
	p.scripted = append(p.scripted, scripted{kind, match})
	p.mu.Unlock()
}

// Pending is how many scripted faults have not happened yet.
func (p *Proxy) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.scripted)
}

// Counts returns how many requests got each fault (Pass included) and the total.
func (p *Proxy) Counts() (map[Kind]int, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := make(map[Kind]int, len(p.counts))
	for k, v := range p.counts {
		c[k] = v
	}
	return c, p.requests
}

// Summary is a one-line account of the faults injected: "412 requests: 371 pass, 9 500, …".
func (p *Proxy) Summary() string {
	c, n := p.Counts()
	var ks []string
	for k := range c {
		ks = append(ks, string(k))
	}
	sort.Strings(ks)
	var parts []string
	for _, k := range ks {
		parts = append(parts, fmt.Sprintf("%d %s", c[Kind(k)], k))
	}
	return fmt.Sprintf("%d requests: %s", n, strings.Join(parts, ", "))
}

// Log lists "METHOD path → fault" for every faulted request.
func (p *Proxy) Log() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.log...)
}

func (p *Proxy) choose(r *http.Request) Kind {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests++
	k := Pass
	for i, s := range p.scripted {
		if s.match == nil || s.match(r) {
			k = s.kind
			p.scripted = append(p.scripted[:i], p.scripted[i+1:]...)
			break
		}
	}
	if k == Pass && p.rate > 0 && (p.opts.Skip == nil || !p.opts.Skip(r)) && p.rng.Float64() < p.rate {
		k = p.opts.Kinds[p.rng.IntN(len(p.opts.Kinds))]
	}
	p.counts[k]++
	if k != Pass {
		p.log = append(p.log, r.Method+" "+r.URL.RequestURI()+" → "+string(k))
	}
	return k
}

// abort closes the client's connection without (more of) an answer.
func abort() { panic(http.ErrAbortHandler) }

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	kind := p.choose(r)
	switch kind {
	case Status500, Status503, Status429:
		_, _ = io.Copy(io.Discard, r.Body)
		p.errorAnswer(w, kind)
		return
	case Drop:
		abort()
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		abort()
	}
	out, err := http.NewRequestWithContext(r.Context(), r.Method, p.target.Scheme+"://"+p.target.Host+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	for k, v := range r.Header {
		switch http.CanonicalHeaderKey(k) {
		case "Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
			continue
		}
		out.Header[k] = v
	}
	out.Host = r.Host // SigV4 signs the Host the client used
	out.ContentLength = int64(len(body))
	resp, err := p.tr.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	if kind == Lost {
		_, _ = io.Copy(io.Discard, resp.Body)
		abort()
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	if kind == Cut {
		data, err := io.ReadAll(resp.Body)
		if err != nil || len(data) < 2 || r.Method == http.MethodHead {
			abort()
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(data[:len(data)/2])
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		abort()
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

func (p *Proxy) errorAnswer(w http.ResponseWriter, kind Kind) {
	switch kind {
	case Status429:
		w.Header().Set("Retry-After", p.opts.RetryAfter)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, `{"success":false,"errors":[{"code":971,"message":"Please wait and consider throttling your request speed"}],"messages":[],"result":null}`)
	case Status503:
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`)
	default:
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message></Error>`)
	}
}
