// Package keys creates, reads and names the age keys that protect a repository.
//
// Backup hosts only ever hold recipients (public keys), so they can write segments they can never read
// back; restore and deep verification load identities (secret keys) from a file. Both X25519 and age's
// post-quantum hybrid (ML-KEM-768 + X25519) keys are supported. age refuses to encrypt one file to a mix
// of post-quantum and classic recipients (the "postquantum" label of HybridRecipient), so ParseRecipients
// refuses such a mix up front with ErrMixedRecipients instead of failing at the first segment.
//
// Secret key material never appears in an error message.
package keys

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"filippo.io/age"
	"github.com/cfbackup/cfbackup/pkg/errclass"
)

// Sentinel errors callers branch on with errors.Is.
var (
	// ErrExists: WriteIdentityFile refuses to replace an existing key file.
	ErrExists = errclass.New(errclass.Refused, "key file already exists")
	// ErrBadRecipient: a recipient entry could not be parsed.
	ErrBadRecipient = errclass.New(errclass.Key, "invalid recipient")
	// ErrBadIdentity: an identity file holds something that is not a usable secret key.
	ErrBadIdentity = errclass.New(errclass.Key, "invalid identity")
	// ErrMixedRecipients: post-quantum and classic recipients cannot encrypt the same file.
	ErrMixedRecipients = errclass.New(errclass.Key, "cannot mix post-quantum (age1pq1…) and classic recipients")
	// ErrNoKeys: a recipients or identity list is empty.
	ErrNoKeys = errclass.New(errclass.Key, "no keys found")
	// ErrInsecurePermissions: an identity file is readable by group or others.
	ErrInsecurePermissions = errclass.New(errclass.Key, "identity file is readable by group or others")
)

const (
	secretPrefix   = "AGE-SECRET-KEY-"
	pqSecretPrefix = "AGE-SECRET-KEY-PQ-1"
	pqPrefix       = "age1pq1"
	x25519Prefix   = "age1"
	maxFileSize    = 1 << 24 // like age: 16 MiB is far beyond any sane key file
)

// Generate makes a new key pair so `cfbackup key generate` does not need the age-keygen binary.
// pq selects the post-quantum hybrid type (recipient "age1pq1…", needs age ≥ 1.3 to decrypt by hand).
func Generate(pq bool) (identity string, recipient string, err error) {
	if pq {
		id, err := age.GenerateHybridIdentity()
		if err != nil {
			return "", "", fmt.Errorf("generate hybrid identity: %w", err)
		}
		return id.String(), id.Recipient().String(), nil
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return "", "", fmt.Errorf("generate x25519 identity: %w", err)
	}
	return id.String(), id.Recipient().String(), nil
}

// WriteIdentityFile stores a new key in the same layout age-keygen uses, so the file works with
// `age -d -i`. It never replaces an existing file (ErrExists), creates it 0600 and fsyncs it
// and its directory, so a key reported as written survives a crash.
func WriteIdentityFile(path, identity, recipient string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %s", ErrExists, path)
		}
		return fmt.Errorf("create identity file: %w", err)
	}
	fail := func(err error) error {
		_ = f.Close()
		_ = os.Remove(path)
		return err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# created: %s\n", time.Now().Format(time.RFC3339))
	fmt.Fprintf(&b, "# public key: %s\n", recipient)
	fmt.Fprintf(&b, "%s\n", identity)
	if _, err := f.Write(b.Bytes()); err != nil {
		return fail(fmt.Errorf("write identity file: %w", err))
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("sync identity file: %w", err))
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("close identity file: %w", err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync() // best effort: not every filesystem supports syncing a directory
		_ = d.Close()
	}
	return nil
}

// ParseRecipients turns configured public keys into age recipients. Blank lines and lines starting
// with '#' are skipped. It accepts X25519 (age1…) and hybrid post-quantum (age1pq1…) keys
// (SSH keys are refused with a hint), and refuses a mix of post-quantum and classic keys (ErrMixedRecipients)
// because age would refuse to encrypt to it.
func ParseRecipients(lines []string) ([]age.Recipient, error) {
	var (
		recs        []age.Recipient
		pq, classic string
	)
	for i, raw := range lines {
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		r, err := parseRecipient(line)
		if err != nil {
			return nil, fmt.Errorf("recipient %d: %w", i+1, err)
		}
		if _, ok := r.(*age.HybridRecipient); ok {
			if pq == "" {
				pq = short(line)
			}
		} else if classic == "" {
			classic = short(line)
		}
		if pq != "" && classic != "" {
			return nil, fmt.Errorf("%w: %s and %s", ErrMixedRecipients, pq, classic)
		}
		recs = append(recs, r)
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("%w: no recipients given", ErrNoKeys)
	}
	return recs, nil
}

func parseRecipient(s string) (age.Recipient, error) {
	switch {
	case strings.HasPrefix(strings.ToUpper(s), secretPrefix):
		// Never echo a secret key back.
		return nil, fmt.Errorf("%w: this is a secret key (AGE-SECRET-KEY-…), not a public key", ErrBadRecipient)
	case strings.HasPrefix(strings.ToLower(s), pqPrefix):
		r, err := age.ParseHybridRecipient(strings.ToLower(s))
		if err != nil {
			return nil, fmt.Errorf("%w %s: %v", ErrBadRecipient, short(s), err)
		}
		return r, nil
	case strings.HasPrefix(strings.ToLower(s), x25519Prefix):
		r, err := age.ParseX25519Recipient(strings.ToLower(s))
		if err != nil {
			return nil, fmt.Errorf("%w %s: %v", ErrBadRecipient, short(s), err)
		}
		return r, nil
	case strings.HasPrefix(s, "ssh-"):
		// agessh would pull filippo.io/edwards25519 into go.mod; SSH keys are not recommended
		// for applications by age's own documentation.
		return nil, fmt.Errorf("%w %s: SSH keys are not supported, use an age key (age-keygen)", ErrBadRecipient, short(s))
	default:
		return nil, fmt.Errorf("%w %s: unknown type (want age1…, age1pq1… generated by age-keygen)", ErrBadRecipient, short(s))
	}
}

// ReadRecipientsFile reads a file in the syntax of age's -R flag: one recipient per line,
// '#' comments and blank lines ignored.
func ReadRecipientsFile(path string) ([]age.Recipient, error) {
	lines, err := readLines(path)
	if err != nil {
		return nil, err
	}
	recs, err := ParseRecipients(lines)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return recs, nil
}

// ReadIdentityFile loads the secret keys (X25519 and hybrid) from a file in age-keygen's format.
// It does not refuse a group- or world-readable file (secret mounts such as Kubernetes volumes are often
// 0644 behind a private directory); callers that want to warn use CheckPermissions.
// A file that holds a public key instead of a secret key gets an error saying so.
func ReadIdentityFile(path string) ([]age.Identity, error) {
	lines, err := readLines(path)
	if err != nil {
		return nil, err
	}
	var ids []age.Identity
	for i, raw := range lines {
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var id age.Identity
		switch up := strings.ToUpper(line); {
		case strings.HasPrefix(up, pqSecretPrefix):
			id, err = age.ParseHybridIdentity(up)
		case strings.HasPrefix(up, secretPrefix):
			id, err = age.ParseX25519Identity(up)
		case strings.HasPrefix(strings.ToLower(line), x25519Prefix), strings.HasPrefix(line, "ssh-"):
			return nil, fmt.Errorf("%w: %s line %d holds a public key (recipient), not a secret key", ErrBadIdentity, path, i+1)
		default:
			err = errors.New("unknown key type")
		}
		if err != nil {
			// age's parse errors do not include the key; ours must not either.
			return nil, fmt.Errorf("%w: %s line %d: %v", ErrBadIdentity, path, i+1, err)
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w: %s holds no secret key", ErrNoKeys, path)
	}
	return ids, nil
}

// CheckPermissions reports ErrInsecurePermissions when an identity file is readable by group or others,
// so the CLI can warn without refusing.
func CheckPermissions(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("stat identity file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%w: %s has mode %04o (want 0600)", ErrInsecurePermissions, path, fi.Mode().Perm())
	}
	return nil
}

// Fingerprint names a recipient in config.json and reports without the full (up to 2 KB for
// post-quantum) key: "sha256:" and the first 16 hex digits of the SHA-256 of the canonical string
// (trimmed; age keys lower-cased, as Bech32 is case-insensitive).
func Fingerprint(recipient string) string {
	s := canonical(recipient)
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])[:16]
}

func canonical(recipient string) string {
	s := strings.TrimSpace(recipient)
	if strings.HasPrefix(strings.ToLower(s), x25519Prefix) {
		return strings.ToLower(s)
	}
	return s
}

// short shortens a (public) key for error messages: post-quantum keys are ~2000 characters.
func short(s string) string {
	if len(s) > 24 {
		return fmt.Sprintf("%q", s[:20]+"…")
	}
	return fmt.Sprintf("%q", s)
}

func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open key file: %w", err)
	}
	defer f.Close()
	lr := &io.LimitedReader{R: f, N: maxFileSize + 1}
	sc := bufio.NewScanner(lr)
	sc.Buffer(make([]byte, 0, 64*1024), maxFileSize)
	var lines []string
	for sc.Scan() {
		if !utf8.Valid(sc.Bytes()) {
			return nil, fmt.Errorf("%w: %s is not valid UTF-8", ErrBadIdentity, path)
		}
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read key file %s: %w", path, err)
	}
	if lr.N == 0 {
		return nil, fmt.Errorf("key file %s is too large", path)
	}
	return lines, nil
}
