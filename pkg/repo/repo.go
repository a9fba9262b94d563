// Package repo opens, creates and reads a cfbackup repository: config.json, the writer secret and the
// snapshot manifests, on top of any store.Store.
//
// It is the one place that knows the repository layout (docs/FORMAT.md) apart from the segment format
// (pkg/archive) and the manifest shape (pkg/manifest), so every command agrees on where things live
// and on how an unknown format version is refused (invariant 4: fail closed).
package repo

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/keys"
	"github.com/cfbackup/cfbackup/pkg/layout"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/seal"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/retain"
)

// FormatVersion is the repository format this build writes and the highest major version it opens.
// Format 2 authenticates config.json and every manifest with the writer secret (docs/SECURITY.md);
// format 1 repositories stay readable and are upgraded in place by 'cfbackup migrate'.
const FormatVersion = 2

// Object keys of the fixed parts of a repository.
const (
	ConfigKey    = layout.Config
	WriterKeyKey = layout.WriterKey
)

var (
	// ErrNotRepo: there is no config.json at the location.
	ErrNotRepo = errclass.New(errclass.Repository, "no cfbackup repository here")
	// ErrExists: init found a repository already there.
	ErrExists = errclass.New(errclass.Repository, "a cfbackup repository already exists here")
	// ErrVersion: the repository was made by a newer, incompatible cfbackup.
	ErrVersion = errclass.New(errclass.Repository, "unsupported repository format version")
	// ErrSnapshotNotFound: no snapshot matches the id (or the repository has none).
	ErrSnapshotNotFound = errclass.New(errclass.NotFound, "snapshot not found")
	// ErrBadRecipient: a recipient could not be parsed.
	ErrBadRecipient = errclass.New(errclass.Key, "bad recipient")
	// ErrNoRecipients: init was given no recipient.
	ErrNoRecipients = errclass.New(errclass.Key, "no recipient given")
	// ErrObjectLock: Object Lock retention was asked for where the store cannot provide it.
	ErrObjectLock = errclass.New(errclass.Repository, "object lock unavailable")
	// ErrUnauthenticated: config.json or a manifest does not authenticate with the writer secret:
	// someone without the key made or changed it (a bucket writer), or the key is another repository's.
	ErrUnauthenticated = errclass.New(errclass.Integrity, "does not authenticate")
	// ErrNoKey: the command must authenticate the repository and has neither the writer secret nor an identity.
	ErrNoKey = errclass.New(errclass.Key, "no key to authenticate the repository")
)

// Recipient is a public key every segment and catalogue is encrypted to.
type Recipient struct {
	Recipient   string `json:"recipient"`
	Fingerprint string `json:"fingerprint"`
}

// Config is config.json: plaintext, public.
type Config struct {
	Format     int         `json:"format"`
	ID         string      `json:"id"`
	Created    time.Time   `json:"created"`
	Recipients []Recipient `json:"recipients"`
	// SegmentSize is the roll-over threshold of segments; ChunkSize the largest tar entry.
	SegmentSize int64 `json:"segment_size"`
	ChunkSize   int   `json:"chunk_size"`
	// WriterKey is where the writer secret (for keyed hashes of item names) is kept, encrypted to the recipients.
	WriterKey string `json:"writer_key"`
	// ObjectLock, when set, puts S3 Object Lock retention on everything written (init
	// --object-lock-retention); prune extends it for what it keeps.
	ObjectLock *ObjectLock `json:"object_lock,omitempty"`
	// LegacyManifests are the format 1 manifests 'cfbackup migrate' vouched for (they carry no MAC).
	LegacyManifests []LegacyManifest `json:"legacy_manifests,omitempty"`
	// Migrated is when 'cfbackup migrate' upgraded the repository from format 1.
	Migrated *time.Time `json:"migrated,omitempty"`
	// MAC authenticates config.json (format 2): seal.PurposeConfig over its canonical JSON.
	MAC string `json:"mac,omitempty"`
}

// LegacyManifest is a format 1 manifest a migration vouched for, by the SHA-256 of its stored bytes.
type LegacyManifest struct {
	Key    string `json:"key"`
	SHA256 string `json:"sha256"`
}

// ObjectLock is the repository's S3 Object Lock retention: mode GOVERNANCE or COMPLIANCE for Days.
type ObjectLock struct {
	Mode string `json:"mode"`
	Days int    `json:"days"`
}

// Period is the retention as a duration.
func (o *ObjectLock) Period() time.Duration { return time.Duration(o.Days) * 24 * time.Hour }

// Repo is an opened repository.
type Repo struct {
	Store  store.Store
	Config Config

	raw    []byte    // config.json as stored, for its MAC
	key    *seal.Key // set by Authenticate; nil: nothing read can be authenticated
	legacy map[string]string
}

// InitOptions tune a new repository.
type InitOptions struct {
	Recipients  []string
	SegmentSize int64
	ChunkSize   int
	Now         func() time.Time
	// ObjectLock asks for retention on everything written; the store must have Object Lock enabled.
	ObjectLock *ObjectLock
}

// Init creates a repository: config.json by conditional create (so two inits can't both win) and the
// writer secret encrypted to the recipients. It returns the writer secret so the caller can keep a
// local copy for write-only backup hosts.
func Init(ctx context.Context, st store.Store, o InitOptions) (*Repo, []byte, error) {
	if len(o.Recipients) == 0 {
		return nil, nil, fmt.Errorf("%w: pass --recipient age1… (or CFBACKUP_RECIPIENTS, or --recipients-file); make one with 'cfbackup key generate'", ErrNoRecipients)
	}
	rcp, err := keys.ParseRecipients(o.Recipients)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v (a recipient is the public key 'age1…' that 'cfbackup key generate' prints, not the identity file)", ErrBadRecipient, err)
	}
	if _, err := st.Stat(ctx, ConfigKey); err == nil {
		return nil, nil, fmt.Errorf("%w at %s: choose another --repo, or use the existing one", ErrExists, st.Location())
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, nil, fmt.Errorf("check %s: %w", st.Location(), err)
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	cfg := Config{
		Format:      FormatVersion,
		ID:          randomHex(16),
		Created:     now().UTC(),
		SegmentSize: o.SegmentSize,
		ChunkSize:   o.ChunkSize,
		WriterKey:   WriterKeyKey,
		ObjectLock:  o.ObjectLock,
	}
	if cfg.ObjectLock != nil {
		mode := strings.ToUpper(cfg.ObjectLock.Mode)
		if (mode != store.RetentionGovernance && mode != store.RetentionCompliance) || cfg.ObjectLock.Days < 1 {
			return nil, nil, fmt.Errorf("%w: object lock retention needs mode governance or compliance and at least 1 day", ErrObjectLock)
		}
		cfg.ObjectLock.Mode = mode
		lk, ok := store.AsObjectLocker(st)
		on := false
		if ok {
			var err error
			if on, err = lk.ObjectLockEnabled(ctx); err != nil {
				return nil, nil, fmt.Errorf("read the bucket's Object Lock configuration: %w", err)
			}
		}
		if !on {
			return nil, nil, fmt.Errorf("%w: %s has no S3 Object Lock: create the bucket with Object Lock enabled (R2 has none: use a bucket lock rule instead, see docs/RETENTION.md), or leave out --object-lock-retention", ErrObjectLock, st.Location())
		}
		rs, err := retain.New(st, mode, cfg.ObjectLock.Period(), now)
		if err != nil {
			return nil, nil, err
		}
		st = rs
	}
	if cfg.SegmentSize <= 0 {
		cfg.SegmentSize = 512 << 20
	}
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = archive.DefaultChunkSize
	}
	for _, r := range o.Recipients {
		r = strings.TrimSpace(r)
		cfg.Recipients = append(cfg.Recipients, Recipient{Recipient: r, Fingerprint: keys.Fingerprint(r)})
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, nil, err
	}
	var enc bytes.Buffer
	w, err := age.Encrypt(&enc, rcp...)
	if err != nil {
		return nil, nil, fmt.Errorf("encrypt writer secret: %w", err)
	}
	if _, err := w.Write([]byte(hex.EncodeToString(secret) + "\n")); err != nil {
		return nil, nil, err
	}
	if err := w.Close(); err != nil {
		return nil, nil, err
	}
	if err := st.Put(ctx, WriterKeyKey, &enc, store.PutOptions{IfNotExists: true}); err != nil && !errors.Is(err, store.ErrExists) {
		return nil, nil, fmt.Errorf("store writer secret: %w", err)
	}
	key := seal.NewKey(secret)
	b, err := SignedConfig(key, &cfg)
	if err != nil {
		return nil, nil, err
	}
	if err := st.Put(ctx, ConfigKey, bytes.NewReader(b), store.PutOptions{IfNotExists: true}); err != nil {
		if errors.Is(err, store.ErrExists) {
			return nil, nil, fmt.Errorf("%w at %s", ErrExists, st.Location())
		}
		return nil, nil, fmt.Errorf("write config.json: %w", err)
	}
	return &Repo{Store: st, Config: cfg, raw: b, key: key}, secret, nil
}

// SignedConfig encodes cfg as config.json with its MAC (format 2 and later).
func SignedConfig(key *seal.Key, cfg *Config) ([]byte, error) {
	cfg.MAC = ""
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.MAC, err = key.MAC(seal.PurposeConfig, raw); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	return append(b, '\n'), err
}

// Open reads config.json and refuses a repository of a newer format.
func Open(ctx context.Context, st store.Store) (*Repo, error) {
	rc, err := st.Open(ctx, ConfigKey, 0, -1)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("%w at %s: run 'cfbackup init' first, or check --repo / CFBACKUP_REPOSITORY", ErrNotRepo, st.Location())
		}
		return nil, fmt.Errorf("open repository %s: %w", st.Location(), err)
	}
	defer rc.Close()
	raw, err := io.ReadAll(io.LimitReader(store.ContextReader(ctx, rc), maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("read config.json at %s: %w", st.Location(), err)
	}
	if len(raw) > maxConfigSize {
		return nil, fmt.Errorf("%w at %s: config.json is larger than %d MiB", ErrNotRepo, st.Location(), maxConfigSize>>20)
	}
	var cfg Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("%w at %s: config.json is not valid: %v", ErrNotRepo, st.Location(), err)
	}
	if cfg.Format > FormatVersion {
		return nil, fmt.Errorf("%w: repository format %d, this cfbackup supports up to %d: upgrade cfbackup", ErrVersion, cfg.Format, FormatVersion)
	}
	if cfg.Format < 1 || len(cfg.Recipients) == 0 {
		return nil, fmt.Errorf("%w at %s: config.json lacks format or recipients", ErrNotRepo, st.Location())
	}
	if cfg.ObjectLock != nil {
		// Fail closed: a repository that promises retention is never written without it.
		rs, err := retain.New(st, cfg.ObjectLock.Mode, cfg.ObjectLock.Period(), nil)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrObjectLock, err)
		}
		return newRepo(rs, cfg, raw), nil
	}
	return newRepo(st, cfg, raw), nil
}

// maxConfigSize bounds config.json before it is parsed (it holds the legacy manifest list of a
// migrated repository: ~150 bytes per snapshot).
const maxConfigSize = 16 << 20

func newRepo(st store.Store, cfg Config, raw []byte) *Repo {
	r := &Repo{Store: st, Config: cfg, raw: raw}
	if len(cfg.LegacyManifests) > 0 {
		r.legacy = make(map[string]string, len(cfg.LegacyManifests))
		for _, l := range cfg.LegacyManifests {
			r.legacy[l.Key] = l.SHA256
		}
	}
	return r
}

// AuthOptions pin what a host expects of the repository beyond its own key.
type AuthOptions struct {
	// KeyID, when set, is the key id the writer secret must have (CFBACKUP_REPOSITORY_KEY_ID): a host
	// that unwraps keys/writer.age with its identity then cannot be handed another secret. Implies
	// format 2 or later: a config.json replaced by an unauthenticated format 1 one is then refused as
	// a downgrade, not read as a legacy repository.
	KeyID string
}

// Authenticate checks config.json with the writer secret and keeps the key for the manifests read
// from now on. A format 1 repository has nothing to check (see Legacy); 'cfbackup migrate' upgrades it.
func (r *Repo) Authenticate(secret []byte, o AuthOptions) error {
	key := seal.NewKey(secret)
	if o.KeyID != "" && !strings.EqualFold(strings.TrimSpace(o.KeyID), key.ID()) {
		return fmt.Errorf("%w: the writer secret has key id %s, but this host pins %s (CFBACKUP_REPOSITORY_KEY_ID): keys/writer.age or the writer key file was replaced, or the pin names another repository",
			ErrUnauthenticated, key.ID(), o.KeyID)
	}
	if o.KeyID != "" && r.Legacy() {
		return fmt.Errorf("%w: %s at %s claims format %d, but this host pins a repository key (format 2 or later): "+
			"someone replaced config.json with an unauthenticated one (a downgrade); restore config.json from a replica or backup of the bucket and rotate the bucket credentials",
			ErrUnauthenticated, ConfigKey, r.Store.Location(), r.Config.Format)
	}
	if r.Config.Format >= 2 {
		if err := key.Verify(seal.PurposeConfig, r.raw); err != nil {
			return fmt.Errorf("%s at %s %w (%v): it was written or changed by someone without the writer secret (leaked bucket credentials?), or the writer secret is another repository's; "+
				"check CFBACKUP_WRITER_KEY_FILE, and if the key is right restore config.json from a replica or backup of the bucket and rotate the bucket credentials",
				ConfigKey, r.Store.Location(), ErrUnauthenticated, err)
		}
	}
	r.key = key
	return nil
}

// ErrWriterKey: keys/writer.age cannot be opened with the identities given.
var ErrWriterKey = errclass.New(errclass.Key, "cannot open the writer secret")

// WriterSecret unwraps keys/writer.age with the identities: how a restore host (which holds an
// identity, not the writer key file) gets the key that authenticates the repository. A bucket writer
// can replace keys/writer.age with a secret of its own, so a host that must not be fooled pins the
// key id (AuthOptions.KeyID) or holds the writer key file instead.
func (r *Repo) WriterSecret(ctx context.Context, ids []age.Identity) ([]byte, error) {
	rc, err := r.Store.Open(ctx, WriterKeyKey, 0, -1)
	if err != nil {
		return nil, fmt.Errorf("read the writer secret %s: %w", WriterKeyKey, err)
	}
	defer rc.Close()
	dec, err := age.Decrypt(io.LimitReader(store.ContextReader(ctx, rc), 64<<10), ids...)
	if err != nil {
		return nil, fmt.Errorf("%w: the identity cannot open %s (%v): it is not the identity of one of this repository's recipients", ErrWriterKey, WriterKeyKey, err)
	}
	b, err := io.ReadAll(io.LimitReader(dec, 4096))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrWriterKey, WriterKeyKey, err)
	}
	return DecodeSecret(b)
}

// DecodeSecret parses a writer secret as init writes it: hex on the first line that is not a comment.
func DecodeSecret(b []byte) ([]byte, error) {
	var h string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			h = l
			break
		}
	}
	s, err := hex.DecodeString(h)
	if err != nil || len(s) < 16 {
		return nil, fmt.Errorf("%w: not the hex secret 'cfbackup init' wrote", ErrWriterKey)
	}
	return s, nil
}

// OpenWithIdentities opens the repository in st and authenticates it with the writer secret unwrapped
// by the identities: what a restore host does.
func OpenWithIdentities(ctx context.Context, st store.Store, ids []age.Identity, o AuthOptions) (*Repo, error) {
	r, err := Open(ctx, st)
	if err != nil {
		return nil, err
	}
	secret, err := r.WriterSecret(ctx, ids)
	if err != nil {
		return nil, err
	}
	if err := r.Authenticate(secret, o); err != nil {
		return nil, err
	}
	return r, nil
}

// UseKeyOf authenticates r with src's key: a replica that 'copy' initialised from src shares its
// configuration and writer secret. Fails (leaving r as it was) when r's configuration does not
// authenticate with that key, e.g. a replica made with its own 'cfbackup init'.
func (r *Repo) UseKeyOf(src *Repo) error {
	if src.key == nil {
		return src.RequireKey("copying")
	}
	if !r.Legacy() {
		if err := src.key.Verify(seal.PurposeConfig, r.raw); err != nil {
			return fmt.Errorf("%w: %s at %s: %v", ErrUnauthenticated, ConfigKey, r.Store.Location(), err)
		}
	}
	r.key = src.key
	return nil
}

// Key is the repository's authentication key, nil until Authenticate succeeded.
func (r *Repo) Key() *seal.Key { return r.key }

// Legacy reports a format 1 repository: nothing in it is authenticated until 'cfbackup migrate'.
func (r *Repo) Legacy() bool { return r.Config.Format < 2 }

// ErrLegacy: a format 1 repository is read-only until 'cfbackup migrate' upgrades it.
var ErrLegacy = errclass.New(errclass.Repository, "repository format 1 is read-only")

// RequireWritable refuses to write into a format 1 repository: nothing in it authenticates, so a
// bucket writer could have replaced its recipients (or downgraded a format 2 config.json to format 1);
// reading it stays possible, writing waits for 'cfbackup migrate'.
func (r *Repo) RequireWritable(what string) error {
	if !r.Legacy() {
		return nil
	}
	return fmt.Errorf("%w for %s: %s at %s is format %d, whose configuration and snapshots are not authenticated; "+
		"upgrade it once with 'cfbackup migrate' (needs the writer secret or an identity), then run this again",
		ErrLegacy, what, ConfigKey, r.Store.Location(), r.Config.Format)
}

// RequireKey fails unless manifests read from now on can be authenticated: a format 2 repository
// needs the writer secret or an identity. what names the command for the message.
func (r *Repo) RequireKey(what string) error {
	if r.key != nil || r.Legacy() {
		return nil
	}
	return fmt.Errorf("%w: %s must check that snapshots are genuine (a bucket writer can add manifests) and needs the writer secret (CFBACKUP_WRITER_KEY_FILE, the file 'cfbackup init' wrote) or an identity (--identity-file) to unwrap %s",
		ErrNoKey, what, WriterKeyKey)
}

// Recipients parses the repository's recipients for encryption. Fails closed on any unusable one.
// Callers that write check RequireWritable and RequireKey first (Engine.Backup does).
func (r *Repo) Recipients() ([]age.Recipient, error) {
	ss := make([]string, 0, len(r.Config.Recipients))
	for _, x := range r.Config.Recipients {
		if keys.Fingerprint(x.Recipient) != x.Fingerprint {
			return nil, fmt.Errorf("repository recipient %s does not match its fingerprint %s: config.json was altered", x.Recipient, x.Fingerprint)
		}
		ss = append(ss, x.Recipient)
	}
	return keys.ParseRecipients(ss)
}

// CheckRecipients refuses a repository whose recipients are not exactly the pinned ones
// (CFBACKUP_RECIPIENTS / recipients_file on a backup host): a host given a new writer secret along with
// a changed recipient list still never encrypts to a key its operator did not name.
func (r *Repo) CheckRecipients(pinned []string) error {
	want := map[string]bool{}
	for _, p := range pinned {
		p = strings.TrimSpace(p)
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		want[keys.Fingerprint(p)] = true
	}
	if len(want) == 0 {
		return nil
	}
	have := map[string]bool{}
	var extra []string
	for _, x := range r.Config.Recipients {
		have[x.Fingerprint] = true
		if !want[x.Fingerprint] {
			extra = append(extra, x.Fingerprint+" "+x.Recipient)
		}
	}
	var missing []string
	for fp := range want {
		if !have[fp] {
			missing = append(missing, fp)
		}
	}
	if len(extra) == 0 && len(missing) == 0 {
		return nil
	}
	sort.Strings(missing)
	return fmt.Errorf("%w: %s at %s lists other recipients than this host pins (CFBACKUP_RECIPIENTS / recipients_file): not pinned %v, missing %v; nothing was encrypted. "+
		"If the change was intended, update the pinned recipients on this host; otherwise someone changed the repository",
		ErrUnauthenticated, ConfigKey, r.Store.Location(), extra, missing)
}

// SaveManifest writes a manifest with a conditional create; this is the commit point of a snapshot.
// In a format 2 repository it carries its MAC (so the repository's key is required).
func (r *Repo) SaveManifest(ctx context.Context, m *manifest.Manifest) error {
	if err := r.Seal(m); err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := m.Encode(&buf); err != nil {
		return err
	}
	key := manifest.Key(m.Time, m.ID)
	if err := r.Store.Put(ctx, key, bytes.NewReader(buf.Bytes()), store.PutOptions{IfNotExists: true}); err != nil {
		return fmt.Errorf("write manifest %s: %w", key, err)
	}
	return nil
}

// Seal sets m's format and MAC for this repository (copy re-seals a manifest for its destination).
func (r *Repo) Seal(m *manifest.Manifest) error {
	if err := r.RequireWritable("writing a snapshot"); err != nil {
		return err
	}
	if r.key == nil {
		return r.RequireKey("writing a snapshot")
	}
	if m.Format < manifest.FormatVersion {
		m.Format = manifest.FormatVersion
	}
	m.MAC = ""
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	m.MAC, err = r.key.MAC(seal.PurposeManifest, raw)
	m.Auth = manifest.AuthOK
	return err
}

// ListSnapshots reads every manifest, newest first, without their catalogues (LoadManifest reads one
// whole), so memory holds one manifest at a time however many there are. Unreadable ones — and, with
// a key, ones that do not authenticate — are returned in bad, never among snaps.
func (r *Repo) ListSnapshots(ctx context.Context) (snaps []*manifest.Manifest, bad map[string]error, err error) {
	var keysFound []string
	err = r.Store.List(ctx, layout.Snapshots, func(oi store.ObjectInfo) error {
		if layout.IsManifestKey(oi.Key) {
			keysFound = append(keysFound, oi.Key)
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("list snapshots: %w", err)
	}
	bad = map[string]error{}
	for _, k := range keysFound {
		m, err := r.loadKey(ctx, k)
		if err != nil {
			bad[k] = err
			continue
		}
		m.Catalogue = ""
		m.Summary = true
		snaps = append(snaps, m)
	}
	manifest.SortNewestFirst(snaps)
	return snaps, bad, nil
}

// LoadManifest reads one manifest whole (with its catalogue), authenticated as ListSnapshots does.
func (r *Repo) LoadManifest(ctx context.Context, m *manifest.Manifest) (*manifest.Manifest, error) {
	if !m.Summary {
		return m, nil
	}
	return r.loadKey(ctx, manifest.Key(m.Time, m.ID))
}

// maxManifestSize bounds a manifest read before it is parsed.
const maxManifestSize = 256 << 20

func (r *Repo) loadKey(ctx context.Context, key string) (*manifest.Manifest, error) {
	raw, m, err := r.readManifest(ctx, key)
	if err != nil {
		return nil, err
	}
	if err := r.authenticate(key, raw, m); err != nil {
		return nil, fmt.Errorf("snapshot %s (%s): %w", m.ID, key, err)
	}
	return m, nil
}

// readManifest reads and decodes a manifest (bounded) and checks it against its key; not authenticated.
func (r *Repo) readManifest(ctx context.Context, key string) ([]byte, *manifest.Manifest, error) {
	rc, err := r.Store.Open(ctx, key, 0, -1)
	if err != nil {
		return nil, nil, err
	}
	defer rc.Close()
	raw, err := io.ReadAll(io.LimitReader(store.ContextReader(ctx, rc), maxManifestSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", key, err)
	}
	if len(raw) > maxManifestSize {
		return nil, nil, fmt.Errorf("%s: %w: larger than %d MiB", key, manifest.ErrFormat, maxManifestSize>>20)
	}
	m, err := manifest.Decode(bytes.NewReader(raw))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", key, err)
	}
	if id := manifest.IDFromKey(key); id != m.ID {
		return nil, nil, fmt.Errorf("%s: %w: id %q does not match its key", key, manifest.ErrFormat, m.ID)
	}
	if want := manifest.Key(m.Time, m.ID); want != key {
		return nil, nil, fmt.Errorf("%s: %w: its time %s does not match its key", key, manifest.ErrFormat, m.Time.UTC().Format(time.RFC3339))
	}
	m.SetStore(r.Store)
	return raw, m, nil
}

// authenticate sets m.Auth, or fails when m does not authenticate with the repository's key.
func (r *Repo) authenticate(key string, raw []byte, m *manifest.Manifest) error {
	switch {
	case r.Legacy():
		m.Auth = manifest.AuthLegacy
		return nil
	case r.key == nil:
		m.Auth = manifest.AuthUnchecked
		return nil
	}
	if !seal.HasMAC(raw) {
		if want, ok := r.legacy[key]; ok {
			sum := sha256.Sum256(raw)
			if hex.EncodeToString(sum[:]) == want {
				m.Auth = manifest.AuthOK
				return nil
			}
			return fmt.Errorf("%w: a format 1 manifest that differs from the one 'cfbackup migrate' recorded", ErrUnauthenticated)
		}
		return fmt.Errorf("%w: the manifest carries no MAC (format 2 requires one): it was not written by cfbackup with this repository's writer secret", ErrUnauthenticated)
	}
	if err := r.key.Verify(seal.PurposeManifest, raw); err != nil {
		return fmt.Errorf("%w: %v: it was made or changed without this repository's writer secret", ErrUnauthenticated, err)
	}
	m.Auth = manifest.AuthOK
	return nil
}

// FindSnapshot resolves "latest", a full id or a unique id prefix (of at least 4 characters), and
// returns the manifest whole. With component set, "latest" means the newest snapshot that has that
// component. In a format 2 repository it needs the key (only authenticated manifests are chosen), and
// "latest" is refused while a newer manifest is unreadable or does not authenticate: an older snapshot
// is never chosen silently in place of a newer one the reader could not check.
func (r *Repo) FindSnapshot(ctx context.Context, ref, component string) (*manifest.Manifest, error) {
	if err := r.RequireKey("choosing a snapshot"); err != nil {
		return nil, err
	}
	snaps, bad, err := r.ListSnapshots(ctx)
	if err != nil {
		return nil, err
	}
	if ref == "" || ref == "latest" {
		// "latest" is the newest backup; a safety snapshot (taken by a restore of what it overwrote) is
		// chosen only when nothing else has the component. Name one by id to use it.
		for _, safety := range []bool{false, true} {
			for _, m := range snaps {
				if (component == "" || contains(m.Components, component)) && IsSafetySnapshot(m) == safety {
					if err := newerUnreadable(m, bad); err != nil {
						return nil, err
					}
					return r.LoadManifest(ctx, m)
				}
			}
		}
		if len(bad) > 0 {
			for _, k := range sortedKeys(bad) {
				return nil, fmt.Errorf("%w: no readable snapshot%s (unreadable: %s: %v)", ErrSnapshotNotFound, forComponent(component), k, bad[k])
			}
		}
		if component != "" && len(snaps) > 0 {
			return nil, fmt.Errorf("%w: no snapshot holds the %s component (%d snapshot(s) hold other components); back it up with: cfbackup backup --component %s", ErrSnapshotNotFound, component, len(snaps), component)
		}
		return nil, fmt.Errorf("%w: the repository has no snapshot yet; run 'cfbackup backup' first", ErrSnapshotNotFound)
	}
	var found []*manifest.Manifest
	for _, m := range snaps {
		if m.ID == ref || (len(ref) >= 4 && strings.HasPrefix(m.ID, ref)) {
			found = append(found, m)
		}
	}
	switch len(found) {
	case 1:
		return r.LoadManifest(ctx, found[0])
	case 0:
		for _, k := range sortedKeys(bad) {
			if id := manifest.IDFromKey(k); id == ref || (len(ref) >= 4 && strings.HasPrefix(id, ref)) {
				return nil, fmt.Errorf("snapshot %s is unusable: %w", ref, bad[k])
			}
		}
		return nil, fmt.Errorf("%w: %q (see 'cfbackup list')", ErrSnapshotNotFound, ref)
	default:
		return nil, fmt.Errorf("%w: %q is ambiguous (%d snapshots match); give more characters", ErrSnapshotNotFound, ref, len(found))
	}
}

// ErrNewerUnreadable: a point-in-time or "latest" pick would pass over a newer manifest that cannot be
// read or authenticated.
var ErrNewerUnreadable = errclass.New(errclass.Integrity, "a newer snapshot is unreadable")

// newerUnreadable refuses choosing m while a manifest at least as new as m (by the time its key
// names) is unreadable or does not authenticate.
func newerUnreadable(m *manifest.Manifest, bad map[string]error) error {
	mt := m.Time.UTC().Truncate(time.Second)
	for _, k := range sortedKeys(bad) {
		t, ok := manifest.TimeFromKey(k)
		if ok && t.Before(mt) {
			continue
		}
		return fmt.Errorf("%w: %s (newer than %s, the snapshot that would be chosen) cannot be used: %v. "+
			"Refusing to fall back to an older snapshot silently: look at 'cfbackup list' and 'cfbackup verify', then name the snapshot to use by its id "+
			"(and remove %s if nobody with the writer secret wrote it)",
			ErrNewerUnreadable, k, m.ID, bad[k], k)
	}
	return nil
}

func forComponent(c string) string {
	if c == "" {
		return ""
	}
	return " with the " + c + " component"
}

func sortedKeys(m map[string]error) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(out)))
	return out
}

// FindSnapshotAt returns the newest snapshot taken at or before t that has the component (any
// component when empty): the point-in-time pick of 'restore --at'. t is compared at the precision
// manifests are named with, the second, so the time 'list' prints selects that snapshot. Like
// "latest", it refuses to pass over a newer (at or before t) manifest it cannot read or authenticate.
func (r *Repo) FindSnapshotAt(ctx context.Context, t time.Time, component string) (*manifest.Manifest, error) {
	if err := r.RequireKey("choosing a snapshot"); err != nil {
		return nil, err
	}
	snaps, bad, err := r.ListSnapshots(ctx)
	if err != nil {
		return nil, err
	}
	// Everything within the second t names is "at" t.
	end := t.UTC().Truncate(time.Second).Add(time.Second - 1)
	pick := func(m *manifest.Manifest) (*manifest.Manifest, error) {
		for _, k := range sortedKeys(bad) {
			if kt, ok := manifest.TimeFromKey(k); ok && !kt.After(end) && !kt.Before(m.Time.UTC().Truncate(time.Second)) {
				return nil, newerUnreadable(m, map[string]error{k: bad[k]})
			}
		}
		return r.LoadManifest(ctx, m)
	}
	var oldest, safety *manifest.Manifest
	for _, m := range snaps {
		if component != "" && !contains(m.Components, component) {
			continue
		}
		if !m.Time.After(end) {
			if !IsSafetySnapshot(m) {
				return pick(m)
			}
			if safety == nil {
				safety = m
			}
		}
		oldest = m
	}
	if safety != nil {
		return pick(safety)
	}
	what := "snapshot"
	if component != "" {
		what = component + " snapshot"
	}
	if oldest == nil {
		return nil, fmt.Errorf("%w: the repository has no %s; run 'cfbackup backup' first", ErrSnapshotNotFound, what)
	}
	return nil, fmt.Errorf("%w: %s is before the oldest %s (%s, %s)", ErrSnapshotNotFound, t.UTC().Format(time.RFC3339), what, oldest.ID, oldest.Time.UTC().Format(time.RFC3339))
}

// SafetyLabel marks a snapshot a restore took of the live data it was about to overwrite.
const SafetyLabel = "pre-restore"

// IsSafetySnapshot reports whether m is a restore's safety snapshot: 'latest' and point-in-time picks
// prefer real backups over them.
func IsSafetySnapshot(m *manifest.Manifest) bool {
	_, ok := m.Labels[SafetyLabel]
	return ok
}

// NewSnapshotID returns a random snapshot id.
func NewSnapshotID() string { return randomHex(8) }

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// MigrateResult is what Migrate did (or, with dryRun, would do).
type MigrateResult struct {
	From       int               `json:"from"`
	To         int               `json:"to"`
	Vouched    []LegacyManifest  `json:"vouched"`
	Unreadable map[string]string `json:"unreadable"`
	Backup     string            `json:"backup"`
}

// ConfigV1Backup keeps the format 1 config.json a migration replaced (for a rollback with older cfbackup).
const ConfigV1Backup = layout.ConfigV1Backup

// Migrate upgrades a format 1 repository to format 2 in place: config.json gets the MAC and the list
// of the existing manifests, each by the SHA-256 of its stored bytes, so they authenticate without
// being rewritten (they may be under Object Lock). The old config.json is kept as config.v1.json.
// Whoever runs it vouches for the snapshots listed: check 'cfbackup list' first. Needs the key
// (Authenticate). Manifests that cannot be read are not vouched for and are reported.
func (r *Repo) Migrate(ctx context.Context, now time.Time, dryRun bool) (*MigrateResult, error) {
	if !r.Legacy() {
		return nil, fmt.Errorf("%w: %s at %s is already format %d", ErrExists, ConfigKey, r.Store.Location(), r.Config.Format)
	}
	if r.key == nil {
		return nil, fmt.Errorf("%w: migrate signs the configuration and needs the writer secret (CFBACKUP_WRITER_KEY_FILE) or an identity (--identity-file)", ErrNoKey)
	}
	res := &MigrateResult{From: r.Config.Format, To: FormatVersion, Vouched: []LegacyManifest{}, Unreadable: map[string]string{}, Backup: ConfigV1Backup}
	var found []string
	if err := r.Store.List(ctx, layout.Snapshots, func(oi store.ObjectInfo) error {
		if layout.IsManifestKey(oi.Key) {
			found = append(found, oi.Key)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	sort.Strings(found)
	for _, k := range found {
		raw, m, err := r.readManifest(ctx, k)
		if err != nil {
			res.Unreadable[k] = err.Error()
			continue
		}
		if m.Format != 1 || seal.HasMAC(raw) {
			res.Unreadable[k] = "not a format 1 manifest"
			continue
		}
		sum := sha256.Sum256(raw)
		res.Vouched = append(res.Vouched, LegacyManifest{Key: k, SHA256: hex.EncodeToString(sum[:])})
	}
	if dryRun {
		return res, nil
	}
	rc, err := r.Store.Open(ctx, ConfigKey, 0, -1)
	if err != nil {
		return nil, err
	}
	err = r.Store.Put(ctx, ConfigV1Backup, rc, store.PutOptions{IfNotExists: true})
	rc.Close()
	if err != nil && !errors.Is(err, store.ErrExists) {
		return nil, fmt.Errorf("keep the format 1 configuration as %s: %w", ConfigV1Backup, err)
	}
	cfg := r.Config
	cfg.Format = FormatVersion
	cfg.LegacyManifests = res.Vouched
	t := now.UTC()
	cfg.Migrated = &t
	b, err := SignedConfig(r.key, &cfg)
	if err != nil {
		return nil, err
	}
	if err := r.Store.Put(ctx, ConfigKey, bytes.NewReader(b), store.PutOptions{}); err != nil {
		return nil, fmt.Errorf("write the format %d %s: %w (the format 1 one is unchanged or kept as %s)", FormatVersion, ConfigKey, err, ConfigV1Backup)
	}
	key := r.key
	*r = *newRepo(r.Store, cfg, b)
	r.key = key
	return res, nil
}
