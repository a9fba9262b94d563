// Package repo opens, creates and reads a cfbackup repository: config.json, the writer secret and the
// snapshot manifests, on top of any store.Store.
//
// It is the one place that knows the repository layout (DESIGN.md §4) apart from the segment format
// (pkg/archive) and the manifest shape (pkg/manifest), so every command agrees on where things live
// and on how an unknown format version is refused (invariant 4: fail closed).
package repo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/keys"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/retain"
)

// FormatVersion is the repository format this build writes and the highest major version it opens.
const FormatVersion = 1

// Object keys of the fixed parts of a repository.
const (
	ConfigKey    = "config.json"
	WriterKeyKey = "keys/writer.age"
)

var (
	// ErrNotRepo: there is no config.json at the location.
	ErrNotRepo = errors.New("no cfbackup repository here")
	// ErrExists: init found a repository already there.
	ErrExists = errors.New("a cfbackup repository already exists here")
	// ErrVersion: the repository was made by a newer, incompatible cfbackup.
	ErrVersion = errors.New("unsupported repository format version")
	// ErrSnapshotNotFound: no snapshot matches the id (or the repository has none).
	ErrSnapshotNotFound = errors.New("snapshot not found")
	// ErrBadRecipient: a recipient could not be parsed.
	ErrBadRecipient = errors.New("bad recipient")
	// ErrNoRecipients: init was given no recipient.
	ErrNoRecipients = errors.New("no recipient given")
	// ErrObjectLock: Object Lock retention was asked for where the store cannot provide it.
	ErrObjectLock = errors.New("object lock unavailable")
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
	b, _ := json.MarshalIndent(cfg, "", "  ")
	if err := st.Put(ctx, ConfigKey, bytes.NewReader(append(b, '\n')), store.PutOptions{IfNotExists: true}); err != nil {
		if errors.Is(err, store.ErrExists) {
			return nil, nil, fmt.Errorf("%w at %s", ErrExists, st.Location())
		}
		return nil, nil, fmt.Errorf("write config.json: %w", err)
	}
	return &Repo{Store: st, Config: cfg}, secret, nil
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
	var cfg Config
	if err := json.NewDecoder(io.LimitReader(rc, 1<<20)).Decode(&cfg); err != nil {
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
		return &Repo{Store: rs, Config: cfg}, nil
	}
	return &Repo{Store: st, Config: cfg}, nil
}

// Recipients parses the repository's recipients for encryption. Fails closed on any unusable one.
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

// SaveManifest writes a manifest with a conditional create; this is the commit point of a snapshot.
func (r *Repo) SaveManifest(ctx context.Context, m *manifest.Manifest) error {
	var buf bytes.Buffer
	if err := m.Encode(&buf); err != nil {
		return err
	}
	key := manifest.Key(m.Time, m.ID)
	if err := r.Store.Put(ctx, key, &buf, store.PutOptions{IfNotExists: true}); err != nil {
		return fmt.Errorf("write manifest %s: %w", key, err)
	}
	return nil
}

// ListSnapshots reads every manifest, newest first. Unreadable ones are returned in bad, not hidden.
func (r *Repo) ListSnapshots(ctx context.Context) (snaps []*manifest.Manifest, bad map[string]error, err error) {
	var keysFound []string
	err = r.Store.List(ctx, "snapshots/", func(oi store.ObjectInfo) error {
		if strings.HasSuffix(oi.Key, ".json") {
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
		snaps = append(snaps, m)
	}
	manifest.SortNewestFirst(snaps)
	return snaps, bad, nil
}

func (r *Repo) loadKey(ctx context.Context, key string) (*manifest.Manifest, error) {
	rc, err := r.Store.Open(ctx, key, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	m, err := manifest.Decode(rc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if id := manifest.IDFromKey(key); id != m.ID {
		return nil, fmt.Errorf("%s: %w: id %q does not match its key", key, manifest.ErrFormat, m.ID)
	}
	return m, nil
}

// FindSnapshot resolves "latest", a full id or a unique id prefix (of at least 4 characters).
// With component set, "latest" means the newest snapshot that has that component.
func (r *Repo) FindSnapshot(ctx context.Context, ref, component string) (*manifest.Manifest, error) {
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
					return m, nil
				}
			}
		}
		if component != "" && len(snaps) > 0 {
			return nil, fmt.Errorf("%w: no snapshot holds the %s component (%d snapshot(s) hold other components); back it up with: cfbackup backup --component %s", ErrSnapshotNotFound, component, len(snaps), component)
		}
		if len(bad) > 0 {
			for k, e := range bad {
				return nil, fmt.Errorf("%w: no readable snapshot (unreadable: %s: %v)", ErrSnapshotNotFound, k, e)
			}
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
		return found[0], nil
	case 0:
		for k, e := range bad {
			if manifest.IDFromKey(k) == ref {
				return nil, fmt.Errorf("snapshot %s is unreadable: %w", ref, e)
			}
		}
		return nil, fmt.Errorf("%w: %q (see 'cfbackup list')", ErrSnapshotNotFound, ref)
	default:
		return nil, fmt.Errorf("%w: %q is ambiguous (%d snapshots match); give more characters", ErrSnapshotNotFound, ref, len(found))
	}
}

// FindSnapshotAt returns the newest snapshot taken at or before t that has the component (any
// component when empty): the point-in-time pick of 'restore --at'.
func (r *Repo) FindSnapshotAt(ctx context.Context, t time.Time, component string) (*manifest.Manifest, error) {
	snaps, _, err := r.ListSnapshots(ctx)
	if err != nil {
		return nil, err
	}
	var oldest, safety *manifest.Manifest
	for _, m := range snaps {
		if component != "" && !contains(m.Components, component) {
			continue
		}
		if !m.Time.After(t) {
			if !IsSafetySnapshot(m) {
				return m, nil
			}
			if safety == nil {
				safety = m
			}
		}
		oldest = m
	}
	if safety != nil {
		return safety, nil
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
