package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/layout"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// ErrLocked: another process holds a conflicting lock on the repository; nothing was changed.
var ErrLocked = errclass.Locked

// LockPrefix is where lock objects live: locks/<lock-id>.json.
const LockPrefix = layout.Locks

// Lock kinds: backups, restores, verifies and copies share the repository; prune needs it alone.
const (
	LockShared    = "shared"
	LockExclusive = "exclusive"
)

// DefaultLockTTL is how long a lock object stays valid without a refresh. The holder refreshes it every
// TTL/3, so a lock older than its expiry belongs to a process that is gone.
const DefaultLockTTL = 5 * time.Minute

// MaxLockTTL bounds how far ahead a lock object may claim to be valid: holders refresh every
// TTL/3, so no honest lock claims more. A lock claiming more (a lock object written with an expiry in
// 2099 by someone holding only the bucket's credentials) is stale, with a warning, instead of
// blocking backups and prunes for ever.
const MaxLockTTL = time.Hour

// LockInfo is a lock object (docs/FORMAT.md): who holds the repository, how, and until when.
type LockInfo struct {
	ID      string    `json:"id"`
	Kind    string    `json:"kind"`
	Command string    `json:"command"`
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Actor   string    `json:"actor"`
	Time    time.Time `json:"time"`
	Expires time.Time `json:"expires"`
}

// LockedError names the holder of the conflicting lock.
type LockedError struct {
	Holder LockInfo
	Want   string
}

func (e *LockedError) Error() string {
	h := e.Holder
	return fmt.Sprintf("%s: %s lock held by %q on host %s (pid %d, %s) since %s, expires %s; wait for it to finish, "+
		"or pass --retry-lock 10m to wait; a lock whose holder is gone expires by itself",
		ErrLocked, h.Kind, h.Command, h.Host, h.PID, h.Actor, h.Time.UTC().Format(time.RFC3339), h.Expires.UTC().Format(time.RFC3339))
}

// Unwrap makes errors.Is(err, ErrLocked) hold.
func (e *LockedError) Unwrap() error { return ErrLocked }

// LockOptions choose the lock to take.
type LockOptions struct {
	Kind    string // LockShared or LockExclusive
	Command string // "backup", "prune", …
	Actor   string
	// Retry keeps trying this long while a conflicting lock is held (--retry-lock).
	Retry time.Duration
	// TTL is the validity of each lock object (default DefaultLockTTL); refreshed every TTL/3.
	TTL time.Duration
	// Poll is the first wait between attempts when retrying (default 1s, doubling up to 15s).
	Poll time.Duration
}

// Lock is a held repository lock. Its refresher keeps it alive until Release; if refreshing fails
// until the lock would expire, the context returned by Engine.Lock is cancelled so the holder stops
// before another process could take the repository over.
type Lock struct {
	e      *Engine
	mu     sync.Mutex
	info   LockInfo
	own    map[string]bool
	stop   chan struct{}
	done   chan struct{}
	cancel context.CancelFunc
	once   sync.Once
}

// Info is the lock's current object.
func (l *Lock) Info() LockInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.info
}

func lockKey(id string) string { return layout.LockKey(id) }

// ListLocks reads every lock object; unreadable ones are skipped with a warning.
func (e *Engine) ListLocks(ctx context.Context) ([]LockInfo, error) {
	var keys []string
	if err := e.Repo.Store.List(ctx, LockPrefix, func(oi store.ObjectInfo) error {
		if strings.HasSuffix(oi.Key, layout.JSONSuffix) {
			keys = append(keys, oi.Key)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list locks: %w", err)
	}
	var out []LockInfo
	for _, k := range keys {
		var li LockInfo
		if err := readJSON(ctx, e.Repo.Store, k, &li); err != nil {
			if !errors.Is(err, store.ErrNotFound) {
				e.log().Warn("unreadable lock object ignored", "key", k, "err", err)
			}
			continue
		}
		out = append(out, li)
	}
	return out, nil
}

// Lock takes a repository lock: it writes its own lock object (conditional create), then looks for
// conflicting live locks; on a conflict it removes its object again and, with Retry, tries later.
// Expired locks, and locks of a dead process on this host, are stale: an exclusive locker deletes
// them (logging whose they were), a shared one ignores them. The returned context is ctx, cancelled
// if the lock is lost.
func (e *Engine) Lock(ctx context.Context, o LockOptions) (*Lock, context.Context, error) {
	if o.Kind != LockShared && o.Kind != LockExclusive {
		return nil, nil, fmt.Errorf("%w: lock kind %q", ErrUsage, o.Kind)
	}
	if o.TTL <= 0 {
		o.TTL = DefaultLockTTL
	}
	poll := o.Poll
	if poll <= 0 {
		poll = time.Second
	}
	deadline := time.Now().Add(o.Retry)
	for {
		l, err := e.tryLock(ctx, o)
		if err == nil {
			lctx, cancel := context.WithCancel(ctx)
			l.cancel = cancel
			go l.refresh(o.TTL)
			return l, lctx, nil
		}
		if !errors.Is(err, ErrLocked) || time.Now().After(deadline) {
			return nil, nil, err
		}
		wait := poll + time.Duration(rand.Int64N(int64(poll)/2+1))
		if rem := time.Until(deadline); wait > rem {
			wait = rem + time.Millisecond
		}
		e.log().Info("repository locked, waiting", "err", err, "retry_in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(wait):
		}
		if poll < 15*time.Second {
			poll *= 2
		}
	}
}

func (e *Engine) tryLock(ctx context.Context, o LockOptions) (*Lock, error) {
	now := e.now().UTC()
	li := LockInfo{ID: repo.NewSnapshotID(), Kind: o.Kind, Command: o.Command, Host: hostname(), PID: os.Getpid(),
		Actor: actor(o.Actor), Time: now, Expires: now.Add(o.TTL)}
	if err := putJSON(ctx, e.Repo.Store, lockKey(li.ID), li); err != nil {
		return nil, fmt.Errorf("write lock: %w", err)
	}
	l := &Lock{e: e, info: li, own: map[string]bool{li.ID: true}, stop: make(chan struct{}), done: make(chan struct{})}
	others, err := e.ListLocks(ctx)
	if err != nil {
		_ = e.Repo.Store.Delete(context.WithoutCancel(ctx), lockKey(li.ID))
		return nil, err
	}
	for _, h := range others {
		if h.ID == li.ID {
			continue
		}
		if e.stale(h) {
			if o.Kind == LockExclusive {
				e.log().Warn("removing a stale lock", "holder_host", h.Host, "pid", h.PID, "command", h.Command, "since", h.Time, "expired", h.Expires)
				if err := e.Repo.Store.Delete(ctx, lockKey(h.ID)); err != nil && !errors.Is(err, store.ErrNotFound) {
					e.log().Warn("could not remove stale lock", "key", lockKey(h.ID), "err", err)
				}
			}
			continue
		}
		if o.Kind == LockExclusive || h.Kind == LockExclusive {
			_ = e.Repo.Store.Delete(context.WithoutCancel(ctx), lockKey(li.ID))
			return nil, &LockedError{Holder: h, Want: o.Kind}
		}
	}
	return l, nil
}

// stale: expired, claiming more than MaxLockTTL, or held by a process of this host that no longer runs.
func (e *Engine) stale(h LockInfo) bool {
	now := e.now()
	if !now.Before(h.Expires) {
		return true
	}
	if h.Expires.Sub(now) > MaxLockTTL || h.Expires.Sub(h.Time) > MaxLockTTL {
		e.log().Warn("ignoring a lock that claims more than the longest valid lock period (treated as stale)",
			"lock", h.ID, "holder_host", h.Host, "command", h.Command, "since", h.Time, "expires", h.Expires, "max", MaxLockTTL)
		return true
	}
	if h.Host == hostname() && h.PID > 0 && h.PID != os.Getpid() {
		if processGone(h.PID) {
			return true
		}
	}
	return false
}

// UnlockResult is one lock object 'cfbackup unlock' looked at.
type UnlockResult struct {
	Lock    LockInfo `json:"lock"`
	Stale   bool     `json:"stale"`
	Removed bool     `json:"removed"`
	Error   string   `json:"error,omitempty"`
}

// Unlock removes lock objects: only stale ones (expired, claiming more than MaxLockTTL, or of a
// dead process on this host) with staleOnly, else every one — for a lock left by a process that is
// known to be gone before it would expire. Removing a live backup's lock is safe for its data (prune
// deletes only what stayed unreferenced for its grace period) but lets a prune run beside it.
func (e *Engine) Unlock(ctx context.Context, staleOnly, dryRun bool) ([]UnlockResult, error) {
	locks, err := e.ListLocks(ctx)
	if err != nil {
		return nil, err
	}
	out := []UnlockResult{}
	for _, l := range locks {
		r := UnlockResult{Lock: l, Stale: e.stale(l)}
		if (r.Stale || !staleOnly) && !dryRun {
			if err := e.Repo.Store.Delete(ctx, lockKey(l.ID)); err != nil && !errors.Is(err, store.ErrNotFound) {
				r.Error = err.Error()
			} else {
				r.Removed = true
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// refresh replaces the lock object with a fresh one every ttl/3 (objects are never rewritten: a new
// one is created, then the old one deleted).
func (l *Lock) refresh(ttl time.Duration) {
	defer close(l.done)
	every := ttl / 3
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), every)
		err := l.renew(ctx, ttl)
		cancel()
		if err != nil {
			l.e.log().Warn("could not refresh the repository lock", "err", err)
			if !l.e.now().Before(l.Info().Expires.Add(-every / 2)) {
				l.e.log().Error("repository lock lost: stopping")
				l.cancel()
				return
			}
		}
	}
}

func (l *Lock) renew(ctx context.Context, ttl time.Duration) error {
	l.mu.Lock()
	old := l.info
	l.mu.Unlock()
	next := old
	next.ID = repo.NewSnapshotID()
	next.Expires = l.e.now().UTC().Add(ttl)
	if err := putJSON(ctx, l.e.Repo.Store, lockKey(next.ID), next); err != nil {
		return err
	}
	l.mu.Lock()
	l.info = next
	l.own[next.ID] = true
	l.mu.Unlock()
	if err := l.e.Repo.Store.Delete(ctx, lockKey(old.ID)); err != nil && !errors.Is(err, store.ErrNotFound) {
		l.e.log().Warn("could not remove the previous lock object", "key", lockKey(old.ID), "err", err)
	}
	return nil
}

// Release stops refreshing and deletes the lock object. It is safe to call more than once.
func (l *Lock) Release(ctx context.Context) error {
	var err error
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		if l.cancel != nil {
			l.cancel()
		}
		err = l.e.Repo.Store.Delete(context.WithoutCancel(ctx), lockKey(l.Info().ID))
		if errors.Is(err, store.ErrNotFound) {
			err = nil
		}
	})
	return err
}

func putJSON(ctx context.Context, st store.Store, key string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return st.Put(ctx, key, bytes.NewReader(append(b, '\n')), store.PutOptions{IfNotExists: true})
}

func readJSON(ctx context.Context, st store.Store, key string, v any) error {
	rc, err := st.Open(ctx, key, 0, -1)
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := json.NewDecoder(io.LimitReader(rc, 1<<20)).Decode(v); err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	return nil
}
