package source

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// Session is what a Capture sees of the snapshot being written. Add and Reference may be called from
// several goroutines; the Writer may not (see archive.Writer). Captures that run beside each other
// each get a Fork with a Writer of their own.
type Session struct {
	// SnapshotID is the id the manifest will have.
	SnapshotID string
	Writer     *archive.Writer
	Repo       *repo.Repo
	Log        *slog.Logger
	Progress   Progress
	// Recipients encrypt the streamed catalogue the captures' items are written to (the engine sets
	// them on the root; forks share them).
	Recipients []age.Recipient
	// Shard, when set, keeps only the keys of one shard of a sharded run (docs/SHARDING.md): captures
	// that can split their key space (R2) drop the others after listing. Forks share it.
	Shard func(key string) bool
	// SnapshotView, when set, rewrites what Snapshots returns once (a shard sees its own parents).
	SnapshotView func([]*manifest.Manifest) []*manifest.Manifest

	mu      sync.Mutex
	sources []manifest.Source
	cat     *CatalogueSpool // this session's items, in the order added (nil until the first)
	items   int64
	size    int64
	err     error // the first failure to write the catalogue spool
	refs    map[string]archive.SegmentInfo
	objects []manifest.Object
	commit  []func(ctx context.Context, m *manifest.Manifest)
	snaps   []*manifest.Manifest // the repository's snapshots, read once per backup (Snapshots)

	root  *Session   // set in a fork: references, hooks and snapshots live in the root
	order int        // a fork's place in the plan
	forks []*Session // the root's forks (Collected merges them by order)
}

// Fork returns the session of one capture that runs beside others: it writes into w (its own
// archive writer), and the sources, items and objects it records are merged into the root's
// Collected by order (the capture's index in the plan), so the catalogue lists them as a
// sequential backup would, whatever finishes first.
func (s *Session) Fork(w *archive.Writer, order int) *Session {
	root := s.base()
	f := &Session{SnapshotID: s.SnapshotID, Writer: w, Repo: s.Repo, Log: s.Log, Progress: s.Progress, Recipients: root.Recipients, Shard: s.Shard, root: root, order: order}
	root.mu.Lock()
	root.forks = append(root.forks, f)
	root.mu.Unlock()
	return f
}

func (s *Session) base() *Session {
	if s.root != nil {
		return s.root
	}
	return s
}

// Snapshots lists the repository's readable snapshots, newest first, reading the manifests once per
// backup however many sources ask (each R2 bucket looks for its parent).
func (s *Session) Snapshots(ctx context.Context) ([]*manifest.Manifest, error) {
	s = s.base()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snaps == nil {
		snaps, _, err := s.Repo.ListSnapshots(ctx)
		if err != nil {
			return nil, err
		}
		s.snaps = append([]*manifest.Manifest{}, snaps...)
		if s.SnapshotView != nil {
			s.snaps = s.SnapshotView(s.snaps)
		}
	}
	return s.snaps, nil
}

// AfterCommit registers fn to run once the snapshot's manifest is saved — a source deletes its resume
// journal there. fn handles (logs) its own failures: the snapshot stands either way.
func (s *Session) AfterCommit(fn func(ctx context.Context, m *manifest.Manifest)) {
	s = s.base()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.commit = append(s.commit, fn)
}

// Add records a captured source and its catalogue items.
func (s *Session) Add(src manifest.Source, items ...manifest.Item) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sources = append(s.sources, src)
	s.addItems(items)
}

// AddSource records a captured source whose items were added with AddItems.
func (s *Session) AddSource(src manifest.Source) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sources = append(s.sources, src)
}

// AddItems appends catalogue items as they are captured: they go to this session's catalogue spool
// (a temporary file of sealed records), so a capture of millions of objects holds none of them. A
// failure to write the spool fails the backup at commit (Collected).
func (s *Session) AddItems(items ...manifest.Item) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addItems(items)
}

func (s *Session) addItems(items []manifest.Item) {
	if len(items) == 0 || s.err != nil {
		return
	}
	if s.cat == nil {
		s.cat, s.err = NewCatalogueSpool(s.Recipients)
		if s.err != nil {
			return
		}
	}
	for _, it := range items {
		s.items++
		s.size += it.Size
	}
	s.err = s.cat.Add(items...)
}

// Reference records segments of earlier snapshots that this snapshot's items point into (incremental
// backups): they are listed in the manifest so verify checks them and prune keeps them.
func (s *Session) Reference(segs ...archive.SegmentInfo) {
	s = s.base()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refs == nil {
		s.refs = map[string]archive.SegmentInfo{}
	}
	for _, g := range segs {
		s.refs[g.ID] = g
	}
}

// ReferenceObjects lists side objects an earlier snapshot stored (and lists) in this snapshot's
// manifest too, unchanged and not written again — a D1 chunk index chain (docs/FORMAT.md
// "Content-defined chunks"): prune keeps an object while any kept snapshot lists it.
func (s *Session) ReferenceObjects(objs ...manifest.Object) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.objects = append(s.objects, objs...)
}

// PutObject stores a side object the snapshot owns (an incremental index) with a conditional create
// and records its key, size and SHA-256 in the manifest; it is written before the manifest.
func (s *Session) PutObject(ctx context.Context, key string, data []byte) error {
	if err := s.Repo.Store.Put(ctx, key, bytes.NewReader(data), store.PutOptions{IfNotExists: true}); err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	s.mu.Lock()
	s.objects = append(s.objects, manifest.Object{Key: key, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])})
	s.mu.Unlock()
	return nil
}

// PutObjectFile stores the file f (from its start) under key and records it like PutObject: a side
// object too large to hold in memory (the R2 index of a bucket of millions of objects) is written to
// a temporary file first and streamed from there.
func (s *Session) PutObjectFile(ctx context.Context, key string, f *os.File) error {
	h := sha256.New()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	n, err := io.Copy(h, f)
	if err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := s.Repo.Store.Put(ctx, key, f, store.PutOptions{IfNotExists: true}); err != nil {
		return err
	}
	s.mu.Lock()
	s.objects = append(s.objects, manifest.Object{Key: key, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))})
	s.mu.Unlock()
	return nil
}

// Collected is what the captures of a session recorded. Items are counted, not held: they are in
// the Catalogues spools, in catalogue order (the root's, then each fork's in plan order).
type Collected struct {
	Sources    []manifest.Source
	Items      int64
	Size       int64 // uncompressed bytes of all items
	Catalogues []*CatalogueSpool
	Refs       map[string]archive.SegmentInfo
	Objects    []manifest.Object
}

// Collected returns what the captures recorded (the engine writes it into the manifest): the
// root's own records, then each fork's in plan order. It fails when a catalogue spool could not be
// written.
func (s *Session) Collected() (Collected, error) {
	s = s.base()
	s.mu.Lock()
	defer s.mu.Unlock()
	refs := make(map[string]archive.SegmentInfo, len(s.refs))
	for k, v := range s.refs {
		refs[k] = v
	}
	c := Collected{Refs: refs} // objects: the root's and each fork's, once, in the loop below
	forks := slices.Clone(s.forks)
	slices.SortStableFunc(forks, func(a, b *Session) int { return a.order - b.order })
	for _, f := range append([]*Session{s}, forks...) {
		if f != s {
			f.mu.Lock()
		}
		c.Sources = append(c.Sources, f.sources...)
		c.Items += f.items
		c.Size += f.size
		if f.cat != nil {
			c.Catalogues = append(c.Catalogues, f.cat)
		}
		c.Objects = append(c.Objects, f.objects...)
		err := f.err
		if f != s {
			f.mu.Unlock()
		}
		if err != nil {
			return c, fmt.Errorf("write the catalogue: %w", err)
		}
	}
	return c, nil
}

// Close removes the catalogue spools of the session and its forks (after commit, or on failure).
func (s *Session) Close() {
	s = s.base()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range append([]*Session{s}, s.forks...) {
		if f != s {
			f.mu.Lock()
		}
		if f.cat != nil {
			f.cat.Remove()
		}
		if f != s {
			f.mu.Unlock()
		}
	}
}

// Committed runs the AfterCommit hooks once the manifest is saved.
func (s *Session) Committed(ctx context.Context, m *manifest.Manifest) {
	s = s.base()
	s.mu.Lock()
	fns := append([]func(context.Context, *manifest.Manifest){}, s.commit...)
	s.mu.Unlock()
	for _, fn := range fns {
		fn(ctx, m)
	}
}

// OpenSnapshotObject streams a side object a snapshot's manifest lists (an incremental index),
// checking it against the size and SHA-256 recorded there: what the store returns is untrusted until
// it matches (invariant 9). The reader fails as soon as it passes the recorded size, and at EOF
// unless size and SHA-256 match, so a reader that reaches EOF has read exactly what was stored.
func OpenSnapshotObject(ctx context.Context, st store.Store, m *manifest.Manifest, key string) (io.ReadCloser, error) {
	var want *manifest.Object
	for i := range m.Objects {
		if m.Objects[i].Key == key {
			want = &m.Objects[i]
		}
	}
	if want == nil {
		return nil, fmt.Errorf("snapshot %s does not list its index %s", m.ID, key)
	}
	rc, err := st.Open(ctx, key, 0, -1)
	if err != nil {
		return nil, err
	}
	return &checkedReader{r: io.LimitReader(store.ContextReader(ctx, rc), want.Size+1), c: rc, h: sha256.New(), want: *want, snap: m.ID}, nil
}

// ReadSnapshotObject reads a side object whole through OpenSnapshotObject (never more than the
// recorded size plus one byte), for indexes small enough to hold.
func ReadSnapshotObject(ctx context.Context, st store.Store, m *manifest.Manifest, key string) ([]byte, error) {
	rc, err := OpenSnapshotObject(ctx, st, m, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

type checkedReader struct {
	r    io.Reader
	c    io.Closer
	h    hash.Hash
	n    int64
	want manifest.Object
	snap string
}

func (c *checkedReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	if c.n > c.want.Size {
		return n, fmt.Errorf("%w: index %s is longer than snapshot %s records", archive.ErrIntegrity, c.want.Key, c.snap)
	}
	if err == io.EOF && (c.n != c.want.Size || hex.EncodeToString(c.h.Sum(nil)) != c.want.SHA256) {
		return n, fmt.Errorf("%w: index %s does not match the size and SHA-256 in snapshot %s", archive.ErrIntegrity, c.want.Key, c.snap)
	}
	return n, err
}

func (c *checkedReader) Close() error { return c.c.Close() }
