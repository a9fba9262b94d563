// Command slowlink is a TCP proxy that makes a loopback S3 server look far away, for
// scripts/bench-r2.sh's slow-link mode: every byte waits half the round-trip time in each direction,
// each direction of the link carries at most -rate bytes a second (all connections share it, in
// arrival order, like one bottleneck queue), and one connection at most -conn-rate (a TCP window
// over a long round trip). With a known link rate, a benchmark can report how much of the link a
// tool used. It writes its address to -addr-file once it listens and runs until killed.
package main

import (
	"flag"
	"log"
	"net"
	"os"
	"sync"
	"time"
)

// link is one direction's bottleneck: the time at which it is free again.
type link struct {
	mu   sync.Mutex
	free time.Time
	rate float64
}

// reserve books n bytes on the link after now and returns when they are through it.
func (l *link) reserve(now time.Time, n int) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.free = later(l.free, now).Add(seconds(float64(n) / l.rate))
	return l.free
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

type chunk struct {
	b  []byte
	at time.Time // when it leaves the far end of the link
}

// config is the link shape shared by every connection.
type config struct {
	delay    time.Duration // one way
	connRate float64       // bytes/s of one connection, 0: no limit of its own
	chunk    int
	window   int // chunks in flight per direction and connection
}

// pipe copies src to dst through the link l: a reader stamps each chunk with the time it comes
// out (queued behind the link and the connection's own rate, plus the one-way delay) and a writer
// delivers it then. At most window chunks are in flight, so memory is bounded per connection.
func pipe(cfg config, l *link, dst, src *net.TCPConn, done func()) {
	defer done()
	q := make(chan chunk, cfg.window)
	go func() {
		defer close(q)
		var connFree time.Time
		for {
			b := make([]byte, cfg.chunk)
			n, err := src.Read(b)
			if n > 0 {
				now := time.Now()
				out := l.reserve(now, n)
				if cfg.connRate > 0 {
					connFree = later(connFree, now).Add(seconds(float64(n) / cfg.connRate))
					out = later(out, connFree)
				}
				q <- chunk{b[:n], out.Add(cfg.delay)}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		if d := time.Until(c.at); d > 0 {
			time.Sleep(d)
		}
		if _, err := dst.Write(c.b); err != nil {
			_ = src.Close()
			for range q { //nolint:revive // drain so the reader ends
			}
			return
		}
	}
	_ = dst.CloseWrite()
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	target := flag.String("target", "", "host:port to forward to")
	rate := flag.Float64("rate", 50e6, "bytes per second of the link, each direction")
	connRate := flag.Float64("conn-rate", 12.5e6, "bytes per second of one connection, each direction (0: no limit)")
	rtt := flag.Duration("rtt", 20*time.Millisecond, "round-trip time")
	addrFile := flag.String("addr-file", "", "write the listening address here")
	flag.Parse()
	if *target == "" || *rate <= 0 {
		log.Fatal("slowlink: -target host:port and a positive -rate are needed")
	}
	cfg := config{delay: *rtt / 2, connRate: *connRate, chunk: 16 << 10, window: 256}
	up, down := &link{rate: *rate}, &link{rate: *rate}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	if *addrFile != "" {
		if err := os.WriteFile(*addrFile, []byte(ln.Addr().String()), 0o600); err != nil {
			log.Fatal(err)
		}
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go serve(cfg, up, down, c.(*net.TCPConn), *target)
	}
}

// serve connects one client to the target through the two directions of the link.
func serve(cfg config, up, down *link, client *net.TCPConn, target string) {
	s, err := net.Dial("tcp", target)
	if err != nil {
		_ = client.Close()
		return
	}
	server := s.(*net.TCPConn)
	var wg sync.WaitGroup
	wg.Add(2)
	go pipe(cfg, up, server, client, wg.Done)
	go pipe(cfg, down, client, server, wg.Done)
	wg.Wait()
	_ = client.Close()
	_ = server.Close()
}
