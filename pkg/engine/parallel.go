package engine

import (
	"context"
	"runtime"
	"sync"

	"github.com/cfbackup/cfbackup/pkg/archive"
)

// DefaultConcurrency is how many captures (D1 databases, Durable Object namespaces, R2 buckets,
// components) a backup runs at once when BackupOptions.Concurrency is 0: most of a capture's time
// is spent waiting on Cloudflare (an export being prepared, a namespace answering), which others can
// use. Each running capture writes its own segments through its own archive.Writer, so memory grows
// with the concurrency (docs/CONFIG.md, "concurrency").
const DefaultConcurrency = 4

// MaxConcurrency bounds BackupOptions.Concurrency.
const MaxConcurrency = 64

// lockedProgress serialises a Progress shared by captures running at once.
type lockedProgress struct {
	mu sync.Mutex
	p  Progress
}

func (l *lockedProgress) Start(label string, total int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.p.Start(label, total)
}

func (l *lockedProgress) Add(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.p.Add(n)
}

func (l *lockedProgress) Finish() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.p.Finish()
}

// captureRun runs a plan's captures, at most conc at once, and owns their archive writers.
type captureRun struct {
	newWriter func(compressors int) (*archive.Writer, error)
	// classFor is the storage class of a component's segments (nil: the store's default); a writer
	// starts a new segment when the class changes, so one segment never mixes two classes.
	classFor func(component string) string
	writers  []*archive.Writer
}

// runOn runs c with w as its writer, in c's storage class.
func (r *captureRun) runOn(ctx context.Context, w *archive.Writer, sess *Session, c Capture) error {
	if r.classFor != nil {
		w.SetStorageClass(r.classFor(c.Component))
	}
	return c.Run(ctx, sess)
}

// run executes caps against sess. With one worker the captures run in plan order on one writer,
// exactly as before concurrency existed; with more, each worker has its own writer and runs each
// capture it takes on a Fork of sess. The first capture error cancels the others and is returned.
func (r *captureRun) run(ctx context.Context, sess *Session, caps []Capture, conc int) error {
	conc = max(1, min(conc, len(caps)))
	// The compressors of all writers together stay about one per CPU.
	compressors := max(1, runtime.NumCPU()/conc)
	for range conc {
		w, err := r.newWriter(compressors)
		if err != nil {
			return err
		}
		r.writers = append(r.writers, w)
	}
	if conc == 1 {
		sess.Writer = r.writers[0]
		for _, c := range caps {
			if err := r.runOn(ctx, sess.Writer, sess, c); err != nil {
				return err
			}
		}
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	next := make(chan int)
	for _, w := range r.writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := r.runOn(ctx, w, sess.Fork(w, i), caps[i]); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		}()
	}
feed:
	for i := range caps {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// close finishes every writer and returns all their segments.
func (r *captureRun) close() ([]archive.SegmentInfo, error) {
	var segs []archive.SegmentInfo
	for i, w := range r.writers {
		s, err := w.Close()
		if err != nil {
			r.writers = r.writers[i+1:]
			r.abort()
			return nil, err
		}
		segs = append(segs, s...)
	}
	r.writers = nil
	return segs, nil
}

// abort abandons every writer not closed yet.
func (r *captureRun) abort() {
	for _, w := range r.writers {
		w.Abort()
	}
	r.writers = nil
}
