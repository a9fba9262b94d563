package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
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
)

var (
	// ErrRewrapLocked: some objects are under S3 Object Lock; their old versions stay readable.
	ErrRewrapLocked = errclass.New(errclass.Refused, "objects under Object Lock were not rewrapped")
	// ErrRewrapSource: a segment changed while it was read for a rewrap (or does not match any manifest).
	ErrRewrapSource = errclass.New(errclass.Integrity, "segment does not match its recorded hash")
	// ErrRewrapUnreadable: a manifest could not be read or authenticated, so its segments' new hashes
	// could not be recorded in it.
	ErrRewrapUnreadable = errclass.New(errclass.Integrity, "a snapshot cannot be rewrapped")
)

// RewrapOptions tune Rewrap.
type RewrapOptions struct {
	// Identities unwrap the file key of every object (one of the current recipients' identities).
	Identities []age.Identity
	// OnObject is called after each object is rewritten (progress; tests interrupt here).
	OnObject func(key string, done, total int)
	Now      func() time.Time
}

// RewrapResult is what Rewrap did.
type RewrapResult struct {
	Segments     int      `json:"segments"`
	Rewritten    int      `json:"rewritten"`
	Resumed      int      `json:"resumed"`
	Manifests    int      `json:"manifests"`
	Grown        int      `json:"grown"`
	Locked       []string `json:"locked"`
	BytesRead    int64    `json:"bytes_read"`
	BytesWritten int64    `json:"bytes_written"`
}

// rewrapJournal is the progress of a rewrap, sealed under layout.RotationJournalKey("rewrap").
type rewrapJournal struct {
	Version int `json:"version"`
	// Target names the recipient set the rewrap wraps to (sorted fingerprints): a journal of another
	// target is discarded.
	Target string `json:"target"`
	// Done: segments rewritten, with their new size and SHA-256.
	Done map[string]archive.SegmentInfo `json:"done"`
	// Pending: the header about to be written to a segment (base64), so a rerun recognises a segment
	// whose rewrite completed just before an interruption.
	Pending map[string]string `json:"pending"`
}

const rewrapMagic = "cfbackup rotation journal rewrap v1\n"

func journalKey(secret []byte) []byte { return seal.DeriveKey(secret, "cfbackup rotation journal v1") }

func (r *Repo) targetName() string {
	fps := make([]string, 0, len(r.Config.Recipients))
	for _, x := range r.Config.Recipients {
		fps = append(fps, x.Fingerprint)
	}
	sort.Strings(fps)
	return strings.Join(fps, ",")
}

func (r *Repo) loadRewrapJournal(ctx context.Context) (*rewrapJournal, bool, error) {
	j := &rewrapJournal{Version: 1, Target: r.targetName(), Done: map[string]archive.SegmentInfo{}, Pending: map[string]string{}}
	b, err := r.readSmall(ctx, layout.RotationJournalKey("rewrap"))
	if errors.Is(err, store.ErrNotFound) {
		return j, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	var old rewrapJournal
	if err := seal.OpenEnvelope(journalKey(r.key.Secret()), b, rewrapMagic, "a rewrap journal", ErrUnauthenticated, &old); err != nil {
		return nil, false, fmt.Errorf("%s: %w", layout.RotationJournalKey("rewrap"), err)
	}
	if old.Target != j.Target || old.Done == nil {
		return j, false, nil // a rewrap to another recipient set: start over
	}
	if old.Pending == nil {
		old.Pending = map[string]string{}
	}
	return &old, true, nil
}

func (r *Repo) saveRewrapJournal(ctx context.Context, j *rewrapJournal) error {
	b, err := seal.SealJSON(journalKey(r.key.Secret()), rewrapMagic, j)
	if err != nil {
		return err
	}
	return r.Store.Put(ctx, layout.RotationJournalKey("rewrap"), bytes.NewReader(b), store.PutOptions{})
}

// readSmall reads a journal or index object whole, bounded like a manifest: one larger than that
// is refused (not cut short, which would only surface later as a failed MAC).
func (r *Repo) readSmall(ctx context.Context, key string) ([]byte, error) {
	rc, err := r.Store.Open(ctx, key, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(store.ContextReader(ctx, rc), maxManifestSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxManifestSize {
		return nil, fmt.Errorf("%s: %w: larger than %d MiB", key, manifest.ErrFormat, maxManifestSize>>20)
	}
	return b, nil
}

// Rewrap rewrites the header of every age file of the repository — segments, catalogues and
// keys/writer.age — so that exactly the current recipients (config.json) can decrypt it; payloads
// are kept byte for byte. Each segment is rewritten in place with one PUT (atomic per object) and,
// whenever possible, padded to its old size, so a snapshot stays readable at every moment; manifests
// are then re-sealed with the segments' new SHA-256. Progress is kept in a journal (sealed with the
// writer secret) so a rerun after an interruption resumes. Objects under Object Lock are skipped and
// reported (ErrRewrapLocked): their old versions stay readable until their retention ends.
func (r *Repo) Rewrap(ctx context.Context, o RewrapOptions) (*RewrapResult, error) {
	if err := r.RequireWritable("rewrapping"); err != nil {
		return nil, err
	}
	if r.key == nil {
		return nil, r.RequireKey("rewrap")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	rcp, err := r.Recipients()
	if err != nil {
		return nil, err
	}
	mans, segs, err := r.rewrapInventory(ctx)
	if err != nil {
		return nil, err
	}
	j, _, err := r.loadRewrapJournal(ctx)
	if err != nil {
		return nil, err
	}
	res := &RewrapResult{Segments: len(segs), Locked: []string{}}
	if err := r.putWriterKey(ctx, r.key.Secret(), rcp); err != nil {
		return nil, err
	}
	keysSorted := make([]string, 0, len(segs))
	for k := range segs {
		keysSorted = append(keysSorted, k)
	}
	sort.Strings(keysSorted)
	for i, k := range keysSorted {
		s := segs[k]
		if _, ok := j.Done[s.id]; ok {
			res.Resumed++
			continue
		}
		if locked, why := r.isLocked(ctx, k, o.Now()); locked {
			res.Locked = append(res.Locked, k+" ("+why+")")
			continue
		}
		info, err := r.rewrapSegment(ctx, j, s, o.Identities, rcp, res)
		if errors.Is(err, store.ErrNotFound) {
			continue // deleted since it was listed (prune): nothing left to rewrap
		}
		if err != nil {
			return res, err
		}
		j.Done[s.id] = info
		delete(j.Pending, s.id)
		res.Rewritten++
		if o.OnObject != nil {
			o.OnObject(k, i+1, len(keysSorted))
		}
		if err := ctx.Err(); err != nil {
			// Keep what is done (the next segment's pending note would have saved it).
			_ = r.saveRewrapJournal(context.WithoutCancel(ctx), j)
			return res, err
		}
	}
	// The journal is saved once per segment, before its PUT (the pending header, with every
	// segment done so far); once more here, so an interrupted manifest pass resumes without rereading.
	if err := r.saveRewrapJournal(ctx, j); err != nil {
		return res, fmt.Errorf("save the rewrap journal: %w", err)
	}
	if err := r.dropResumeJournals(ctx); err != nil {
		return res, err
	}
	for _, mk := range mans {
		if err := r.rewrapManifest(ctx, mk, j, o.Identities, rcp); err != nil {
			return res, err
		}
		res.Manifests++
	}
	if err := r.Store.Delete(ctx, layout.RotationJournalKey("rewrap")); err != nil && !errors.Is(err, store.ErrNotFound) {
		return res, fmt.Errorf("remove the rewrap journal: %w", err)
	}
	if len(res.Locked) > 0 {
		return res, fmt.Errorf("%w: %d object(s) are under a legal hold or unexpired retention and keep headers the removed identities can open until then: %s",
			ErrRewrapLocked, len(res.Locked), strings.Join(res.Locked, ", "))
	}
	return res, nil
}

// rewrapSeg is one segment object and the ciphertext hashes manifests record for it.
type rewrapSeg struct {
	id     string
	key    string
	size   int64
	accept map[string]bool
}

// rewrapInventory lists the manifests (all must authenticate) and every segment object with the
// hashes manifests record for it (none for an orphan).
func (r *Repo) rewrapInventory(ctx context.Context) ([]string, map[string]*rewrapSeg, error) {
	var mans []string
	segs := map[string]*rewrapSeg{}
	err := r.Store.List(ctx, layout.Snapshots, func(oi store.ObjectInfo) error {
		if layout.IsManifestKey(oi.Key) {
			mans = append(mans, oi.Key)
		}
		return nil
	})
	if err == nil {
		err = r.Store.List(ctx, layout.Segments, func(oi store.ObjectInfo) error {
			if strings.HasSuffix(oi.Key, layout.SegmentSuffix) {
				id := strings.TrimSuffix(strings.TrimPrefix(oi.Key, layout.Segments), layout.SegmentSuffix)
				segs[oi.Key] = &rewrapSeg{id: id, key: oi.Key, size: oi.Size, accept: map[string]bool{}}
			}
			return nil
		})
	}
	if err != nil {
		return nil, nil, fmt.Errorf("list the repository: %w", err)
	}
	for _, mk := range mans {
		m, err := r.loadKey(ctx, mk)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %s: %v; nothing was changed: remove or restore that manifest first ('cfbackup verify')", ErrRewrapUnreadable, mk, err)
		}
		for _, s := range m.Segments {
			if rs, ok := segs[s.Key]; ok {
				rs.accept[s.SHA256] = true
			}
		}
	}
	return mans, segs, nil
}

// isLocked reports an object under a legal hold or unexpired retention (S3 Object Lock).
func (r *Repo) isLocked(ctx context.Context, key string, now time.Time) (bool, string) {
	lk, ok := store.AsObjectLocker(r.Store)
	if !ok || r.Config.ObjectLock == nil {
		return false, ""
	}
	if on, err := lk.LegalHold(ctx, key); err == nil && on {
		return true, "legal hold"
	}
	if mode, until, err := lk.Retention(ctx, key); err == nil && mode != "" && until.After(now) {
		return true, strings.ToLower(mode) + " retention until " + until.UTC().Format(time.RFC3339)
	}
	return false, ""
}

// rewrapSegment rewrites one segment with a new header and the same payload, streaming: the old
// object is read once, its SHA-256 checked (against what manifests record) before the PUT completes.
func (r *Repo) rewrapSegment(ctx context.Context, j *rewrapJournal, s *rewrapSeg, ids []age.Identity, rcp []age.Recipient, res *RewrapResult) (archive.SegmentInfo, error) {
	rc, err := r.Store.Open(ctx, s.key, 0, -1)
	if err != nil {
		return archive.SegmentInfo{}, fmt.Errorf("open %s: %w", s.key, err)
	}
	defer rc.Close()
	src := store.ContextReader(ctx, rc)
	head := make([]byte, min(s.size, 64<<10))
	if _, err := io.ReadFull(src, head); err != nil {
		return archive.SegmentInfo{}, fmt.Errorf("read %s: %w", s.key, err)
	}
	n, err := keys.HeaderLen(head)
	if err != nil && int64(len(head)) < s.size {
		more := make([]byte, min(s.size, keys.MaxHeaderSize)-int64(len(head)))
		if _, err := io.ReadFull(src, more); err != nil {
			return archive.SegmentInfo{}, fmt.Errorf("read %s: %w", s.key, err)
		}
		head = append(head, more...)
		n, err = keys.HeaderLen(head)
	}
	if err != nil {
		return archive.SegmentInfo{}, fmt.Errorf("%s: %w", s.key, err)
	}
	oldSum := sha256.New()
	oldSum.Write(head)
	if p, ok := j.Pending[s.id]; ok && p == base64.StdEncoding.EncodeToString(head[:n]) {
		// Rewritten just before an interruption: only its hash is missing.
		nr, err := io.Copy(oldSum, src)
		if err != nil {
			return archive.SegmentInfo{}, fmt.Errorf("read %s: %w", s.key, err)
		}
		res.BytesRead += int64(len(head)) + nr
		return archive.SegmentInfo{ID: s.id, Key: s.key, Size: int64(len(head)) + nr, SHA256: hex.EncodeToString(oldSum.Sum(nil))}, nil
	}
	hdr, err := keys.RewrapHeader(head[:n], ids, rcp, n)
	if err != nil {
		return archive.SegmentInfo{}, fmt.Errorf("%w: %s: %v (rewrap needs an identity of a recipient the segment was encrypted to: --identity-file)", archive.ErrNoIdentity, s.key, err)
	}
	if len(hdr) != n {
		res.Grown++
	}
	j.Pending[s.id] = base64.StdEncoding.EncodeToString(hdr)
	if err := r.saveRewrapJournal(ctx, j); err != nil {
		return archive.SegmentInfo{}, fmt.Errorf("save the rewrap journal: %w", err)
	}
	newSum := sha256.New()
	newSum.Write(hdr)
	newSum.Write(head[n:])
	body := &checkedReader{r: src, old: oldSum, new: newSum, accept: s.accept, key: s.key, n: int64(len(head))}
	err = r.Store.Put(ctx, s.key, io.MultiReader(bytes.NewReader(hdr), bytes.NewReader(head[n:]), body), store.PutOptions{})
	res.BytesRead += body.n
	if err != nil {
		return archive.SegmentInfo{}, fmt.Errorf("rewrite %s: %w", s.key, err)
	}
	size := body.n - int64(n) + int64(len(hdr))
	res.BytesWritten += size
	return archive.SegmentInfo{ID: s.id, Key: s.key, Size: size, SHA256: hex.EncodeToString(newSum.Sum(nil))}, nil
}

// checkedReader passes the old object's payload on while hashing it, and fails at its end (so the PUT
// never completes) when the old object's SHA-256 is not one a manifest records.
type checkedReader struct {
	r        io.Reader
	old, new hash.Hash
	accept   map[string]bool
	key      string
	n        int64
}

func (c *checkedReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.old.Write(p[:n])
	c.new.Write(p[:n])
	c.n += int64(n)
	if err == io.EOF && len(c.accept) > 0 && !c.accept[hex.EncodeToString(c.old.Sum(nil))] {
		return n, fmt.Errorf("%w: %s: read %d bytes whose SHA-256 no snapshot records (changed during the rewrap, or damaged): it was left as it was; run 'cfbackup verify --read-data'", ErrRewrapSource, c.key, c.n)
	}
	return n, err
}

// rewrapInline rewraps the header of a manifest's inline catalogue.
func rewrapInline(m *manifest.Manifest, mk string, ids []age.Identity, rcp []age.Recipient) error {
	c, err := rewrapSealed(m.Catalogue, mk, "catalogue", ids, rcp)
	m.Catalogue = c
	return err
}

// rewrapSealed rewraps the header of base64(age(…)) held in a manifest: an inline catalogue, or a
// catalogue object's fence.
func rewrapSealed(b64, mk, what string, ids []age.Identity, rcp []age.Recipient) (string, error) {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return b64, fmt.Errorf("%w: %s: %s is not base64", manifest.ErrFormat, mk, what)
	}
	n, err := keys.HeaderLen(raw)
	if err != nil {
		return b64, fmt.Errorf("%s: %s: %w", mk, what, err)
	}
	hdr, err := keys.RewrapHeader(raw[:n], ids, rcp, 0)
	if err != nil {
		return b64, fmt.Errorf("%w: %s of %s: %v", archive.ErrNoIdentity, what, mk, err)
	}
	return base64.StdEncoding.EncodeToString(append(hdr, raw[n:]...)), nil
}

// rewrapCatalogueObjects rewraps a streamed catalogue's objects as segments are rewrapped (header
// only, in place, the old SHA-256 checked against the manifest's) and records their new size and
// SHA-256 in m. The journal keeps each one done, so a rerun neither rewrites nor misreads it.
func (r *Repo) rewrapCatalogueObjects(ctx context.Context, m *manifest.Manifest, j *rewrapJournal, ids []age.Identity, rcp []age.Recipient) error {
	for i, co := range m.CatalogueObjects {
		d, ok := j.Done[co.Key]
		if !ok {
			var err error
			rs := &rewrapSeg{id: co.Key, key: co.Key, size: co.Size, accept: map[string]bool{co.SHA256: true}}
			d, err = r.rewrapSegment(ctx, j, rs, ids, rcp, &RewrapResult{})
			if err != nil {
				return fmt.Errorf("catalogue of snapshot %s: %w", m.ID, err)
			}
			j.Done[co.Key] = d
			delete(j.Pending, co.Key)
			if err := r.saveRewrapJournal(ctx, j); err != nil {
				return fmt.Errorf("save the rewrap journal: %w", err)
			}
		}
		m.CatalogueObjects[i].Size, m.CatalogueObjects[i].SHA256 = d.Size, d.SHA256
		if co.Fence != "" {
			f, err := rewrapSealed(co.Fence, m.ID, "fence of "+co.Key, ids, rcp)
			if err != nil {
				return err
			}
			m.CatalogueObjects[i].Fence = f
		}
	}
	return nil
}

// rewrapManifest rewraps a manifest's catalogue and records its segments' new size and SHA-256.
func (r *Repo) rewrapManifest(ctx context.Context, mk string, j *rewrapJournal, ids []age.Identity, rcp []age.Recipient) error {
	m, err := r.loadKey(ctx, mk)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrRewrapUnreadable, mk, err)
	}
	if m.Streamed() {
		if err := r.rewrapCatalogueObjects(ctx, m, j, ids, rcp); err != nil {
			return err
		}
	} else if err := rewrapInline(m, mk, ids, rcp); err != nil {
		return err
	}
	for i, s := range m.Segments {
		if d, ok := j.Done[s.ID]; ok && d.Key == s.Key {
			m.StoredSize += d.Size - s.Size
			m.Segments[i].Size, m.Segments[i].SHA256 = d.Size, d.SHA256
		}
	}
	if err := r.Seal(m); err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := m.Encode(&buf); err != nil {
		return err
	}
	if err := r.Store.Put(ctx, mk, &buf, store.PutOptions{}); err != nil {
		return fmt.Errorf("rewrite manifest %s: %w", mk, err)
	}
	return nil
}

// dropResumeJournals deletes the R2 resume journals of uncommitted backups: they record segments'
// ciphertext hashes from before the rewrap, which a resumed backup would copy into its manifest. The
// backup they belong to starts over instead (they are only an optimisation).
func (r *Repo) dropResumeJournals(ctx context.Context) error {
	var ks []string
	if err := r.Store.List(ctx, layout.Journals, func(oi store.ObjectInfo) error {
		ks = append(ks, oi.Key)
		return nil
	}); err != nil {
		return fmt.Errorf("list resume journals: %w", err)
	}
	for _, k := range ks {
		if err := r.Store.Delete(ctx, k); err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("delete resume journal %s: %w", k, err)
		}
	}
	return nil
}
