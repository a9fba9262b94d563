package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// CopyOptions tune a copy to another repository.
type CopyOptions struct {
	// SkipVerify leaves out reading every segment back from the destination after the copy.
	SkipVerify bool
	// LockRetry keeps trying this long while the destination is locked by a prune (--retry-lock).
	LockRetry time.Duration
}

// CopyResult is what one snapshot's copy did.
type CopyResult struct {
	Snapshot       string `json:"snapshot"`
	AlreadyCopied  bool   `json:"already_copied"`
	Segments       int    `json:"segments"`
	SegmentsCopied int    `json:"segments_copied"`
	BytesCopied    int64  `json:"bytes_copied"`
	Objects        int    `json:"objects"`
	Verified       bool   `json:"verified"`
}

// CheckCopyTarget refuses a destination that could not hold this repository's snapshots: another
// format version, or other recipients (the data is copied as it is, still encrypted to this
// repository's recipients, so the destination must name the same ones).
func CheckCopyTarget(src, dst *repo.Repo) error {
	if dst.Config.Format != src.Config.Format {
		return fmt.Errorf("%w: destination %s has repository format %d, this one %d: copy only between repositories of the same format", ErrRefused, dst.Store.Location(), dst.Config.Format, src.Config.Format)
	}
	fp := func(r *repo.Repo) []string {
		var out []string
		for _, x := range r.Config.Recipients {
			out = append(out, x.Fingerprint)
		}
		sort.Strings(out)
		return out
	}
	a, b := fp(src), fp(dst)
	if strings.Join(a, ",") != strings.Join(b, ",") {
		return fmt.Errorf("%w: destination %s encrypts to other recipients (%s) than this repository (%s); create it with the same recipients: cfbackup init --repo DEST --recipients-file FILE",
			ErrRefused, dst.Store.Location(), strings.Join(b, ", "), strings.Join(a, ", "))
	}
	return nil
}

// Copy replicates one snapshot into dst: segments and side objects first (skipping those already
// there with the right size, so an interrupted copy resumes), each streamed and checked against its
// recorded SHA-256, then — unless SkipVerify — every segment read back from dst, and the manifest last
// with a conditional create. Running it again is a no-op. Nothing in the source is changed.
func (e *Engine) Copy(ctx context.Context, dst *repo.Repo, m *manifest.Manifest, o CopyOptions) (*CopyResult, error) {
	if err := CheckCopyTarget(e.Repo, dst); err != nil {
		return nil, err
	}
	if err := dst.RequireWritable("copying into it"); err != nil {
		return nil, err
	}
	if err := dst.RequireKey("copying into it"); err != nil {
		return nil, err
	}
	m, err := e.Repo.LoadManifest(ctx, m)
	if err != nil {
		return nil, err
	}
	res := &CopyResult{Snapshot: m.ID, Segments: len(m.Segments), Objects: len(m.SideObjects())}
	key := manifest.Key(m.Time, m.ID)
	if _, err := dst.Store.Stat(ctx, key); err == nil {
		res.AlreadyCopied = true
		return res, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("check destination: %w", err)
	}
	// A shared lock on the destination: a prune there must not sweep the segments this copy has
	// written before their manifest exists, and waits (or is refused) until the copy ends.
	dl, lctx, err := (&Engine{Repo: dst, Log: e.Log, Now: e.Now, Tool: e.Tool}).Lock(ctx, LockOptions{Kind: LockShared, Command: "copy", Retry: o.LockRetry})
	if err != nil {
		return nil, fmt.Errorf("lock the destination %s: %w", dst.Store.Location(), err)
	}
	defer func() {
		if err := dl.Release(context.WithoutCancel(ctx)); err != nil {
			e.log().Warn("could not remove the destination's lock (it expires by itself)", "err", err)
		}
	}()
	ctx = lctx
	var total int64
	for _, s := range m.Segments {
		total += s.Size
	}
	pr := e.progress()
	pr.Start("copy "+m.ID, total)
	defer pr.Finish()
	for _, s := range m.Segments {
		n, err := e.copyObject(ctx, dst, s.Key, s.Size, s.SHA256, pr)
		if err != nil {
			return res, err
		}
		if n > 0 {
			res.SegmentsCopied++
			res.BytesCopied += n
		}
	}
	for _, ob := range m.SideObjects() {
		n, err := e.copyObject(ctx, dst, ob.Key, ob.Size, ob.SHA256, nil)
		if err != nil {
			return res, err
		}
		res.BytesCopied += n
	}
	if !o.SkipVerify {
		for _, s := range m.Segments {
			if err := archive.VerifySegment(ctx, dst.Store, s); err != nil {
				return res, fmt.Errorf("%w: at the destination: %v", ErrIntegrity, err)
			}
		}
		res.Verified = true
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if err := dst.SaveManifest(ctx, m); err != nil {
		if errors.Is(err, store.ErrExists) {
			res.AlreadyCopied = true
			return res, nil
		}
		return res, err
	}
	return res, nil
}

// copyObject streams key from this repository into dst unless dst already has it with the same size;
// it returns the bytes copied. The stream is hashed on the way: a source object that does not match
// its recorded SHA-256 is not left at the destination.
func (e *Engine) copyObject(ctx context.Context, dst *repo.Repo, key string, size int64, sum string, pr Progress) (int64, error) {
	if fi, err := dst.Store.Stat(ctx, key); err == nil {
		if fi.Size == size {
			if pr != nil {
				pr.Add(int(size))
			}
			return 0, nil
		}
		return 0, fmt.Errorf("%w: destination already has %s with %d bytes, the snapshot records %d: remove it from the destination (it is not the same object) and copy again", ErrIntegrity, key, fi.Size, size)
	} else if !errors.Is(err, store.ErrNotFound) {
		return 0, fmt.Errorf("check destination %s: %w", key, err)
	}
	rc, err := e.Repo.Store.Open(ctx, key, 0, -1)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return 0, fmt.Errorf("%w: %s is missing from this repository: %v", ErrIntegrity, key, err)
		}
		return 0, err
	}
	defer rc.Close()
	h := sha256.New()
	var r io.Reader = io.TeeReader(rc, h)
	if pr != nil {
		r = progressReader{io.NopCloser(r), pr, nil}
	}
	cr := &countReader{r: r}
	if err := dst.Store.Put(ctx, key, cr, store.PutOptions{IfNotExists: true}); err != nil {
		if errors.Is(err, store.ErrExists) {
			return 0, nil // a concurrent copy stored it
		}
		return 0, fmt.Errorf("copy %s: %w", key, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); cr.n != size || got != sum {
		_ = dst.Store.Delete(ctx, key)
		return 0, fmt.Errorf("%w: %s in this repository does not match its recorded size and SHA-256 (read %d bytes): run 'cfbackup verify'", ErrIntegrity, key, cr.n)
	}
	return cr.n, nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// InitReplica makes st a replica of this repository when it holds no repository yet: config.json and
// the encrypted writer secret are copied as they are (same id, recipients and writer secret, so
// incremental indexes stay usable there). It returns the opened destination either way.
func (e *Engine) InitReplica(ctx context.Context, st store.Store) (dst *repo.Repo, created bool, err error) {
	dst, err = repo.Open(ctx, st)
	if err == nil {
		// A replica this repository initialised shares its writer secret; one made by its own init
		// stays unauthenticated here and the caller authenticates it with that repository's key.
		_ = dst.UseKeyOf(e.Repo)
		return dst, false, nil
	}
	if !errors.Is(err, repo.ErrNotRepo) {
		return nil, false, err
	}
	if _, serr := st.Stat(ctx, repo.ConfigKey); serr == nil {
		return nil, false, err // something unreadable is there: do not touch it
	}
	for _, key := range []string{repo.WriterKeyKey, repo.ConfigKey} { // config.json last: it makes the repository
		rc, oerr := e.Repo.Store.Open(ctx, key, 0, -1)
		if oerr != nil {
			if errors.Is(oerr, store.ErrNotFound) && key == repo.WriterKeyKey {
				continue
			}
			return nil, false, oerr
		}
		perr := st.Put(ctx, key, rc, store.PutOptions{IfNotExists: true})
		rc.Close()
		if perr != nil && !errors.Is(perr, store.ErrExists) {
			return nil, false, fmt.Errorf("initialise replica at %s: %w", st.Location(), perr)
		}
	}
	if dst, err = repo.Open(ctx, st); err != nil {
		return nil, false, err
	}
	if err := dst.UseKeyOf(e.Repo); err != nil {
		return nil, false, err
	}
	return dst, true, nil
}
