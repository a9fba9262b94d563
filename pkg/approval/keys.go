// Package approval is two-person approval for restores into protected targets (docs/APPROVAL.md).
//
// A restore into a protected target first writes a Plan (what would be overwritten, from which
// snapshot, by whom) under plans/, named by the hash of its canonical JSON. A second operator signs
// it with their own ed25519 signing key (an Approval under approvals/), and the restore proceeds only
// with a valid approval of exactly that plan's hash from someone other than the requester, unexpired,
// whose key an admin registered (an Approver under approvers/, signed by the admin's key) — and whose
// admin key the restore host pins in its own configuration. The trust root is therefore never in the
// repository and never derived from the writer secret: a backup host, which holds the writer secret
// and write access to the bucket, can write plans but cannot register an approver or forge an approval.
package approval

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"github.com/cfbackup/cfbackup/pkg/errclass"
)

// Key text prefixes: a signing key can never be mistaken for an age identity or recipient.
const (
	// PublicPrefix starts a public signing key: PublicPrefix + base64(32 bytes).
	PublicPrefix = "cfbackup-ed25519-pub:"
	// PrivatePrefix starts a private signing key file's key line: PrivatePrefix + base64(seed).
	PrivatePrefix = "CFBACKUP-ED25519-SIGNING-KEY:"
)

// Sentinels (classes map to exit codes, docs/EXIT_CODES.md).
var (
	// ErrBadKey: a signing key or public key is malformed or unreadable.
	ErrBadKey = errclass.New(errclass.Key, "bad signing key")
	// ErrUntrusted: an approver or approval does not chain to a key this host trusts.
	ErrUntrusted = errclass.New(errclass.Key, "signer not trusted")
)

// PublicKey is an approver's or admin's ed25519 public key.
type PublicKey ed25519.PublicKey

// String is the key's text form (PublicPrefix + base64), as files and approval.trusted_keys hold it.
func (k PublicKey) String() string { return PublicPrefix + base64.StdEncoding.EncodeToString(k) }

// Fingerprint is "sha256:" and the first 16 hex digits of the SHA-256 of the key bytes: short enough
// to read out over the phone when pinning a key.
func (k PublicKey) Fingerprint() string {
	sum := sha256.Sum256(k)
	return "sha256:" + hex.EncodeToString(sum[:8])
}

// Equal reports whether two keys are the same.
func (k PublicKey) Equal(o PublicKey) bool { return ed25519.PublicKey(k).Equal(ed25519.PublicKey(o)) }

// ParsePublicKey reads a public key's text form (surrounding space ignored).
func ParsePublicKey(s string) (PublicKey, error) {
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, PublicPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: a public signing key starts with %q (make one with 'cfbackup approvers keygen')", ErrBadKey, PublicPrefix)
	}
	b, err := base64.StdEncoding.DecodeString(rest)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: public signing key is not %d base64 bytes", ErrBadKey, ed25519.PublicKeySize)
	}
	return PublicKey(b), nil
}

// ReadPublicKeyFile reads a public key file (its first non-comment line).
func ReadPublicKeyFile(path string) (PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	return ParsePublicKey(firstLine(string(b)))
}

// SigningKey is a private ed25519 key; it is never printed or logged.
type SigningKey struct {
	priv ed25519.PrivateKey
}

// Public is the signing key's public key.
func (s *SigningKey) Public() PublicKey { return PublicKey(s.priv.Public().(ed25519.PublicKey)) }

func (s *SigningKey) sign(msg []byte) string {
	return base64.StdEncoding.EncodeToString(ed25519.Sign(s.priv, msg))
}

// GenerateKey makes a new signing key and the text of its private key file.
func GenerateKey() (*SigningKey, string, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return nil, "", err
	}
	k := &SigningKey{priv: ed25519.NewKeyFromSeed(seed)}
	text := fmt.Sprintf("# cfbackup signing key (docs/APPROVAL.md); public key: %s\n%s%s\n", k.Public(), PrivatePrefix, base64.StdEncoding.EncodeToString(seed))
	return k, text, nil
}

// ReadSigningKeyFile reads a private signing key file written by GenerateKey.
func ReadSigningKeyFile(path string) (*SigningKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: signing key file: %v", ErrBadKey, err)
	}
	rest, ok := strings.CutPrefix(firstLine(string(b)), PrivatePrefix)
	if !ok {
		return nil, fmt.Errorf("%w: %s is not a cfbackup signing key file (make one with 'cfbackup approvers keygen -o FILE')", ErrBadKey, path)
	}
	seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%w: %s holds a damaged signing key", ErrBadKey, path)
	}
	return &SigningKey{priv: ed25519.NewKeyFromSeed(seed)}, nil
}

// firstLine is the first line that is neither blank nor a # comment.
func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			return l
		}
	}
	return ""
}

func verifySig(pub PublicKey, msg []byte, sig string) bool {
	b, err := base64.StdEncoding.DecodeString(sig)
	return err == nil && len(pub) == ed25519.PublicKeySize && ed25519.Verify(ed25519.PublicKey(pub), msg, b)
}
