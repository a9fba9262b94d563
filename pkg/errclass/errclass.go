// Package errclass gives every failure a class, so that one table (the CLI's exit codes) can map any
// error to its documented exit status without knowing which component or package raised it.
//
// A package declares its sentinel errors with New(class, text): errors.Is matches the sentinel itself
// (callers that care about the exact cause) and its class (the exit code mapping, the audit trail).
// Errors without a sentinel are wrapped at a package boundary with Wrap.
package errclass

import (
	"errors"
	"sort"
	"sync"
)

// Class is a kind of failure with its own exit status (docs/EXIT_CODES.md). Its text is fixed and
// names no table, object, file or URL, so the plaintext audit trail may record it.
type Class struct {
	name string
	rank int // lower ranks win when an error wraps several classes
}

func (c *Class) Error() string { return c.name }

// Name is the class's short name as the audit trail and --json errors spell it.
func (c *Class) Name() string { return c.name }

// The classes, most specific first (Of picks the first an error wraps).
var (
	// Interrupted: the run was cancelled (Ctrl-C, SIGTERM, a deadline).
	Interrupted = &Class{"interrupted", 0}
	// Differs: a comparison found differences (restore --component config --diff).
	Differs = &Class{"differs", 1}
	// Locked: another process holds a conflicting repository lock; nothing was changed.
	Locked = &Class{"repository is locked", 2}
	// Policy: a retention policy is violated (prune --enforce).
	Policy = &Class{"retention policy violated", 3}
	// Protected: a restore into a protected target needs a valid two-person approval or a passed
	// test-restore first (docs/APPROVAL.md); nothing was changed.
	Protected = &Class{"protected target", 3}
	// Incomplete: a sharded run is not complete yet (a shard has not committed); nothing was merged.
	Incomplete = &Class{"incomplete", 3}
	// Usage: a flag, argument, setting or option value is malformed.
	Usage = &Class{"invalid option", 4}
	// Integrity: stored or restored data does not match what was recorded, or is not authentic.
	Integrity = &Class{"integrity check failed", 5}
	// Repository: no repository, one already there, or one of an unsupported format.
	Repository = &Class{"repository problem", 6}
	// Key: no identity or recipient, or none that opens the data.
	Key = &Class{"key problem", 7}
	// NotFound: the snapshot, source, item or target asked for does not exist.
	NotFound = &Class{"not found", 8}
	// Refused: the target exists or holds data, or the operation needs confirmation; nothing was changed.
	Refused = &Class{"refused", 9}
	// Remote: a remote API (Cloudflare, R2, the Worker module) refused, failed or could not be reached.
	Remote = &Class{"remote API problem", 10}
	// Failure: anything else (storage errors, malformed input that is no one's fault in particular, bugs).
	Failure = &Class{"failed", 11}
)

// Classes lists every class, most specific first.
func Classes() []*Class {
	return []*Class{Interrupted, Differs, Locked, Policy, Protected, Incomplete, Usage, Integrity, Repository, Key, NotFound, Refused, Remote, Failure}
}

type sentinel struct {
	text  string
	class *Class
}

func (s *sentinel) Error() string { return s.text }

// Is makes errors.Is(err, class) true for the sentinel's class (identity is checked by errors.Is itself).
func (s *sentinel) Is(target error) bool { return target == s.class }

var (
	mu        sync.Mutex
	sentinels []error
)

// New declares a sentinel error of class c. Its text must be fixed (no names, no URLs): the audit
// trail records it. Call it only from package-level var declarations.
func New(c *Class, text string) error {
	s := &sentinel{text: text, class: c}
	mu.Lock()
	sentinels = append(sentinels, s)
	mu.Unlock()
	return s
}

// Sentinels lists every sentinel declared with New, in declaration order.
func Sentinels() []error {
	mu.Lock()
	defer mu.Unlock()
	return append([]error(nil), sentinels...)
}

// ClassOf says which class a sentinel declared with New belongs to (nil for other errors).
func ClassOf(sentinelErr error) *Class {
	if s, ok := sentinelErr.(*sentinel); ok {
		return s.class
	}
	return nil
}

type wrapped struct {
	err   error
	class *Class
}

func (w *wrapped) Error() string        { return w.err.Error() }
func (w *wrapped) Unwrap() error        { return w.err }
func (w *wrapped) Is(target error) bool { return target == w.class }

// Wrap gives err the class c at a package boundary; its message is unchanged. Wrap(c, nil) is nil.
func Wrap(c *Class, err error) error {
	if err == nil {
		return nil
	}
	return &wrapped{err: err, class: c}
}

// Of is the most specific class err wraps, or nil when it wraps none.
func Of(err error) *Class {
	if err == nil {
		return nil
	}
	for _, c := range Classes() {
		if errors.Is(err, c) {
			return c
		}
	}
	return nil
}

// Texts lists the fixed texts of the declared sentinels err wraps (or, when it wraps none, of its
// classes), sorted and without repeats: what the audit trail may say about an error without quoting
// its message.
func Texts(err error) []string {
	if err == nil {
		return nil
	}
	if out := texts(err, Sentinels()); len(out) > 0 {
		return out
	}
	var cs []error
	for _, c := range Classes() {
		cs = append(cs, c)
	}
	return texts(err, cs)
}

func texts(err error, errs []error) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range errs {
		if errors.Is(err, s) && !seen[s.Error()] {
			seen[s.Error()] = true
			out = append(out, s.Error())
		}
	}
	sort.Strings(out)
	return out
}
