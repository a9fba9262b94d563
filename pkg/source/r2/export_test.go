package r2

import (
	"context"

	"github.com/cfbackup/cfbackup/pkg/s3api"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// OpenJournal decrypts a journal object with a writer secret (tests inspect what a run journaled).
func OpenJournal(secret, b []byte) (*Journal, error) { return deriveKeys(secret).openJournal(b) }

// SetPageEntries makes index pages hold n entries (page boundaries with few objects); the returned
// func restores the default.
func SetPageEntries(n int) func() {
	old := pageEntries
	pageEntries = n
	return func() { pageEntries = old }
}

// WriteV1Index makes backups write the format 1 index, as cfbackup did before format 2; the returned
// func restores format 2.
func WriteV1Index() func() {
	writeV1Index = true
	return func() { writeV1Index = false }
}

// CountIndex reads a stored index through (checking its footer) and counts its entries.
func CountIndex(secret []byte, st store.Store, key string) (int, error) {
	rc, err := st.Open(context.Background(), key, 0, -1)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	s, err := deriveKeys(secret).openIndexStream(rc, "src")
	if err != nil {
		return 0, err
	}
	n := 0
	for {
		_, more, err := s.Next()
		if err != nil || !more {
			return n, err
		}
		n++
	}
}

// SetBackupWindow makes a bucket backup work on n listed objects at a time (window boundaries with
// few objects); the returned func restores the default.
func SetBackupWindow(n int) func() {
	old := backupWindow
	backupWindow = n
	return func() { backupWindow = old }
}

// SetJournalMaxWaiting bounds the objects a resume journal holds until their segment completes;
// the returned func restores the default.
func SetJournalMaxWaiting(n int) func() {
	old := journalMaxWaiting
	journalMaxWaiting = n
	return func() { journalMaxWaiting = old }
}

// SetRestorePoolHook calls f with each bucket restore's buffer pool and its bound when the restore
// ends; the returned func removes it.
func SetRestorePoolHook(f func(pool *s3api.Pool, bound int64)) func() {
	restorePoolHook = f
	return func() { restorePoolHook = nil }
}
