package s3api

import (
	"sync"

	"github.com/cfbackup/cfbackup/pkg/bufclass"
)

// Pool is a bounded free list of byte buffers shared by the uploads of one caller that runs many
// (a restore's object workers): their part buffers (Budget.Pool) and whatever else the caller
// reads objects into (a restore's decoded whole objects). Unlike sync.Pool it survives GC, so
// buffers are reused instead of allocated and cleared for every object; unlike Client's own free
// list it is not limited to one upload's Concurrency+1 buffers.
//
// Its bound is in bytes: the buffers it has handed out and not had back plus those it keeps never
// exceed max once the buffers in use alone stay under it (a caller that bounds its buffers in use
// by its parallelism, and passes that bound as max, holds at most max in them whatever the data).
// A buffer comes back to the free list only while that holds; when a buffer must be allocated and
// the bound would be passed, free buffers are dropped first, smallest first (a size that did not
// fit). A buffer never given back only makes the pool keep less.
type Pool struct {
	mu    sync.Mutex
	max   int64
	out   int64 // bytes of the buffers handed out and not given back
	kept  int64 // bytes in free
	free  [][]byte
	stats PoolStats
}

// PoolStats count what a Pool did (tests and benchmarks).
type PoolStats struct {
	Gets, Allocs, Drops int64
	// MostHeld is the largest out + kept seen.
	MostHeld int64
}

// NewPool makes a pool that holds at most max bytes in buffers handed out and kept (see Pool).
func NewPool(max int64) *Pool { return &Pool{max: max} }

// poolClass is the capacity allocated for a request of n bytes: n rounded up to a sixteenth of the
// power of two below it (at most 6.25 % waste, so one buffer serves many nearby sizes: a part of
// 8 MiB and an object of 8 MiB read whole with its tar header both fit 8.5 MiB), at least 64 KiB.
func poolClass(n int) int { return bufclass.Round(n, 16) }

// Get returns a buffer of length n: the smallest free one that fits and is less than twice n's
// class (a large buffer is not spent on a small object), or a new one.
func (p *Pool) Get(n int) []byte {
	c := poolClass(n)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Gets++
	best := -1
	for i, b := range p.free {
		if cap(b) >= n && cap(b) < 2*c && (best < 0 || cap(b) < cap(p.free[best])) {
			best = i
		}
	}
	if best >= 0 {
		b := p.free[best]
		p.remove(best)
		p.out += int64(cap(b))
		return b[:n]
	}
	for len(p.free) > 0 && p.out+p.kept+int64(c) > p.max {
		small := 0
		for i, b := range p.free {
			if cap(b) < cap(p.free[small]) {
				small = i
			}
		}
		p.remove(small)
		p.stats.Drops++
	}
	p.stats.Allocs++
	p.out += int64(c)
	p.stats.MostHeld = max(p.stats.MostHeld, p.out+p.kept)
	return make([]byte, n, c)
}

// remove takes free[i] off the list.
func (p *Pool) remove(i int) {
	p.kept -= int64(cap(p.free[i]))
	last := len(p.free) - 1
	p.free[i] = p.free[last]
	p.free[last] = nil
	p.free = p.free[:last]
}

// Put gives back a buffer Get returned (nil is ignored); it is kept for reuse while the bound holds.
func (p *Pool) Put(b []byte) {
	if b == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.out = max(p.out-int64(cap(b)), 0)
	if p.out+p.kept+int64(cap(b)) > p.max {
		p.stats.Drops++
		return
	}
	p.free = append(p.free, b[:cap(b)])
	p.kept += int64(cap(b))
}

// Stats returns the pool's counters and the bytes it keeps now.
func (p *Pool) Stats() (PoolStats, int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats, p.kept
}
