package retry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cfbackup/cfbackup/internal/testutil/readers"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/faulty"
	"github.com/cfbackup/cfbackup/pkg/store/local"
	"github.com/cfbackup/cfbackup/pkg/store/mem"
	"github.com/cfbackup/cfbackup/pkg/store/retry"
	"github.com/cfbackup/cfbackup/pkg/store/storetest"
)

// httpErr mimics an SDK error that carries an HTTP status.
type httpErr int

func (e httpErr) Error() string       { return fmt.Sprintf("http %d", int(e)) }
func (e httpErr) HTTPStatusCode() int { return int(e) }

var errTransient = errors.New("connection reset by peer")

type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func newRetry(inner store.Store) (*retry.Store, *sleeps) {
	sl := &sleeps{}
	return retry.New(inner, retry.Options{Attempts: 4, Base: 100 * time.Millisecond, Max: 300 * time.Millisecond, Sleep: sl.sleep}), sl
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		l, err := local.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		s, _ := newRetry(l)
		return s
	})
}

func TestRetryable(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{errTransient, true},
		{httpErr(500), true},
		{httpErr(503), true},
		{httpErr(408), true},
		{fmt.Errorf("wrapped: %w", httpErr(429)), true},
		{httpErr(403), false},
		{httpErr(400), false},
		{fmt.Errorf("x: %w", store.ErrNotFound), false},
		{fmt.Errorf("x: %w", store.ErrExists), false},
		{store.ErrReadOnly, false},
		{store.ErrInvalidKey, false},
		{context.Canceled, false},
		{fmt.Errorf("op: %w", context.DeadlineExceeded), false},
	} {
		if got := retry.Retryable(c.err); got != c.want {
			t.Errorf("Retryable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestTransientRetriedWithBackoff(t *testing.T) {
	ctx := context.Background()
	f := faulty.New(mem.New())
	s, sl := newRetry(f)
	if err := f.Put(ctx, "k", strings.NewReader("v"), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	f.Fail(faulty.OpStat, 1, httpErr(503))
	f.Fail(faulty.OpStat, 2, errTransient)
	f.Fail(faulty.OpStat, 3, httpErr(429))
	if _, err := s.Stat(ctx, "k"); err != nil {
		t.Fatalf("Stat = %v", err)
	}
	if got := f.Calls(faulty.OpStat); got != 4 {
		t.Fatalf("Stat calls = %d, want 4", got)
	}
	// Equal jitter: retry n waits in [b/2, b] with b = min(Base·2ⁿ, Max).
	bounds := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond}
	if len(sl.d) != 3 {
		t.Fatalf("slept %d times", len(sl.d))
	}
	for i, d := range sl.d {
		if d < bounds[i]/2 || d > bounds[i] {
			t.Errorf("sleep %d = %v, want in [%v, %v]", i, d, bounds[i]/2, bounds[i])
		}
	}
}

func TestPermanentNotRetried(t *testing.T) {
	ctx := context.Background()
	for _, e := range []error{httpErr(403), store.ErrNotFound, store.ErrExists, context.Canceled} {
		f := faulty.New(mem.New())
		s, sl := newRetry(f)
		f.FailOpen(1, e)
		if _, err := s.Open(ctx, "k", 0, -1); !errors.Is(err, e) {
			t.Fatalf("Open = %v, want %v", err, e)
		}
		if f.Calls(faulty.OpOpen) != 1 || len(sl.d) != 0 {
			t.Fatalf("%v: %d calls, %d sleeps; want no retry", e, f.Calls(faulty.OpOpen), len(sl.d))
		}
	}
}

func TestAttemptsExhausted(t *testing.T) {
	f := faulty.New(mem.New())
	s, _ := newRetry(f)
	for i := 1; i <= 10; i++ {
		f.FailDelete(i, httpErr(502))
	}
	if err := s.Delete(context.Background(), "k"); !errors.Is(err, httpErr(502)) {
		t.Fatalf("Delete = %v", err)
	}
	if f.Calls(faulty.OpDelete) != 4 {
		t.Fatalf("Delete calls = %d, want 4 attempts", f.Calls(faulty.OpDelete))
	}
}

func TestCancelDuringBackoff(t *testing.T) {
	f := faulty.New(mem.New())
	s := retry.New(f, retry.Options{Attempts: 10, Base: time.Hour})
	f.FailOpen(1, errTransient)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := s.Open(ctx, "k", 0, -1); !errors.Is(err, errTransient) {
		t.Fatalf("Open = %v", err)
	}
	if f.Calls(faulty.OpOpen) != 1 {
		t.Fatalf("Open calls = %d", f.Calls(faulty.OpOpen))
	}
}

type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func TestPutRetry(t *testing.T) {
	ctx := context.Background()
	data := bytes.Repeat([]byte("0123456789"), 100)
	read := func(s store.Store, key string) []byte {
		rc, err := s.Open(ctx, key, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		b, _ := io.ReadAll(rc)
		return b
	}

	// A seekable body failing midway is rewound and sent again in full.
	f := faulty.New(mem.New())
	s, _ := newRetry(f)
	f.FailPutMidway(1, 300, errTransient)
	if err := s.Put(ctx, "seek", bytes.NewReader(data[:]), store.PutOptions{}); err != nil {
		t.Fatalf("Put(seeker) = %v", err)
	}
	if got := read(f, "seek"); !bytes.Equal(got, data) {
		t.Fatalf("retried Put stored %d bytes, want %d", len(got), len(data))
	}

	// A stream that was partly consumed is not retried: a retry would store a truncated object.
	f.FailPutMidway(3, 300, errTransient)
	if err := s.Put(ctx, "stream", onlyReader{bytes.NewReader(data)}, store.PutOptions{}); !errors.Is(err, errTransient) {
		t.Fatalf("Put(stream, consumed) = %v", err)
	}
	if f.Calls(faulty.OpPut) != 3 {
		t.Fatalf("Put calls = %d, want 3 (no retry of the consumed stream)", f.Calls(faulty.OpPut))
	}
	if _, err := f.Stat(ctx, "stream"); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("consumed stream left an object")
	}

	// A stream whose failure happened before any byte was read is retried.
	f.FailPut(4, errTransient) // call 5 is the retry
	if err := s.Put(ctx, "stream", onlyReader{bytes.NewReader(data)}, store.PutOptions{}); err != nil {
		t.Fatalf("Put(stream, unread) = %v", err)
	}
	if got := read(f, "stream"); !bytes.Equal(got, data) {
		t.Fatal("retried stream stored wrong data")
	}

	// A lost acknowledgement on a conditional create meets ErrExists on retry; the object holds what
	// this Put sent, so it is the Put's own create: success (invariant 11).
	f.FailAfter(faulty.OpPut, 6, errTransient) // stored, but reported failed; call 7 retries
	if err := s.Put(ctx, "manifest", bytes.NewReader([]byte("m")), store.PutOptions{IfNotExists: true}); err != nil {
		t.Fatalf("conditional Put after lost ack = %v, want success (identical content)", err)
	}
	// Someone else's object under the key is still ErrExists, retry or not.
	f.FailPut(8, errTransient) // call 9 retries and meets the existing object
	if err := s.Put(ctx, "manifest", bytes.NewReader([]byte("other")), store.PutOptions{IfNotExists: true}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("conditional Put over other content after a retry = %v, want ErrExists", err)
	}
	// Without a failed attempt before it, identical content is ErrExists too: only our own retry is ours.
	if err := s.Put(ctx, "manifest", bytes.NewReader([]byte("m")), store.PutOptions{IfNotExists: true}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second conditional Put of the same content = %v, want ErrExists", err)
	}
}

func TestListResumesWithoutDuplicates(t *testing.T) {
	ctx := context.Background()
	f := faulty.New(mem.New())
	for _, k := range []string{"a", "b", "c", "d"} {
		if err := f.Put(ctx, k, strings.NewReader(k), store.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	s, _ := newRetry(f)
	f.FailListMidway(1, 2, errTransient)
	var keys []string
	if err := s.List(ctx, "", func(oi store.ObjectInfo) error { keys = append(keys, oi.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(keys, ",") != "a,b,c,d" {
		t.Fatalf("keys = %q", keys)
	}
	// An error from fn is the caller's own and is returned, not retried.
	stop := errTransient
	calls := 0
	if err := s.List(ctx, "", func(store.ObjectInfo) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("List with failing fn: %v after %d calls", err, calls)
	}
}

// A failing source is not a store fault: it is reported at once, not retried.
func TestSourceErrorNotRetried(t *testing.T) {
	f := faulty.New(mem.New())
	s, sl := newRetry(f)
	boom := errors.New("export stream failed")
	if err := s.Put(context.Background(), "k", onlyReader{readers.Err{E: boom}}, store.PutOptions{}); !errors.Is(err, boom) {
		t.Fatalf("Put = %v", err)
	}
	if f.Calls(faulty.OpPut) != 1 || len(sl.d) != 0 {
		t.Fatalf("source error retried: %d calls", f.Calls(faulty.OpPut))
	}
}
