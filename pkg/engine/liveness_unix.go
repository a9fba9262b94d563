//go:build unix

package engine

import (
	"errors"
	"syscall"
)

// processGone reports whether no process with this pid runs on this host: signal 0 checks for
// existence without delivering anything, and ESRCH is the only answer that proves absence (EPERM
// means it runs under another user), so a lock is never taken over from a live holder.
func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
