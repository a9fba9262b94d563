// Package manifest defines a snapshot's manifest: the one object whose existence makes a snapshot real.
//
// A manifest is written last, with a conditional create, after every segment it names has been stored
// and checked (invariant 1, docs/ARCHITECTURE.md). It has two halves. The plaintext half carries only operational
// metadata (times, sizes, counts, component and database names, labels, bookmarks, hashes of
// ciphertext), so list, verify (quick), prune and report work without any identity. The catalogue —
// item names, table names, per-item offsets and plaintext hashes — is age-encrypted inside the manifest
// (invariant 3).
package manifest

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/layout"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// FormatVersion is the manifest format this build writes and the highest major version it reads.
// Format 2 manifests carry a MAC (pkg/seal, PurposeManifest); format 1 ones are read as before.
// Format 3 adds what a format 2 reader would misread: streamed catalogues (catalogue_objects) and
// content-addressed chunks (chunks/<id> entries); a cfbackup that reads up to 2 lists such a manifest
// as unreadable with "upgrade cfbackup" instead of failing on an empty catalogue.
const FormatVersion = 3

// Auth is what is known of a manifest's authenticity once read (never stored).
type Auth string

// Authentication states a reader sets (pkg/repo).
const (
	// AuthOK: the MAC (or a migration's record of a format 1 manifest) checked with the writer secret.
	AuthOK Auth = "authenticated"
	// AuthUnchecked: the reader holds no key; it may only list the manifest, marked as unchecked.
	AuthUnchecked Auth = "unchecked"
	// AuthLegacy: a format 1 repository, where nothing can be authenticated (cfbackup migrate).
	AuthLegacy Auth = "legacy"
)

var (
	// ErrFormat: the manifest is not valid JSON of the expected shape.
	ErrFormat = errclass.New(errclass.Repository, "malformed manifest")
	// ErrVersion: the manifest was written by a newer, incompatible cfbackup.
	ErrVersion = errclass.New(errclass.Repository, "unsupported manifest format version")
)

// Manifest is one snapshot. Everything here except Catalogue is plaintext by design.
type Manifest struct {
	Format     int               `json:"format"`
	ID         string            `json:"id"`
	Time       time.Time         `json:"time"`
	Duration   Duration          `json:"duration"`
	Host       string            `json:"host,omitempty"`
	Actor      string            `json:"actor,omitempty"`
	Tool       string            `json:"tool,omitempty"`
	Components []string          `json:"components"`
	Labels     map[string]string `json:"labels,omitempty"`
	// Sources summarises each database (bucket, namespace) captured.
	Sources []Source `json:"sources"`
	// Segments lists every segment object the catalogue references, with ciphertext size and SHA-256:
	// those this snapshot wrote, and those of earlier snapshots its incremental items point into.
	Segments []archive.SegmentInfo `json:"segments"`
	// Objects are other objects the snapshot owns (an incremental index), written before the manifest.
	Objects []Object `json:"objects,omitempty"`
	// Items and sizes over all sources.
	Items      int64 `json:"items"`
	Size       int64 `json:"size"`        // uncompressed bytes of all items
	StoredSize int64 `json:"stored_size"` // ciphertext bytes of all segments
	// Catalogue is base64( age( gzip( JSON Catalogue ) ) ) to all repository recipients: the inline
	// catalogue of snapshots written before the streamed one (CatalogueObjects). A manifest has one
	// or the other, never both.
	Catalogue string `json:"catalogue,omitempty"`
	// CatalogueObjects are the side objects of a streamed catalogue, read in order (EachItem).
	CatalogueObjects []CatalogueObject `json:"catalogue_objects,omitempty"`
	// Shards, in a merged sharded run (docs/SHARDING.md), says what each shard did: plaintext
	// operational metadata of the partials, which the merge deletes.
	Shards []ShardRun `json:"shards,omitempty"`
	// MAC authenticates the manifest (format 2): HMAC-SHA256 over its canonical JSON without "mac",
	// keyed from the writer secret (docs/FORMAT.md "Authentication").
	MAC string `json:"mac,omitempty"`

	// Auth is what the reader established about the manifest's authenticity.
	Auth Auth `json:"-"`
	// Summary: read for a listing, without the catalogue (repo.LoadManifest reads it whole).
	Summary bool `json:"-"`

	from store.Store // where it was read from (SetStore): OpenCatalogue reads streamed catalogues there
}

// SetStore records the store the manifest was read from or written to, so OpenCatalogue can read a
// streamed catalogue's objects (repo and engine set it).
func (m *Manifest) SetStore(st store.Store) { m.from = st }

// Source is one captured database (or, later, bucket or namespace): plaintext operational metadata.
type Source struct {
	Component string `json:"component"` // "d1"
	ID        string `json:"id"`        // D1 database UUID
	Name      string `json:"name"`
	Version   string `json:"version,omitempty"`
	Items     int64  `json:"items"`
	Size      int64  `json:"size"`
	Tables    int    `json:"tables,omitempty"`
	// AtBookmark is D1's Time Travel bookmark of the exported state.
	AtBookmark string `json:"at_bookmark,omitempty"`
	// Blocked is how long the database could not serve queries while it was exported.
	Blocked Duration `json:"blocked,omitempty"`
	// R2 buckets: the parent snapshot, objects reused from it (not downloaded), objects skipped
	// because they vanished between listing and GET, and the incremental index object.
	Parent  string `json:"parent,omitempty"`
	Reused  int64  `json:"reused,omitempty"`
	Skipped int64  `json:"skipped,omitempty"`
	Index   string `json:"index,omitempty"`
	// Prefix is the key prefix an R2 backup was limited to (--prefix); empty for the whole bucket.
	Prefix string `json:"prefix,omitempty"`
	// Class is a Durable Object namespace's class: the Worker module routes requests by it.
	Class string `json:"class,omitempty"`
}

// ShardRun is one shard's part of a merged run: its partial manifest's id, host, start, duration and
// counts (objects, uncompressed and stored bytes, objects reused from its parent).
type ShardRun struct {
	Shard      string    `json:"shard"` // "I/N"
	Partial    string    `json:"partial"`
	Host       string    `json:"host,omitempty"`
	Time       time.Time `json:"time"`
	Duration   Duration  `json:"duration"`
	Items      int64     `json:"items"`
	Size       int64     `json:"size"`
	StoredSize int64     `json:"stored_size"`
	Reused     int64     `json:"reused"`
}

// Object is a side object a snapshot owns: prune keeps it while the snapshot is kept.
type Object struct {
	Key    string `json:"key"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Catalogue is the encrypted half: where every item is and what it must hash to.
type Catalogue struct {
	Items []Item `json:"items"`

	stream func(sel *Selection, fn func(Item) error) error // set by Stream: Items is empty, Each reads the objects
	// objects, set by Stream, reads chosen catalogue objects for readers that pick them (Layout,
	// EachInObjects: a test-restore's sample).
	objects *objectReader
}

// Item is one restorable unit: a D1 table's SQL, a D1 schema part, a virtual table's definition and rows.
type Item struct {
	Component string `json:"component"`
	Source    string `json:"source"` // Source.ID
	Kind      string `json:"kind"`   // "table", "schema", "virtual"
	Table     string `json:"table,omitempty"`
	Rows      int64  `json:"rows"`
	// References are the tables a "table" item's foreign keys point to; restore replays parents first.
	References []string `json:"references,omitempty"`
	// Warnings say, when the backup is taken, how a restore of this item will differ from what was
	// backed up (e.g. a contentless FTS5 table, whose index cannot be read back, comes back empty).
	Warnings []string `json:"warnings,omitempty"`
	// R2 objects (Kind "object"): the key and what restore puts back with it (docs/R2.md).
	Object *ObjectMeta `json:"object,omitempty"`
	// ObjectID is a Durable Object item's object ID (64 hex digits, bound to its namespace).
	ObjectID string `json:"object_id,omitempty"`
	// ObjectName is the name a Durable Object was created from (idFromName), when the Worker module
	// knew it: a restore into another namespace or account re-creates the object under that name.
	ObjectName string `json:"object_name,omitempty"`
	archive.ItemRef
}

// ObjectMeta is an R2 object's key and HTTP metadata, kept only inside the encrypted catalogue.
type ObjectMeta struct {
	Key                string            `json:"key"`
	ETag               string            `json:"etag"`
	LastModified       time.Time         `json:"last_modified"`
	ContentType        string            `json:"content_type,omitempty"`
	CacheControl       string            `json:"cache_control,omitempty"`
	ContentEncoding    string            `json:"content_encoding,omitempty"`
	ContentDisposition string            `json:"content_disposition,omitempty"`
	ContentLanguage    string            `json:"content_language,omitempty"`
	Expires            string            `json:"expires,omitempty"`
	Metadata           map[string]string `json:"metadata,omitempty"`
}

// Duration marshals as a Go duration string ("1.5s") so manifests stay readable.
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Key is the store key of a manifest: snapshots/<UTC time>-<id>.json, so a plain listing sorts by time.
func Key(t time.Time, id string) string {
	return layout.ManifestKey(t, id)
}

// IDFromKey extracts the snapshot id from a manifest key, or "" when the key is not one.
func IDFromKey(key string) string {
	name, ok := layout.ManifestName(key)
	if !ok {
		return ""
	}
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return ""
	}
	return name[i+1:]
}

// TimeFromKey extracts the time a manifest key names (to the second); ok is false for other keys.
func TimeFromKey(key string) (t time.Time, ok bool) {
	name, ok := strings.CutPrefix(key, layout.Snapshots)
	i := strings.IndexByte(name, '-')
	if !ok || i < 0 {
		return time.Time{}, false
	}
	t, err := time.Parse(layout.TimeFormat, name[:i])
	return t, err == nil
}

// SealCatalogue encrypts the catalogue to the recipients and stores it in m.
func (m *Manifest) SealCatalogue(c *Catalogue, recipients []age.Recipient) error {
	var buf bytes.Buffer
	enc, err := age.Encrypt(&buf, recipients...)
	if err != nil {
		return fmt.Errorf("encrypt catalogue: %w", err)
	}
	zw := gzip.NewWriter(enc)
	if err := json.NewEncoder(zw).Encode(c); err != nil {
		return fmt.Errorf("encode catalogue: %w", err)
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	m.Catalogue = base64.StdEncoding.EncodeToString(buf.Bytes())
	return nil
}

// MaxCatalogueBytes bounds the decompressed catalogue of a manifest that claims items items: a
// catalogue entry is a few hundred bytes (an R2 object's key and metadata at most ~12 KiB), so a
// gzip bomb is stopped long before it exhausts memory.
func MaxCatalogueBytes(items int64) int64 { return 1<<20 + max(items, 0)*16<<10 }

// ChunkedCatalogueBytes is what content-defined chunks may add to MaxCatalogueBytes for items of size
// bytes in all: an item stored as content-addressed chunks (docs/FORMAT.md "Content-defined chunks")
// records a chunk per 4 KiB at most (its last one excepted, which the per-item bound covers), each in
// under 256 bytes of JSON.
func ChunkedCatalogueBytes(size int64) int64 { return max(size, 0) / 4096 * 256 }

// OpenCatalogue decrypts the whole catalogue into memory (small snapshots, tests; readers that must
// not hold every item use EachItem or Stream). A streamed catalogue is read from the store set with
// SetStore. For an inline catalogue: it decrypts the catalogue with the identities. Its decompressed size is bounded by what
// the manifest claims (MaxCatalogueBytes) and its item count must match the claim.
func (m *Manifest) OpenCatalogue(ids []age.Identity) (*Catalogue, error) {
	if m.Summary {
		return nil, fmt.Errorf("catalogue of snapshot %s was not read (listing only): load the manifest whole first", m.ID)
	}
	if m.Streamed() {
		if m.from == nil {
			return nil, fmt.Errorf("catalogue of snapshot %s is in side objects and the manifest has no store to read them from", m.ID)
		}
		c := &Catalogue{Items: make([]Item, 0, min(m.Items, 1<<20))}
		err := m.EachItem(context.Background(), m.from, ids, func(it Item) error {
			c.Items = append(c.Items, it)
			return nil
		})
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	raw, err := base64.StdEncoding.DecodeString(m.Catalogue)
	if err != nil {
		return nil, fmt.Errorf("%w: catalogue is not base64: %v", ErrFormat, err)
	}
	dec, err := age.Decrypt(bytes.NewReader(raw), ids...)
	if err != nil {
		return nil, fmt.Errorf("decrypt catalogue of snapshot %s: %w", m.ID, err)
	}
	zr, err := gzip.NewReader(dec)
	if err != nil {
		return nil, fmt.Errorf("%w: catalogue of snapshot %s: %v", ErrFormat, m.ID, err)
	}
	limit := MaxCatalogueBytes(m.Items) + ChunkedCatalogueBytes(m.Size)
	lr := &io.LimitedReader{R: zr, N: limit + 1}
	var c Catalogue
	if err := json.NewDecoder(lr).Decode(&c); err != nil {
		if lr.N <= 0 {
			return nil, fmt.Errorf("%w: catalogue of snapshot %s decompresses to more than %d bytes, far more than its %d items need", ErrFormat, m.ID, limit, m.Items)
		}
		return nil, fmt.Errorf("%w: catalogue of snapshot %s: %v", ErrFormat, m.ID, err)
	}
	if int64(len(c.Items)) != m.Items {
		return nil, fmt.Errorf("%w: catalogue of snapshot %s holds %d items, its manifest says %d", ErrFormat, m.ID, len(c.Items), m.Items)
	}
	return &c, nil
}

// Encode writes the manifest as indented JSON.
func (m *Manifest) Encode(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(m)
}

// Decode reads a manifest and refuses unknown major versions (invariant 4: fail closed).
func Decode(r io.Reader) (*Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(io.LimitReader(r, 256<<20))
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	if m.Format < 1 || m.ID == "" {
		return nil, fmt.Errorf("%w: missing format or id", ErrFormat)
	}
	if m.Format > FormatVersion {
		return nil, fmt.Errorf("%w: snapshot %s has format %d, this cfbackup reads up to %d: upgrade cfbackup", ErrVersion, m.ID, m.Format, FormatVersion)
	}
	return &m, nil
}

// SegmentMap indexes the manifest's segments by id, as archive.OpenItem wants them.
func (m *Manifest) SegmentMap() map[string]archive.SegmentInfo {
	out := make(map[string]archive.SegmentInfo, len(m.Segments))
	for _, s := range m.Segments {
		out[s.ID] = s
	}
	return out
}

// SourceByName finds a source by name or id within a component.
func (m *Manifest) SourceByName(component, nameOrID string) (Source, bool) {
	for _, s := range m.Sources {
		if s.Component == component && (s.Name == nameOrID || s.ID == nameOrID) {
			return s, true
		}
	}
	return Source{}, false
}

// SortNewestFirst orders manifests by time, newest first (ties by id for stability).
func SortNewestFirst(ms []*Manifest) {
	sort.Slice(ms, func(i, j int) bool {
		if !ms[i].Time.Equal(ms[j].Time) {
			return ms[i].Time.After(ms[j].Time)
		}
		return ms[i].ID > ms[j].ID
	})
}
