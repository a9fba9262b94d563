// Package retry wraps any store so that transient failures (network errors, 5xx, 408, 429) are
// retried with exponential backoff and jitter, while answers that will not change on retry
// (not found, exists, read-only, invalid key, other 4xx, the caller's cancellation) return at once.
//
// Streams returned by Open resume after a cut (ranged, pinned to one version where the store can),
// so only data that is wrong after a complete read ever reaches the caller as damage.
//
// Put consumes its reader, so it is retried only when that is safe: when the reader is an
// io.Seeker (rewound to where it started) or when the failed attempt read no byte at all.
// A conditional create retried after a failed attempt that meets ErrExists compares the object with
// what it sent (a seekable body is replayable): identical content is its own create whose answer was
// lost, so it succeeds; the S3 store does the same for the SDK's own retries.
// Streams of unknown size are the S3 store's job: it retries each part internally (the SDK
// retryer re-sends a part from its buffer), so a transient error there rarely reaches this layer.
package retry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"time"

	"github.com/cfbackup/cfbackup/pkg/store"
)

// Options tunes the backoff. Zero values take the defaults.
type Options struct {
	// Attempts is the total number of tries including the first (default 5).
	Attempts int
	// Base is the first backoff (default 200ms); each retry doubles it up to Max (default 10s).
	Base, Max time.Duration
	// Sleep waits d or until ctx is done (default: a timer); tests inject a fake.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Store retries the calls of the store it wraps.
type Store struct {
	inner store.Store
	opts  Options
}

var _ store.Store = (*Store)(nil)

// New wraps s.
func New(s store.Store, opts Options) *Store {
	if opts.Attempts <= 0 {
		opts.Attempts = 5
	}
	if opts.Base <= 0 {
		opts.Base = 200 * time.Millisecond
	}
	if opts.Max <= 0 {
		opts.Max = 10 * time.Second
	}
	if opts.Max < opts.Base {
		opts.Max = opts.Base
	}
	if opts.Sleep == nil {
		opts.Sleep = sleep
	}
	return &Store{inner: s, opts: opts}
}

// Unwrap returns the wrapped store, so callers can find optional capabilities beneath the decorator.
func (s *Store) Unwrap() store.Store { return s.inner }

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Retryable reports whether err is worth retrying: anything but the store's definite answers,
// context errors, permission and key errors, and 4xx statuses other than 408 and 429.
func Retryable(err error) bool {
	switch {
	case err == nil,
		errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrExists), errors.Is(err, store.ErrReadOnly),
		errors.Is(err, store.ErrInvalidKey), errors.Is(err, store.ErrChanged), errors.Is(err, store.ErrArchived),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, fs.ErrPermission):
		return false
	}
	var sc interface{ HTTPStatusCode() int }
	if errors.As(err, &sc) {
		c := sc.HTTPStatusCode()
		if c >= 400 && c < 500 && c != 408 && c != 429 {
			return false
		}
	}
	return true
}

// backoff returns the wait before retry number n (0-based): exponential, capped, with "equal
// jitter" (half fixed, half random) so that many clients do not retry in lockstep.
func (s *Store) backoff(n int) time.Duration {
	d := s.opts.Base << min(n, 30)
	if d > s.opts.Max || d <= 0 {
		d = s.opts.Max
	}
	half := d / 2
	return half + rand.N(half+1)
}

// do runs fn until it succeeds, fails permanently, or the attempts are used up.
func (s *Store) do(ctx context.Context, fn func() error) error {
	var err error
	for n := 0; ; n++ {
		err = fn()
		var p permanent
		if errors.As(err, &p) {
			return p.err
		}
		if !Retryable(err) || n+1 >= s.opts.Attempts {
			return err
		}
		if ctx.Err() != nil {
			return err
		}
		if serr := s.opts.Sleep(ctx, s.backoff(n)); serr != nil {
			return err
		}
	}
}

// countingReader records whether any byte was consumed (which makes a retry of a plain stream
// unsafe) and the reader's own error (a failing source is not the store's transient fault).
type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

// seekingCounter keeps a seekable body seekable for the inner store while counting.
type seekingCounter struct {
	*countingReader
	s io.Seeker
}

func (s seekingCounter) Seek(off int64, whence int) (int64, error) { return s.s.Seek(off, whence) }

// Put retries only while the body can be replayed; see the package comment.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts store.PutOptions) error {
	seeker, canSeek := r.(io.Seeker)
	var start int64
	if canSeek {
		var err error
		if start, err = seeker.Seek(0, io.SeekCurrent); err != nil {
			canSeek = false
		}
	}
	first, failedBefore := true, false
	return s.do(ctx, func() error {
		if !first && canSeek {
			if _, err := seeker.Seek(start, io.SeekStart); err != nil {
				return permanent{err}
			}
		}
		first = false
		cr := &countingReader{r: r}
		var body io.Reader = cr
		if canSeek {
			body = seekingCounter{cr, seeker}
		}
		err := s.inner.Put(ctx, key, body, opts)
		switch {
		case err == nil:
			return nil
		case opts.IfNotExists && failedBefore && canSeek && errors.Is(err, store.ErrExists):
			// Our failed attempt may have stored the object and lost the answer: identical
			// content is our own create (invariant 11), anything else someone else's.
			same, cerr := s.sameContent(ctx, key, seeker, start)
			if cerr != nil {
				return fmt.Errorf("put %s: a retried conditional create found the key taken and could not compare it with what was sent: %w", key, cerr)
			}
			if same {
				return nil
			}
			return err
		case cr.err != nil:
			return permanent{err} // the source failed, not the store
		case !canSeek && cr.n > 0:
			return permanent{err} // the stream is partly consumed: a retry would store a truncated object
		}
		if Retryable(err) {
			failedBefore = true
		}
		return err
	})
}

// sameContent reports whether key holds exactly the bytes of body from start (SHA-256 of both).
func (s *Store) sameContent(ctx context.Context, key string, body io.Seeker, start int64) (bool, error) {
	if _, err := body.Seek(start, io.SeekStart); err != nil {
		return false, err
	}
	want := sha256.New()
	n, err := io.Copy(want, body.(io.Reader))
	if err != nil {
		return false, err
	}
	info, err := s.Stat(ctx, key)
	if err != nil {
		return false, err
	}
	if info.Size != n {
		return false, nil
	}
	rc, err := s.Open(ctx, key, 0, -1) // resuming, retried
	if err != nil {
		return false, err
	}
	defer rc.Close()
	got := sha256.New()
	if _, err := io.Copy(got, rc); err != nil {
		return false, err
	}
	return bytes.Equal(got.Sum(nil), want.Sum(nil)), nil
}

// permanent stops retries while keeping the error chain intact.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Open retries opening, and the returned stream resumes: when a read fails with a retryable error (a
// connection dropped or cut mid-body: io.ErrUnexpectedEOF, a reset), the rest is opened again from the
// byte reached, pinned to the version first read where the store can (store.PinnedOpener), and the
// caller reads on as if nothing happened. Attempts count failures in a row without a byte of progress,
// so a long stream survives any number of isolated cuts. A clean EOF is passed on as it is: whether the
// object has the expected length is the caller's check (that, after a complete read, is damage).
func (s *Store) Open(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	r := &resumingReader{s: s, ctx: ctx, key: key, offset: offset, length: length}
	if err := s.do(ctx, func() error { return r.open() }); err != nil {
		return nil, err
	}
	return r, nil
}

type resumingReader struct {
	s       *Store
	ctx     context.Context
	key     string
	offset  int64 // of the first byte asked for
	length  int64 // asked for; < 0: to the end
	pos     int64 // bytes delivered so far
	version string
	rc      io.ReadCloser
	err     error // sticky final error
	closed  bool
}

// open (re)opens the stream at the byte reached.
func (r *resumingReader) open() error {
	length := r.length
	if length >= 0 {
		length -= r.pos
	}
	if p, ok := r.s.inner.(store.PinnedOpener); ok {
		rc, v, err := p.OpenPinned(r.ctx, r.key, r.offset+r.pos, length, r.version)
		if err != nil {
			return err
		}
		if r.version == "" {
			r.version = v
		}
		r.rc = rc
		return nil
	}
	rc, err := r.s.inner.Open(r.ctx, r.key, r.offset+r.pos, length)
	if err != nil {
		return err
	}
	r.rc = rc
	return nil
}

func (r *resumingReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.closed {
		return 0, errors.New("read of a closed stream")
	}
	if r.length >= 0 && r.pos >= r.length {
		return 0, io.EOF
	}
	for failures := 0; ; {
		n, err := r.rc.Read(p)
		r.pos += int64(n)
		if err == nil || err == io.EOF {
			return n, err
		}
		if !Retryable(err) || r.ctx.Err() != nil {
			r.err = err
			return n, err
		}
		if n > 0 {
			failures = 0
		}
		// Cut mid-body: reopen from r.pos; this call returns the bytes it got (if any) first.
		_ = r.rc.Close()
		r.rc = nil
		for r.rc == nil {
			failures++
			if failures >= r.s.opts.Attempts {
				r.err = err
				return n, err
			}
			if serr := r.s.opts.Sleep(r.ctx, r.s.backoff(failures-1)); serr != nil {
				r.err = err
				return n, err
			}
			if r.length >= 0 && r.pos >= r.length {
				r.rc = io.NopCloser(bytes.NewReader(nil))
				break
			}
			oerr := r.open()
			if oerr != nil && !Retryable(oerr) {
				r.err = fmt.Errorf("resume reading %s at byte %d: %w (after: %w)", r.key, r.offset+r.pos, oerr, err)
				return n, r.err
			}
			if oerr != nil {
				err = oerr
			}
		}
		if n > 0 {
			return n, nil
		}
	}
}

func (r *resumingReader) Close() error {
	r.closed = true
	if r.rc == nil {
		return nil
	}
	err := r.rc.Close()
	r.rc = nil
	return err
}

// Stat is idempotent and retried freely.
func (s *Store) Stat(ctx context.Context, key string) (store.ObjectInfo, error) {
	var info store.ObjectInfo
	err := s.do(ctx, func() (err error) {
		info, err = s.inner.Stat(ctx, key)
		return err
	})
	return info, err
}

// List is retried; since keys arrive in lexical order, a retry skips every key up to the last one
// already delivered, so fn sees each key once. An error from fn itself is returned, not retried.
func (s *Store) List(ctx context.Context, prefix string, fn func(store.ObjectInfo) error) error {
	var (
		last      string
		delivered bool
		fnErr     error
	)
	return s.do(ctx, func() error {
		err := s.inner.List(ctx, prefix, func(oi store.ObjectInfo) error {
			if delivered && oi.Key <= last {
				return nil
			}
			if err := fn(oi); err != nil {
				fnErr = err
				return err
			}
			last, delivered = oi.Key, true
			return nil
		})
		if fnErr != nil {
			return permanent{err}
		}
		return err
	})
}

// Delete is retried; a retry after a delete that succeeded but whose answer was lost reports
// ErrNotFound, which callers that prune treat as done.
func (s *Store) Delete(ctx context.Context, key string) error {
	return s.do(ctx, func() error { return s.inner.Delete(ctx, key) })
}

// Location is the wrapped store's.
func (s *Store) Location() string { return s.inner.Location() }
