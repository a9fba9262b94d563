// Package readers holds io.Readers that tests use to make a write fail or race at a chosen byte.
package readers

import "io"

// Err fails every Read with E: appended with io.MultiReader, it breaks a stream after its data.
type Err struct{ E error }

// Read fails with E.
func (e Err) Read([]byte) (int, error) { return 0, e.E }

// Hook reads R and calls Fn once, when At bytes have been read: it lets a test act (another writer's
// Put) at an exact point of an upload.
type Hook struct {
	R    io.Reader
	At   int64
	Fn   func()
	n    int64
	done bool
}

// Read reads R, calling Fn once At bytes are through.
func (h *Hook) Read(p []byte) (int, error) {
	n, err := h.R.Read(p)
	h.n += int64(n)
	if !h.done && h.n >= h.At {
		h.done = true
		h.Fn()
	}
	return n, err
}
