// Package local is the default store: a repository in a plain directory, so a backup needs no cloud
// account and the files can be copied, inspected and restored with ordinary tools.
//
// Every object is written to a ".tmp-*" file in its final directory, fsynced, and only then made
// visible with os.Link (conditional create: the kernel refuses an existing name atomically) or
// os.Rename, followed by an fsync of the directory. A crash or error therefore never leaves a
// half-written object under its real key; stray temp files are invisible to List.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/cfbackup/cfbackup/pkg/store"
)

// Store keeps objects as files under a root directory; keys map to slash-separated relative paths.
type Store struct {
	root string
}

var (
	_ store.Store         = (*Store)(nil)
	_ store.TempCollector = (*Store)(nil)
)

// New opens (creating if needed) the repository directory dir.
func New(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("local store: empty directory path")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("local store %q: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("local store: %w", err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("local store: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("local store: %s is not a directory", abs)
	}
	return &Store{root: abs}, nil
}

// Location returns the absolute directory path.
func (s *Store) Location() string { return s.root }

func (s *Store) path(key string) string { return filepath.Join(s.root, filepath.FromSlash(key)) }

// Put streams r into a temp file next to the object and publishes it atomically.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts store.PutOptions) (err error) {
	if err := store.ValidateKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	dst := s.path(key)
	dir := filepath.Dir(dst)
	if err := s.mkdirAll(dir); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if opts.IfNotExists {
		// Cheap early answer; the link below is what makes it atomic.
		if _, err := os.Lstat(dst); err == nil {
			return fmt.Errorf("put %s: %w", key, store.ErrExists)
		}
	}
	f, err := os.CreateTemp(dir, store.TempPrefix+"*")
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	tmp := f.Name()
	defer func() {
		if f != nil {
			_ = f.Close()
		}
		_ = os.Remove(tmp) // after link or on failure; after rename it is already gone
	}()
	if _, err := io.Copy(f, store.ContextReader(ctx, r)); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := f.Close(); err != nil {
		f = nil
		return fmt.Errorf("put %s: %w", key, err)
	}
	f = nil
	if err := ctx.Err(); err != nil {
		return err
	}
	if opts.IfNotExists {
		if err := os.Link(tmp, dst); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("put %s: %w", key, store.ErrExists)
			}
			return fmt.Errorf("put %s: %w", key, err)
		}
	} else if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("put %s: sync dir: %w", key, err)
	}
	return nil
}

// mkdirAll creates the missing directories between the root and dir, fsyncing each parent so a
// new directory entry survives a crash together with the object published inside it.
func (s *Store) mkdirAll(dir string) error {
	rel, err := filepath.Rel(s.root, dir)
	if err != nil {
		return err
	}
	if rel == "." {
		return nil
	}
	cur := s.root
	for _, el := range strings.Split(rel, string(filepath.Separator)) {
		next := filepath.Join(cur, el)
		err := os.Mkdir(next, 0o755)
		switch {
		case err == nil:
			if err := syncDir(cur); err != nil {
				return err
			}
		case errors.Is(err, fs.ErrExist):
			// made earlier or concurrently; a file in the way fails at CreateTemp
		default:
			return err
		}
		cur = next
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

type limitedFile struct {
	io.Reader
	f *os.File
}

func (l *limitedFile) Close() error { return l.f.Close() }

// Open returns a reader of bytes [offset, offset+length); length < 0 reads to the end.
func (s *Store) Open(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := store.ValidateKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("open %s: negative offset %d", key, offset)
	}
	f, err := os.Open(s.path(key))
	if err != nil {
		return nil, mapErr("open", key, err)
	}
	if st, err := f.Stat(); err != nil || st.IsDir() {
		f.Close()
		return nil, fmt.Errorf("open %s: %w", key, store.ErrNotFound)
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("open %s: %w", key, err)
	}
	var r io.Reader = f
	if length >= 0 {
		r = io.LimitReader(f, length)
	}
	return &limitedFile{Reader: r, f: f}, nil
}

// Stat reports the object's size and modification time.
func (s *Store) Stat(ctx context.Context, key string) (store.ObjectInfo, error) {
	if err := store.ValidateKey(key); err != nil {
		return store.ObjectInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return store.ObjectInfo{}, err
	}
	st, err := os.Stat(s.path(key))
	if err != nil {
		return store.ObjectInfo{}, mapErr("stat", key, err)
	}
	if st.IsDir() {
		return store.ObjectInfo{}, fmt.Errorf("stat %s: %w", key, store.ErrNotFound)
	}
	return store.ObjectInfo{Key: key, Size: st.Size(), ModTime: st.ModTime()}, nil
}

// Delete removes the object; empty parent directories are left in place (harmless, and racing a
// concurrent Put into the same directory would be worse).
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := store.ValidateKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p := s.path(key)
	if st, err := os.Stat(p); err != nil {
		return mapErr("delete", key, err)
	} else if st.IsDir() {
		return fmt.Errorf("delete %s: %w", key, store.ErrNotFound)
	}
	if err := os.Remove(p); err != nil {
		return mapErr("delete", key, err)
	}
	return nil
}

// List walks the directory tree in lexical key order. Directory entries are sorted as if a
// directory name ended in "/", which makes the depth-first walk produce keys in exactly the byte
// order S3 uses, one directory in memory at a time.
func (s *Store) List(ctx context.Context, prefix string, fn func(store.ObjectInfo) error) error {
	if err := store.ValidatePrefix(prefix); err != nil {
		return err
	}
	// Start at the deepest directory the prefix names completely.
	base := ""
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		base = prefix[:i]
	}
	err := s.walk(ctx, base, prefix, fn)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

type entry struct {
	name  string
	sort  string
	isDir bool
}

func (s *Store) walk(ctx context.Context, dirKey, prefix string, fn func(store.ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dirPath := s.root
	if dirKey != "" {
		dirPath = s.path(dirKey)
	}
	des, err := os.ReadDir(dirPath)
	if err != nil {
		if dirKey != "" && errors.Is(err, fs.ErrNotExist) {
			return nil // removed concurrently, or the prefix names no directory
		}
		return fmt.Errorf("list %s: %w", prefix, err)
	}
	ents := make([]entry, 0, len(des))
	for _, de := range des {
		name := de.Name()
		if strings.HasPrefix(name, store.TempPrefix) {
			continue
		}
		isDir := de.IsDir()
		if de.Type()&fs.ModeSymlink != 0 {
			if st, err := os.Stat(filepath.Join(dirPath, name)); err == nil {
				isDir = st.IsDir()
			}
		}
		e := entry{name: name, sort: name, isDir: isDir}
		if isDir {
			e.sort = name + "/"
		}
		ents = append(ents, e)
	}
	slices.SortFunc(ents, func(a, b entry) int { return strings.Compare(a.sort, b.sort) })
	for _, e := range ents {
		key := e.name
		if dirKey != "" {
			key = path.Join(dirKey, e.name)
		}
		if e.isDir {
			k := key + "/"
			// Descend only when the subtree can hold matches.
			if strings.HasPrefix(k, prefix) || strings.HasPrefix(prefix, k) {
				if err := s.walk(ctx, key, prefix, fn); err != nil {
					return err
				}
			}
			continue
		}
		if !strings.HasPrefix(key, prefix) {
			continue
		}
		info, err := os.Stat(filepath.Join(dirPath, e.name))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted while listing
			}
			return fmt.Errorf("list %s: %w", prefix, err)
		}
		if !info.Mode().IsRegular() {
			continue
		}
		if err := fn(store.ObjectInfo{Key: key, Size: info.Size(), ModTime: info.ModTime()}); err != nil {
			return err
		}
	}
	return nil
}

func mapErr(op, key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s %s: %w", op, key, store.ErrNotFound)
	}
	if errors.Is(err, syscall.ENOTDIR) { // a path element is a file: the key cannot exist
		return fmt.Errorf("%s %s: %w", op, key, store.ErrNotFound)
	}
	return fmt.Errorf("%s %s: %w", op, key, err)
}

// ListTemp reports every ".tmp-*" file under the root: the leftovers of writes killed before they
// published their object (a clean failure removes its own).
func (s *Store) ListTemp(ctx context.Context, fn func(store.TempFile) error) error {
	return filepath.WalkDir(s.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() || !strings.HasPrefix(d.Name(), store.TempPrefix) || !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		rel, err := filepath.Rel(s.root, p)
		if err != nil {
			return err
		}
		return fn(store.TempFile{Name: filepath.ToSlash(rel), Size: info.Size(), ModTime: info.ModTime()})
	})
}

// RemoveTemp removes a temporary file that ListTemp named.
func (s *Store) RemoveTemp(ctx context.Context, name string) error {
	if err := store.ValidateTempName(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p := filepath.Join(s.root, filepath.FromSlash(name))
	if st, err := os.Lstat(p); err == nil && !st.Mode().IsRegular() {
		return fmt.Errorf("remove temp %s: not a regular file", name)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove temp %s: %w", name, err)
	}
	return nil
}
