package r2

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/s3api"
)

// Opener reads one item back (engine.Engine.Opener binds archive.OpenItem to a snapshot).
type Opener func(ctx context.Context, ref archive.ItemRef) (io.ReadCloser, error)

// ErrNotInSnapshot: an object or prefix asked for is not in the snapshot.
var ErrNotInSnapshot = errclass.New(errclass.NotFound, "not in the snapshot")

// Overwrite policies for objects that already exist at the target with different data.
const (
	OverwriteFail      = "fail"      // refuse the whole restore before writing anything (default)
	OverwriteSkip      = "skip"      // leave the existing object alone
	OverwriteOverwrite = "overwrite" // replace it
)

// DirIndexName is the file a directory restore writes at its top with every object's key, path,
// size, SHA-256 and metadata (JSON lines). Encoded paths never start with "%c", so it cannot collide.
const DirIndexName = "%cfbackup-objects.jsonl"

// dirTempPrefix names a directory restore's files while they are written and checked. Like
// DirIndexName it cannot be an encoded key, so a restore removes any such file left by a killed one.
const dirTempPrefix = "%cfbackup-tmp-"

// Select picks a bucket's objects from a catalogue: all of them, those under prefix, or the given keys.
func Select(cat *manifest.Catalogue, bucket, prefix string, keys []string) ([]manifest.Item, error) {
	want := map[string]bool{}
	for _, k := range keys {
		want[k] = true
	}
	var out []manifest.Item
	// One pass over the (streamed) catalogue, skipping the objects whose key ranges miss the keys or
	// the prefix (docs/FORMAT.md "Streamed catalogue"); only the selected items are held.
	sel := &manifest.Selection{Component: Component, Source: bucket, Keys: keys, Prefix: prefix}
	err := cat.EachSelected(sel, func(it manifest.Item) error {
		if it.Component != Component || it.Source != bucket || it.Object == nil {
			return nil
		}
		k := it.Object.Key
		if len(keys) > 0 {
			if !want[k] {
				return nil
			}
			delete(want, k)
		} else if !strings.HasPrefix(k, prefix) {
			return nil
		}
		out = append(out, it)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(want) > 0 {
		var missing []string
		for k := range want {
			missing = append(missing, fmt.Sprintf("%q", k))
		}
		sort.Strings(missing)
		if len(missing) > 5 {
			missing = append(missing[:5], fmt.Sprintf("and %d more", len(missing)-5))
		}
		return nil, fmt.Errorf("%w: object(s) %s of bucket %s", ErrNotInSnapshot, strings.Join(missing, ", "), bucket)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no object of bucket %s under prefix %q", ErrNotInSnapshot, bucket, prefix)
	}
	return out, nil
}

// Target is where a restore writes: a bucket (with an optional key prefix) or a local directory.
type Target struct {
	Bucket string
	// Prefix is prepended to every restored key after StripPrefix is removed from it.
	Prefix      string
	StripPrefix string
	Dir         string
	Overwrite   string
}

func (t Target) String() string {
	if t.Dir != "" {
		return "dir:" + t.Dir
	}
	return "r2://" + t.Bucket + "/" + t.Prefix
}

// PlanEntry is one object of a restore plan.
type PlanEntry struct {
	Key    string `json:"key"`
	Target string `json:"target"` // key in the target bucket, or path under the directory
	Size   int64  `json:"size"`
	// Action: "put" (absent at the target), "same" (already there with the same size and ETag or
	// SHA-256: left alone), "conflict" (different data there), "skip" (conflict, --overwrite skip)
	// or "overwrite" (conflict, --overwrite overwrite).
	Action string `json:"action"`

	item manifest.Item
}

// Plan is what a restore will do (printed by --dry-run).
type Plan struct {
	Target    string      `json:"target"`
	Objects   int         `json:"objects"`
	Bytes     int64       `json:"bytes"`
	Puts      int         `json:"puts"`
	Same      int         `json:"same"`
	Conflicts int         `json:"conflicts"`
	Entries   []PlanEntry `json:"entries"`

	t Target
}

// PlanRestore decides, for every selected object, what the restore will do at the target. It reads
// the target (one listing of the bucket prefix, or a stat and hash per existing file) and writes nothing.
func PlanRestore(ctx context.Context, c *Client, items []manifest.Item, t Target) (*Plan, error) {
	switch t.Overwrite {
	case "":
		t.Overwrite = OverwriteFail
	case OverwriteFail, OverwriteSkip, OverwriteOverwrite:
	default:
		return nil, fmt.Errorf("%w: --overwrite %q: use skip, overwrite or fail", ErrConfig, t.Overwrite)
	}
	p := &Plan{Target: t.String(), t: t}
	keys := make([]string, len(items))
	for i, it := range items {
		keys[i] = t.Prefix + strings.TrimPrefix(it.Object.Key, t.StripPrefix)
	}
	type have struct {
		size int64
		etag string
	}
	existing := map[string]have{}
	var paths map[string]string
	var root *os.Root // nil: the directory does not exist yet
	if t.Dir != "" {
		paths = EncodePaths(keys)
		r, err := os.OpenRoot(t.Dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		if err == nil {
			root = r
			defer root.Close()
		}
	} else {
		if c == nil {
			return nil, fmt.Errorf("%w: no R2 client for a bucket target", ErrConfig)
		}
		lp := CommonPrefix(keys)
		if err := c.List(ctx, t.Bucket, lp, func(o Object) error {
			existing[o.Key] = have{o.Size, o.ETag}
			return nil
		}); err != nil {
			return nil, fmt.Errorf("read the target bucket %s: %w", t.Bucket, err)
		}
	}
	for i, it := range items {
		e := PlanEntry{Key: it.Object.Key, Target: keys[i], Size: it.Size, Action: "put", item: it}
		if t.Dir != "" {
			e.Target = paths[keys[i]]
			same, exists, err := sameFile(root, t.Dir, e, it)
			if err != nil {
				return nil, err
			}
			if exists {
				e.Action = "conflict"
				if same {
					e.Action = "same"
				}
			}
		} else if h, ok := existing[keys[i]]; ok {
			e.Action = "conflict"
			if h.size == it.Size && h.etag == it.Object.ETag {
				e.Action = "same"
			}
		}
		if e.Action == "conflict" && t.Overwrite != OverwriteFail {
			e.Action = t.Overwrite
		}
		switch e.Action {
		case "put", "overwrite":
			p.Puts++
			p.Bytes += it.Size
		case "same":
			p.Same++
		case "conflict":
			p.Conflicts++
		}
		p.Objects++
		p.Entries = append(p.Entries, e)
	}
	return p, nil
}

// CommonPrefix is the longest prefix of every key, so a listing reads no more of a bucket than needed.
func CommonPrefix(keys []string) string {
	if len(keys) == 0 {
		return ""
	}
	p := keys[0]
	for _, k := range keys[1:] {
		for !strings.HasPrefix(k, p) {
			p = p[:len(p)-1]
		}
	}
	return p
}

func sameFile(root *os.Root, dir string, e PlanEntry, it manifest.Item) (same, exists bool, err error) {
	if root == nil {
		return false, false, nil
	}
	rel := filepath.FromSlash(e.Target)
	if err := checkNoLinks(root, dir, rel, e.Key); err != nil {
		return false, false, err
	}
	fi, err := root.Lstat(rel)
	if errors.Is(err, os.ErrNotExist) {
		return false, false, nil
	}
	if err != nil {
		return false, false, fmt.Errorf("%w: key %q: %v", ErrBadKey, e.Key, err)
	}
	if !fi.Mode().IsRegular() || fi.Size() != it.Size {
		return false, true, nil
	}
	f, err := root.OpenFile(rel, os.O_RDONLY, 0)
	if err != nil {
		return false, true, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false, true, err
	}
	return hex.EncodeToString(h.Sum(nil)) == it.SHA256, true, nil
}

// checkNoLinks refuses a path whose directories under dir include a symbolic link: a restore to a
// directory writes only inside it, and a link already there (DIR/img -> /elsewhere) would carry
// its files out. os.Root enforces the same underneath (it refuses links that leave dir); this
// check refuses links inside dir too, and says which one.
func checkNoLinks(root *os.Root, dir, rel, key string) error {
	parts := strings.Split(rel, string(filepath.Separator))
	for i := 1; i < len(parts); i++ {
		prefix := filepath.Join(parts[:i]...)
		fi, err := root.Lstat(prefix)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: key %q: %v", ErrBadKey, key, err)
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("%w: key %q: %s is a symbolic link; a restore to a directory writes only inside %s and follows no link in it: remove the link or restore elsewhere",
				ErrBadKey, key, filepath.Join(dir, prefix), dir)
		}
	}
	return nil
}

// Result counts what a restore did.
type Result struct {
	Restored int   `json:"restored"`
	Bytes    int64 `json:"bytes"`
	Same     int   `json:"same"`
	Skipped  int   `json:"skipped"`
}

// Restore carries out a plan with concurrency parallel objects. With --overwrite fail and any
// conflict it writes nothing. Every object is read through open (ranged reads of only its frames) and
// checked against its SHA-256 before its last byte is committed: a bucket object is PUT only after the
// check (multipart uploads are aborted), a file is written to a temporary name and renamed after it.
// On failure the error says how many objects were already written; running again with
// --overwrite skip finishes the rest.
func Restore(ctx context.Context, c *Client, open Opener, p *Plan, concurrency int) (Result, error) {
	var res Result
	if p.Conflicts > 0 {
		var ex []string
		for _, e := range p.Entries {
			if e.Action == "conflict" && len(ex) < 5 {
				ex = append(ex, fmt.Sprintf("%q", e.Target))
			}
		}
		return res, fmt.Errorf("%w: %d object(s) at %s differ from the snapshot (%s); nothing was written: choose --overwrite skip or overwrite, or another target",
			ErrConflict, p.Conflicts, p.Target, strings.Join(ex, ", "))
	}
	if concurrency <= 0 {
		concurrency = 4
	}
	t := p.t
	var root *os.Root
	if t.Dir != "" {
		if err := os.MkdirAll(t.Dir, 0o755); err != nil {
			return res, err
		}
		r, err := os.OpenRoot(t.Dir)
		if err != nil {
			return res, err
		}
		root = r
		defer root.Close()
		removeStaleTemps(root, p)
	}
	var budget *s3api.Budget // part buffers beyond one per worker, shared (RestorePartStreams)
	var pool *s3api.Pool     // the workers' decoded objects and part buffers, reused
	if c != nil {
		pool = s3api.NewPool(p.poolBytes(c, concurrency))
		budget = s3api.NewBudgetPool(c.partStreams, pool)
	}
	work := make(chan int)
	var mu sync.Mutex
	var firstErr error
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := workerBufs{pool: pool}
			for i := range work {
				e := p.Entries[i]
				err := restoreOne(ctx, c, open, t, root, e, &buf, budget)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("restore object %q: %w", e.Key, err)
					cancel()
				} else if err == nil {
					res.Restored++
					res.Bytes += e.Size
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for i, e := range p.Entries {
		switch e.Action {
		case "same":
			res.Same++
			continue
		case "skip":
			res.Skipped++
			continue
		}
		select {
		case work <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if restorePoolHook != nil && pool != nil {
		restorePoolHook(pool, p.poolBytes(c, concurrency))
	}
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil && t.Dir != "" {
		return res, fmt.Errorf("%w (%d file(s) were already written to %s; run the same command again to finish: files already there with the right SHA-256 are left alone)", firstErr, res.Restored, p.Target)
	}
	if firstErr != nil {
		return res, fmt.Errorf("%w (%d object(s) were already written to %s; run again with --overwrite skip to finish)", firstErr, res.Restored, p.Target)
	}
	if t.Dir != "" {
		if err := writeDirIndex(root, p); err != nil {
			return res, err
		}
	}
	return res, nil
}

// streamReaderBytes is what a worker that restores objects over keepBuffer holds beyond what the
// 100 MiB base limit covers (it was measured on objects of at most 4 MiB read whole, their frame
// buffers dropped after each): the frame buffer it keeps (one compressed chunk, ≤ 4 MiB + 64 KiB,
// reused by objects read whole and by large objects decoded straight into their part buffers) and
// a decoded object of up to the part size (8 MiB) instead of 4. Large objects no longer stream
// through an LZ4 reader (a compressed and a decoded block of up to 4 MiB each, 8 MiB garbage per
// object), so the same 8 MiB now covers buffers that are kept rather than reallocated. Without
// them in the limit the live heap of eight workers sits above it and the collector runs back to
// back: 150 collections and 7.5 s of CPU for an 800 MiB restore of 18 MiB objects against 17 and
// 4.5 s (docs/BENCHMARKS.md); a limit 32 MiB lower with the frames kept ran 420 collections instead
// of 92 in a 4 GiB restore (docs/BENCHMARKS.md).
const streamReaderBytes = 8 << 20

// frameKeep is the largest frame buffer a worker keeps: a chunk's frame (archive.DefaultChunkSize
// of incompressible bytes, their tar header and LZ4 block headers).
const frameKeep = archive.DefaultChunkSize + 64<<10

// streamingBytes is the memory the workers hold in frame buffers beyond what the base limit
// covers: each worker that restores an object over keepBuffer keeps a frame buffer of up to one
// chunk's frame for its next objects (streamReaderBytes); none when every object is small, so the
// limit of a restore of small objects is unchanged.
func (p *Plan) streamingBytes(workers int) int64 {
	n := 0
	for _, e := range p.Entries {
		if e.Size > keepBuffer && (e.Action == "put" || e.Action == "overwrite") {
			n++
		}
	}
	return int64(min(n, workers)) * streamReaderBytes
}

// keepBuffer is the largest data buffer a restore worker keeps for its next object; larger ones go
// back to the restore's pool.
const keepBuffer = 1 << 20

// poolBytes bounds the restore's shared buffer pool (s3api.Pool: decoded objects read whole, part
// buffers), in use and kept together: what the memory limit adds for the restore
// (PartBufferBytes(0) + streamingBytes, see PlanRestore) plus the keepBuffer a worker kept before
// there was a pool, which the 100 MiB base limit covers. So the pool keeps only memory the limit
// already counts, and a restore of objects of 1–8 MiB no longer allocates and clears a decoded
// buffer per object; the bound depends on the workers and the part size, never on the data.
func (p *Plan) poolBytes(c *Client, workers int) int64 {
	return c.PartBufferBytes(0) + p.streamingBytes(workers) + int64(workers)*keepBuffer
}

// restorePoolHook, when set, sees each bucket restore's pool and its bound at the end (tests).
var restorePoolHook func(pool *s3api.Pool, bound int64)

// workerBufs is one restore worker's memory, reused from object to object.
type workerBufs struct {
	// b serves objects read whole and sent with one PUT (a frame and the decoded object) and
	// large objects decoded into part buffers (a frame). The frame buffer is kept, up to a chunk's
	// frame; the data buffer of an object read whole comes from pool and goes back to it.
	b    archive.Buffers
	pool *s3api.Pool
}

// readWhole reads an object that fits one PUT into a buffer from the pool (give it back with
// done once it is sent).
func (w *workerBufs) readWhole(wr archive.WholeReader, size int64) ([]byte, error) {
	if w.pool != nil {
		w.b.SetData(w.pool.Get(archive.WholeSize(size)))
	}
	return wr.ReadAll(&w.b)
}

// done gives the data buffer back to the pool and trims what the worker keeps.
func (w *workerBufs) done() {
	if w.pool != nil {
		w.pool.Put(w.b.TakeData())
	}
	w.b.TrimTo(frameKeep, keepBuffer)
}

func restoreOne(ctx context.Context, c *Client, open Opener, t Target, root *os.Root, e PlanEntry, buf *workerBufs, budget *s3api.Budget) error {
	rc, err := open(ctx, e.item.ItemRef)
	if err != nil {
		return err
	}
	defer rc.Close()
	if t.Dir == "" {
		// An object that fits one PUT is read whole (its SHA-256 checked) and sent from that buffer.
		if wr, ok := rc.(archive.WholeReader); ok && e.Size <= c.partSize {
			b, err := buf.readWhole(wr, e.Size)
			if err == nil {
				err = c.PutBytes(ctx, t.Bucket, e.Target, b, *e.item.Object)
			}
			buf.done()
			return err
		}
		// The reader checks the catalogue's SHA-256 at EOF, which the upload reaches before it
		// completes (an error or a mismatch there aborts it). Parts are read in order, each chunk
		// decoded straight into its part buffer (archive.PartReader), and sent up to
		// RestorePartStreams at once, the buffers beyond this worker's one taken from the shared
		// budget; part buffers come from the restore's pool and go back to it (kept within the bound
		// the memory limit counts, poolBytes); the frame buffer (one compressed chunk) is kept. An
		// object of up to PartStreams parts goes with one PUT from its part buffers, after taking
		// the budget slots they stand for at once (s3api.Budget.Reserve): one request, and no
		// reassembly of parts on the server (docs/R2.md "Benchmark").
		var r io.Reader = rc
		if pr, ok := rc.(archive.PartReader); ok {
			r = pr.Parts(&buf.b)
		}
		err := c.put(ctx, t.Bucket, e.Target, r, e.Size, *e.item.Object, budget)
		buf.b.TrimTo(frameKeep, keepBuffer)
		return err
	}
	// Every file operation goes through root, which refuses any path that leaves t.Dir (through
	// "..", an absolute path or a symbolic link); checkNoLinks refuses links inside it as well.
	rel := filepath.FromSlash(e.Target)
	if err := checkNoLinks(root, t.Dir, rel, e.Key); err != nil {
		return err
	}
	parent := filepath.Dir(rel)
	if parent != "." {
		if err := root.MkdirAll(parent, 0o755); err != nil {
			return fmt.Errorf("%w: %v", ErrBadKey, err)
		}
	}
	tmp, f, err := createTemp(root, parent)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, rc)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if !e.item.Object.LastModified.IsZero() {
			_ = root.Chtimes(tmp, e.item.Object.LastModified, e.item.Object.LastModified)
		}
		err = root.Rename(tmp, rel)
	}
	if err != nil {
		root.Remove(tmp)
	}
	return err
}

// createTemp creates a new file (0600, exclusively) named dirTempPrefix+random in dir under root.
func createTemp(root *os.Root, dir string) (string, *os.File, error) {
	for try := 0; ; try++ {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", nil, err
		}
		name := filepath.Join(dir, dirTempPrefix+hex.EncodeToString(b[:]))
		f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) && try < 10 {
			continue
		}
		return name, f, err
	}
}

// DirEntry is one line of a directory restore's DirIndexName file.
type DirEntry struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	manifest.ObjectMeta
}

func writeDirIndex(root *os.Root, p *Plan) error {
	name, f, err := createTemp(root, ".")
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	for _, e := range p.Entries {
		if e.Action == "skip" {
			continue
		}
		if err := enc.Encode(DirEntry{Path: e.Target, Size: e.Size, SHA256: e.item.SHA256, ObjectMeta: *e.item.Object}); err != nil {
			f.Close()
			root.Remove(name)
			return err
		}
	}
	if err := f.Close(); err != nil {
		root.Remove(name)
		return err
	}
	return root.Rename(name, DirIndexName)
}

// removeStaleTemps deletes the temporary files a killed directory restore left in the directories
// this one writes to (an interrupted one removes its own). Two restores into one directory at the
// same time are not supported. Directories reached through a symbolic link are not looked into.
func removeStaleTemps(root *os.Root, p *Plan) {
	targets := map[string]bool{}
	dirs := map[string]bool{".": true}
	for _, e := range p.Entries {
		rel := filepath.FromSlash(e.Target)
		if checkNoLinks(root, root.Name(), rel, e.Key) != nil {
			continue
		}
		targets[rel] = true
		dirs[filepath.Dir(rel)] = true
	}
	for d := range dirs {
		if fi, err := root.Lstat(d); err != nil || !fi.IsDir() {
			continue
		}
		f, err := root.Open(d)
		if err != nil {
			continue
		}
		ents, err := f.ReadDir(-1)
		f.Close()
		if err != nil {
			continue
		}
		for _, de := range ents {
			rel := filepath.Join(d, de.Name())
			if strings.HasPrefix(de.Name(), dirTempPrefix) && de.Type().IsRegular() && !targets[rel] {
				_ = root.Remove(rel)
			}
		}
	}
}
