package r2

// OpenJournal decrypts a journal object with a writer secret (tests inspect what a run journaled).
func OpenJournal(secret, b []byte) (*Journal, error) { return deriveKeys(secret).openJournal(b) }
