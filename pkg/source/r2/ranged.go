package r2

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/cfbackup/cfbackup/pkg/manifest"
)

// RangeChunk is the size of each ranged GET of a large object. One GET stream per object is limited
// by a single connection's throughput (and a long one by its round trips): a bucket of large media
// files then backs up at one stream's speed however many GET workers there are. Large objects are
// read as RangeStreams ranged GETs at once instead, each pinned to the first response's ETag.
const (
	RangeChunk   = 4 << 20
	RangeStreams = 4
)

// rangedBody reads one large object in order from chunk-sized ranged GETs fetched up to
// len(buffers) at a time into buffers it owns. Every GET after the first carries If-Match with the
// first one's ETag, so an object replaced during the read fails it with ErrChanged (the backup then
// fetches the object again) instead of mixing two versions.
type rangedBody struct {
	ctx     context.Context
	cancel  context.CancelFunc
	size    int64
	chunk   int64
	meta    manifest.ObjectMeta
	results []chan chunkResult // one per chunk, in order
	free    chan []byte        // buffers not holding an unread chunk
	wg      sync.WaitGroup

	next int    // the chunk Read takes next
	cur  []byte // unread bytes of the chunk being read
	held []byte // that chunk's buffer
	err  error
	done func(bufs [][]byte) // gets every buffer back once Close has stopped the fetches
	once sync.Once
}

type chunkResult struct {
	buf []byte // the whole buffer, also on error
	n   int
	err error
}

// startRanged issues the first ranged GET of key synchronously (it yields the size, ETag and metadata)
// and the rest in the background; outer counts the goroutines too (the prefetcher waits for them when
// it stops). ranged is false when the server ignored the Range header: nothing is running then and
// the caller streams the object the plain way. gets counts the first GET, more the others.
func startRanged(ctx context.Context, c *Client, bucket, key string, bufs [][]byte, outer *sync.WaitGroup, gets, more *int64, done func([][]byte)) (*rangedBody, bool, error) {
	chunk := int64(len(bufs[0]))
	ctx, cancel := context.WithCancel(ctx) // Close cancels the body being read too
	atomic.AddInt64(gets, 1)
	body, total, meta, ranged, err := c.GetRange(ctx, bucket, key, 0, chunk, "")
	if err != nil || !ranged {
		if err == nil {
			body.Close()
		}
		cancel()
		return nil, false, err
	}
	nchunks := int((total + chunk - 1) / chunk)
	rb := &rangedBody{ctx: ctx, cancel: cancel, size: total, chunk: chunk, meta: meta,
		results: make([]chan chunkResult, nchunks), free: make(chan []byte, len(bufs)), done: done}
	for i := range rb.results {
		rb.results[i] = make(chan chunkResult, 1)
	}
	for _, b := range bufs[1:] {
		rb.free <- b
	}
	run := func(f func()) {
		rb.wg.Add(1)
		outer.Add(1)
		go func() {
			defer outer.Done()
			defer rb.wg.Done()
			f()
		}()
	}
	want := func(i int) int { return int(min(chunk, total-int64(i)*chunk)) }
	fill := func(i int, buf []byte, r io.ReadCloser) {
		n, err := io.ReadFull(r, buf[:want(i)])
		if err == nil {
			if k, _ := r.Read(make([]byte, 1)); k != 0 {
				err = fmt.Errorf("get %s/%s: range %d longer than asked", bucket, key, i)
			}
		}
		r.Close()
		if err != nil && ctx.Err() == nil {
			err = fmt.Errorf("get %s/%s bytes from %d: %w", bucket, key, int64(i)*chunk, err)
		}
		rb.results[i] <- chunkResult{buf, n, err}
	}
	run(func() { fill(0, bufs[0], body) })
	run(func() {
		for i := 1; i < nchunks; i++ {
			var buf []byte
			select {
			case buf = <-rb.free:
			case <-ctx.Done():
				return
			}
			run(func() {
				atomic.AddInt64(more, 1)
				off := int64(i) * chunk
				r, t, _, ranged, err := c.GetRange(ctx, bucket, key, off, int64(want(i)), meta.ETag)
				switch {
				case err != nil:
					rb.results[i] <- chunkResult{buf, 0, err}
				case !ranged || t != total:
					r.Close()
					rb.results[i] <- chunkResult{buf, 0, fmt.Errorf("get %s/%s: %w (size %d, was %d)", bucket, key, ErrChanged, t, total)}
				default:
					fill(i, buf, r)
				}
			})
		}
	})
	return rb, true, nil
}

func (rb *rangedBody) Read(p []byte) (int, error) {
	if rb.err != nil {
		return 0, rb.err
	}
	for len(rb.cur) == 0 {
		if rb.held != nil {
			rb.free <- rb.held // never blocks: the channel holds every buffer
			rb.held = nil
		}
		if rb.next == len(rb.results) {
			return 0, io.EOF
		}
		select {
		case r := <-rb.results[rb.next]:
			rb.held = r.buf
			if r.err != nil {
				rb.err = r.err
				return 0, r.err
			}
			rb.cur = r.buf[:r.n]
			rb.next++
		case <-rb.ctx.Done():
			rb.err = rb.ctx.Err()
			return 0, rb.err
		}
	}
	n := copy(p, rb.cur)
	rb.cur = rb.cur[n:]
	return n, nil
}

// Close stops the fetches still running and hands every buffer to done.
func (rb *rangedBody) Close() error {
	rb.once.Do(func() {
		rb.cancel()
		rb.wg.Wait()
		var bufs [][]byte
		if rb.held != nil {
			bufs = append(bufs, rb.held)
		}
		for i := rb.next; i < len(rb.results); i++ {
			select {
			case r := <-rb.results[i]:
				bufs = append(bufs, r.buf)
			default:
			}
		}
		for len(rb.free) > 0 {
			bufs = append(bufs, <-rb.free)
		}
		rb.held, rb.cur = nil, nil
		rb.done(bufs)
	})
	return nil
}
