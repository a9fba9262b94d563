// Package faulty wraps a store with injected faults (failed calls, lost acknowledgements, truncated
// reads, flipped bytes) and counts what was read, so tests can prove the engine fails closed,
// resumes, and reads only the byte ranges it needs. It is for tests only.
package faulty

import (
	"context"
	"io"
	"sync"

	"github.com/cfbackup/cfbackup/pkg/store"
)

// Op names a store method for fault rules and call counters.
type Op string

// The store methods faults can target.
const (
	OpPut    Op = "put"
	OpOpen   Op = "open"
	OpStat   Op = "stat"
	OpList   Op = "list"
	OpDelete Op = "delete"
)

type fault struct {
	err   error
	after bool  // perform the call, then report err (a lost acknowledgement)
	midK  int64 // Put: fail the body after midK bytes; List: fail after midK objects (-1: off)
}

type truncation struct {
	k   int64
	err error
}

// Store injects faults into calls to the store it wraps. All methods are safe for concurrent use.
type Store struct {
	inner store.Store

	mu        sync.Mutex
	calls     map[Op]int
	faults    map[Op]map[int]fault
	truncs    map[string]truncation
	flips     map[string][]int64
	bytesRead map[string]int64
}

var _ store.Store = (*Store)(nil)

// New wraps s with no faults configured.
func New(s store.Store) *Store {
	return &Store{
		inner: s, calls: map[Op]int{}, faults: map[Op]map[int]fault{},
		truncs: map[string]truncation{}, flips: map[string][]int64{}, bytesRead: map[string]int64{},
	}
}

// Unwrap returns the wrapped store.
func (f *Store) Unwrap() store.Store { return f.inner }

func (f *Store) add(op Op, n int, ft fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.faults[op] == nil {
		f.faults[op] = map[int]fault{}
	}
	f.faults[op][n] = ft
}

// Fail makes the nth call (1-based, counted since New) of op return err without reaching the inner store.
func (f *Store) Fail(op Op, n int, err error) { f.add(op, n, fault{err: err, midK: -1}) }

// FailPut makes the nth Put fail with err before anything is written.
func (f *Store) FailPut(n int, err error) { f.Fail(OpPut, n, err) }

// FailOpen makes the nth Open fail with err.
func (f *Store) FailOpen(n int, err error) { f.Fail(OpOpen, n, err) }

// FailDelete makes the nth Delete fail with err without deleting.
func (f *Store) FailDelete(n int, err error) { f.Fail(OpDelete, n, err) }

// FailAfter makes the nth call of op reach the inner store and then report err anyway, as when
// the server acted but the answer was lost (meaningful for Put and Delete).
func (f *Store) FailAfter(op Op, n int, err error) {
	f.add(op, n, fault{err: err, after: true, midK: -1})
}

// FailPutMidway makes the nth Put's body fail with err after k bytes, as a dropped connection
// would; the inner store sees a failing reader and must leave no object.
func (f *Store) FailPutMidway(n int, k int64, err error) { f.add(OpPut, n, fault{err: err, midK: k}) }

// FailListMidway makes the nth List deliver k objects to fn and then fail with err.
func (f *Store) FailListMidway(n, k int, err error) {
	f.add(OpList, n, fault{err: err, midK: int64(k)})
}

// CutOpen makes the stream of the nth Open (1-based) fail with err after k bytes, as a connection
// dropped mid-body would; later Opens are whole.
func (f *Store) CutOpen(n int, k int64, err error) { f.add(OpOpen, n, fault{err: err, midK: k}) }

// TruncateReads makes every stream opened on key ("" = any key) end after k bytes: with a clean
// EOF when err is nil (silent truncation), else with err.
func (f *Store) TruncateReads(key string, k int64, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.truncs[key] = truncation{k, err}
}

// FlipByte makes reads of key return the byte at object offset off inverted (bit rot).
func (f *Store) FlipByte(key string, off int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.flips[key] = append(f.flips[key], off)
}

// Reset removes every fault rule; counters are kept.
func (f *Store) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = map[Op]map[int]fault{}
	f.truncs = map[string]truncation{}
	f.flips = map[string][]int64{}
}

// Calls returns how many times op was called.
func (f *Store) Calls(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// BytesRead returns the bytes delivered to callers from streams opened on key.
func (f *Store) BytesRead(key string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bytesRead[key]
}

// TotalBytesRead returns the bytes delivered from all Opens.
func (f *Store) TotalBytesRead() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var t int64
	for _, n := range f.bytesRead {
		t += n
	}
	return t
}

// enter counts a call and returns the fault planned for it, if any.
func (f *Store) enter(op Op) (fault, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	ft, ok := f.faults[op][f.calls[op]]
	return ft, ok
}

type midwayReader struct {
	r    io.Reader
	left int64
	err  error
}

func (m *midwayReader) Read(p []byte) (int, error) {
	if m.left <= 0 {
		return 0, m.err
	}
	if int64(len(p)) > m.left {
		p = p[:m.left]
	}
	n, err := m.r.Read(p)
	m.left -= int64(n)
	return n, err
}

// Put applies the Put rules, then delegates.
func (f *Store) Put(ctx context.Context, key string, r io.Reader, opts store.PutOptions) error {
	ft, ok := f.enter(OpPut)
	if ok && !ft.after && ft.midK < 0 {
		return ft.err
	}
	if ok && ft.midK >= 0 {
		r = &midwayReader{r: r, left: ft.midK, err: ft.err}
	}
	err := f.inner.Put(ctx, key, r, opts)
	if ok && ft.after && err == nil {
		return ft.err
	}
	return err
}

// Open applies the Open rules and wraps the stream with truncation, flips and counting.
func (f *Store) Open(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	ft, ok := f.enter(OpOpen)
	if ok && !ft.after && ft.midK < 0 {
		return nil, ft.err
	}
	rc, err := f.inner.Open(ctx, key, offset, length)
	if err != nil {
		return nil, err
	}
	if ok && ft.after {
		rc.Close()
		return nil, ft.err
	}
	f.mu.Lock()
	tr, hasTr := f.truncs[key]
	if !hasTr {
		tr, hasTr = f.truncs[""]
	}
	flips := append([]int64(nil), f.flips[key]...)
	f.mu.Unlock()
	fr := &faultReader{rc: rc, f: f, key: key, pos: offset, flips: flips, left: -1}
	if hasTr {
		fr.left, fr.truncErr = tr.k, tr.err
	}
	if ok && ft.midK >= 0 && (fr.left < 0 || ft.midK < fr.left) {
		fr.left, fr.truncErr = ft.midK, ft.err
	}
	return fr, nil
}

type faultReader struct {
	rc       io.ReadCloser
	f        *Store
	key      string
	pos      int64 // object offset of the next byte
	flips    []int64
	left     int64 // bytes until truncation; -1: none
	truncErr error
}

func (r *faultReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		if r.truncErr != nil {
			return 0, r.truncErr
		}
		return 0, io.EOF
	}
	if r.left > 0 && int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := r.rc.Read(p)
	for _, off := range r.flips {
		if off >= r.pos && off < r.pos+int64(n) {
			p[off-r.pos] ^= 0xff
		}
	}
	r.pos += int64(n)
	if r.left > 0 {
		r.left -= int64(n)
	}
	r.f.mu.Lock()
	r.f.bytesRead[r.key] += int64(n)
	r.f.mu.Unlock()
	return n, err
}

func (r *faultReader) Close() error { return r.rc.Close() }

// Stat applies the Stat rules, then delegates.
func (f *Store) Stat(ctx context.Context, key string) (store.ObjectInfo, error) {
	if ft, ok := f.enter(OpStat); ok && !ft.after {
		return store.ObjectInfo{}, ft.err
	}
	return f.inner.Stat(ctx, key)
}

// List applies the List rules, then delegates.
func (f *Store) List(ctx context.Context, prefix string, fn func(store.ObjectInfo) error) error {
	ft, ok := f.enter(OpList)
	if ok && !ft.after && ft.midK < 0 {
		return ft.err
	}
	if ok && ft.midK >= 0 {
		left := ft.midK
		errStop := ft.err
		var stopped bool
		err := f.inner.List(ctx, prefix, func(oi store.ObjectInfo) error {
			if left == 0 {
				stopped = true
				return errStop
			}
			left--
			return fn(oi)
		})
		if !stopped && err == nil {
			return errStop // fewer objects than k: fail at the end
		}
		return err
	}
	err := f.inner.List(ctx, prefix, fn)
	if ok && ft.after && err == nil {
		return ft.err
	}
	return err
}

// Delete applies the Delete rules, then delegates.
func (f *Store) Delete(ctx context.Context, key string) error {
	ft, ok := f.enter(OpDelete)
	if ok && !ft.after {
		return ft.err
	}
	err := f.inner.Delete(ctx, key)
	if ok && ft.after && err == nil {
		return ft.err
	}
	return err
}

// Location is the wrapped store's.
func (f *Store) Location() string { return f.inner.Location() }
