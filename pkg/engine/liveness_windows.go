//go:build windows

package engine

import (
	"errors"
	"syscall"
)

const (
	processQueryLimitedInformation = 0x1000 // PROCESS_QUERY_LIMITED_INFORMATION
	errorInvalidParameter          = syscall.Errno(87)
	stillActive                    = 259 // STILL_ACTIVE, GetExitCodeProcess of a running process
)

// processGone reports whether no process with this pid runs on this host. OpenProcess fails with
// ERROR_INVALID_PARAMETER for a pid that does not exist; a process that has exited but whose handle
// someone still holds has an exit code other than STILL_ACTIVE. Any other failure (access denied)
// is "unknown", treated as alive: the lock then goes stale only by its expiry.
func processGone(pid int) bool {
	h, err := syscall.OpenProcess(processQueryLimitedInformation, false, uint32(pid))
	if err != nil {
		return errors.Is(err, errorInvalidParameter)
	}
	defer syscall.CloseHandle(h) //nolint:errcheck // a query handle; nothing to flush
	var code uint32
	if err := syscall.GetExitCodeProcess(h, &code); err != nil {
		return false
	}
	return code != stillActive
}
