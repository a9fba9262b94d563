package archive

import (
	"context"
	"testing"
	"time"
)

// frameMem keeps every buffer it hands out or keeps within its budget, reuses buffers of the same
// class, drops buffers of other classes to make room, lets one buffer exceed a too-small budget, and
// a waiting get ends when its context does.
func TestFrameMemBudget(t *testing.T) {
	ctx := context.Background()
	m := newFrameMem(1 << 20)
	a, ca, _ := m.get(ctx, 300<<10)
	b, cb, _ := m.get(ctx, 300<<10)
	if m.held > m.budget || cap(a) < 300<<10 {
		t.Fatalf("held %d of %d, cap %d", m.held, m.budget, cap(a))
	}
	m.put(a, ca)
	c, cc, _ := m.get(ctx, 200<<10) // a fits: it comes back
	if &c[:1][0] != &a[:1][0] {
		t.Fatal("a free buffer that fits was not reused")
	}
	m.put(c, cc)
	// A larger class: the free 300 KiB buffer is dropped to make room.
	d, cd, _ := m.get(ctx, 600<<10)
	if m.held > m.budget {
		t.Fatalf("held %d over budget %d", m.held, m.budget)
	}
	// Budget used up: the next get waits until a put, or until its context ends.
	done := make(chan []byte)
	go func() { e, _, _ := m.get(ctx, 500<<10); done <- e }()
	select {
	case <-done:
		t.Fatal("get beyond the budget did not wait")
	case <-time.After(50 * time.Millisecond):
	}
	m.put(d, cd)
	m.put(b, cb)
	if e := <-done; cap(e) < 500<<10 {
		t.Fatalf("cap %d", cap(e))
	}
	cctx, cancel := context.WithCancel(ctx)
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	if _, _, err := m.get(cctx, 900<<10); err == nil {
		t.Fatal("a get waiting on a cancelled context returned a buffer")
	}
	// One buffer larger than the whole budget is allowed when nothing else is held.
	small := newFrameMem(64 << 10)
	if big, _, err := small.get(ctx, 1<<20); err != nil || cap(big) < 1<<20 {
		t.Fatalf("oversized first buffer: %v", err)
	}
}
