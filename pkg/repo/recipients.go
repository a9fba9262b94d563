package repo

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"strings"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/keys"
	"github.com/cfbackup/cfbackup/pkg/seal"
	"github.com/cfbackup/cfbackup/pkg/store"
)

var (
	// ErrRecipientUnknown: remove-recipient named a recipient the repository does not list.
	ErrRecipientUnknown = errclass.New(errclass.NotFound, "no such recipient")
	// ErrLastRecipient: removing it would leave a repository nobody can read.
	ErrLastRecipient = errclass.New(errclass.Refused, "refusing to remove the last recipient")
	// ErrLockout: after the change no identity the caller holds could decrypt anything new.
	ErrLockout = errclass.New(errclass.Refused, "refusing to lock the caller out")
	// ErrConfigChanged: config.json changed between reading and rewriting it (another key command).
	ErrConfigChanged = errclass.New(errclass.Repository, "the repository configuration changed meanwhile")
)

// FindRecipient returns the index in the repository's recipients of a fingerprint ("sha256:…") or a
// recipient ("age1…"); ErrRecipientUnknown when none matches.
func (r *Repo) FindRecipient(ref string) (int, error) {
	ref = strings.TrimSpace(ref)
	fp := ref
	if !strings.HasPrefix(ref, "sha256:") {
		fp = keys.Fingerprint(ref)
	}
	for i, x := range r.Config.Recipients {
		if x.Fingerprint == fp {
			return i, nil
		}
	}
	return -1, fmt.Errorf("%w: %s is not one of the %d recipients of %s (see 'cfbackup key list')", ErrRecipientUnknown, ref, len(r.Config.Recipients), r.Store.Location())
}

// SetRecipients replaces the repository's recipients: keys/writer.age is encrypted to the new set
// first, then config.json is rewritten with its MAC, so from then on every new segment, catalogue and
// the writer secret go to exactly the new set. Needs the writer secret (Authenticate). Existing
// segments keep their old headers until Rewrap. The rewrite of config.json is refused when the stored
// one differs from what Open read (another key command ran in between).
func (r *Repo) SetRecipients(ctx context.Context, recipients []string) error {
	if err := r.RequireWritable("changing recipients"); err != nil {
		return err
	}
	if r.key == nil {
		return fmt.Errorf("%w: changing recipients re-signs %s and needs the writer secret (CFBACKUP_WRITER_KEY_FILE) or an identity (--identity-file)", ErrNoKey, ConfigKey)
	}
	if len(recipients) == 0 {
		return fmt.Errorf("%w: a repository needs at least one recipient", ErrLastRecipient)
	}
	rcp, err := keys.ParseRecipients(recipients)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadRecipient, err)
	}
	if err := r.putWriterKey(ctx, r.key.Secret(), rcp); err != nil {
		return err
	}
	cfg := r.Config
	cfg.Recipients = nil
	for _, s := range recipients {
		s = strings.TrimSpace(s)
		cfg.Recipients = append(cfg.Recipients, Recipient{Recipient: s, Fingerprint: keys.Fingerprint(s)})
	}
	return r.putConfig(ctx, cfg, r.key.Secret())
}

// putWriterKey stores the writer secret encrypted to rcp (replacing keys/writer.age).
func (r *Repo) putWriterKey(ctx context.Context, secret []byte, rcp []age.Recipient) error {
	var enc bytes.Buffer
	w, err := age.Encrypt(&enc, rcp...)
	if err != nil {
		return fmt.Errorf("encrypt writer secret: %w", err)
	}
	if _, err := w.Write([]byte(hex.EncodeToString(secret) + "\n")); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	if err := r.Store.Put(ctx, WriterKeyKey, &enc, store.PutOptions{}); err != nil {
		return fmt.Errorf("store writer secret %s: %w", WriterKeyKey, err)
	}
	return nil
}

// putConfig signs cfg with secret and replaces config.json, after checking that the stored one is
// still the one this Repo read. r then holds the new configuration and key.
func (r *Repo) putConfig(ctx context.Context, cfg Config, secret []byte) error {
	rc, err := r.Store.Open(ctx, ConfigKey, 0, -1)
	if err != nil {
		return fmt.Errorf("re-read %s: %w", ConfigKey, err)
	}
	cur, err := io.ReadAll(io.LimitReader(store.ContextReader(ctx, rc), maxConfigSize+1))
	rc.Close()
	if err != nil {
		return fmt.Errorf("re-read %s: %w", ConfigKey, err)
	}
	if !bytes.Equal(cur, r.raw) {
		return fmt.Errorf("%w: %s at %s was rewritten since this command read it (another key command?): run it again", ErrConfigChanged, ConfigKey, r.Store.Location())
	}
	key := seal.NewKey(secret)
	b, err := SignedConfig(key, &cfg)
	if err != nil {
		return err
	}
	if err := r.Store.Put(ctx, ConfigKey, bytes.NewReader(b), store.PutOptions{}); err != nil {
		return fmt.Errorf("write %s: %w", ConfigKey, err)
	}
	*r = *newRepo(r.Store, cfg, b)
	r.key = key
	return nil
}

// Decrypts reports whether one of ids can decrypt what is encrypted to the recipients: a dry
// encryption to them, decrypted with ids (works for every recipient type age knows).
func Decrypts(recipients []string, ids []age.Identity) bool {
	rcp, err := keys.ParseRecipients(recipients)
	if err != nil || len(ids) == 0 {
		return false
	}
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, rcp...)
	if err != nil {
		return false
	}
	if _, err := w.Write([]byte("probe")); err != nil || w.Close() != nil {
		return false
	}
	_, err = age.Decrypt(&buf, ids...)
	return err == nil
}

// MatchingRecipients returns the fingerprints of the repository's recipients that one of ids decrypts.
func (r *Repo) MatchingRecipients(ids []age.Identity) []string {
	var out []string
	for _, x := range r.Config.Recipients {
		if Decrypts([]string{x.Recipient}, ids) {
			out = append(out, x.Fingerprint)
		}
	}
	return out
}
