package archive

import (
	"context"
	"sync"

	"github.com/cfbackup/cfbackup/pkg/bufclass"
)

// frameMem hands out compressed-frame buffers within a byte budget. A buffer is reserved when a job is
// submitted (in job order, by the one goroutine that submits) and given back when the sink has placed
// its frame, so the frames waiting for the sink are bounded by bytes, not by a count of
// ChunkSize-sized slots: many small objects (most R2 objects) can then be compressed ahead of a slow
// one at the head of the queue instead of leaving the compressors idle while the sink waits for it.
// Reserving in job order cannot deadlock: the oldest job's buffer is always reserved before any
// younger one's. Buffers come in power-of-two classes and are recycled; memory held in recycled and
// in-use buffers together never exceeds the budget (beyond one buffer when the budget is smaller).
type frameMem struct {
	mu     sync.Mutex
	cond   *sync.Cond
	budget int64
	held   int64            // bytes of every buffer allocated and not dropped (in use or free)
	free   map[int][][]byte // by capacity
}

func newFrameMem(budget int64) *frameMem {
	m := &frameMem{budget: budget, free: map[int][][]byte{}}
	m.cond = sync.NewCond(&m.mu)
	return m
}

// BufferClass is the capacity to allocate for a buffer of n bytes that is to be recycled: n rounded
// up to an eighth of the power of two below it (at most 12.5 % waste, few distinct sizes), and at
// least 64 KiB.
func BufferClass(n int) int { return bufclass.Round(n, 8) }

// get returns an empty buffer with capacity of at least n and the bytes charged for it (give both
// to put), waiting for the sink to give back buffers while the budget is used up; it fails only when
// ctx ends. A free buffer of the smallest fitting size is reused.
func (m *frameMem) get(ctx context.Context, n int) ([]byte, int, error) {
	c := BufferClass(n)
	stop := context.AfterFunc(ctx, func() {
		m.mu.Lock()
		m.cond.Broadcast()
		m.mu.Unlock()
	})
	defer stop()
	m.mu.Lock()
	defer m.mu.Unlock()
	for {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		best := 0
		for k, l := range m.free {
			if k >= c && len(l) > 0 && (best == 0 || k < best) {
				best = k
			}
		}
		if best > 0 {
			l := m.free[best]
			b := l[len(l)-1]
			l[len(l)-1] = nil // or the slice's array keeps the buffer alive after it is dropped
			m.free[best] = l[:len(l)-1]
			return b[:0], best, nil
		}
		if m.held+int64(c) <= m.budget || m.held == 0 {
			m.held += int64(c)
			return make([]byte, 0, c), c, nil
		}
		// Free buffers too small to fit are dropped to make room before waiting.
		dropped := false
		for k, l := range m.free {
			if len(l) > 0 {
				l[len(l)-1] = nil
				m.free[k] = l[:len(l)-1]
				m.held -= int64(k)
				dropped = true
				break
			}
		}
		if !dropped {
			m.cond.Wait()
		}
	}
}

// put gives back a buffer get charged bytes for. One the frame writer had to replace with a larger
// one is dropped.
func (m *frameMem) put(b []byte, charged int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cap(b) == charged {
		m.free[charged] = append(m.free[charged], b[:0])
	} else {
		m.held -= int64(charged)
	}
	m.cond.Broadcast()
}
