package r2

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// listSpool is a bucket's listing written to a temporary file as it arrives, so a backup of millions
// of objects holds one window of it (backupWindow) instead of all of it. The first pass also finds
// the keys that are a folder of another key ("a" beside "a/b"), which EncodePaths gives the suffix
// "%~": in a sorted listing the keys under "a/" follow "a" (after keys like "a-1"), so a stack of the
// keys that prefix the current one finds them with memory bounded by the key length, not the bucket.
type listSpool struct {
	f      *os.File
	n      int64
	sorted bool
	dirs   map[string]bool // keys that are also folders of other keys
}

// spoolListing lists the bucket (limited to keys when set) into a listSpool.
func spoolListing(ctx context.Context, c *Client, o BackupOptions, keep func(key string) bool) (*listSpool, error) {
	f, err := os.CreateTemp("", "cfbackup-r2-listing-*")
	if err != nil {
		return nil, err
	}
	ls := &listSpool{f: f, sorted: true, dirs: map[string]bool{}}
	want := map[string]bool{}
	for _, k := range o.Keys {
		want[k] = true
	}
	bw := bufio.NewWriterSize(f, 256<<10)
	ff := folderFinder{dirs: ls.dirs}
	last, first := "", true
	var buf []byte
	err = c.List(ctx, o.Bucket, o.Prefix, func(ob Object) error {
		if len(want) > 0 && !want[ob.Key] {
			return nil
		}
		if !first && ob.Key <= last {
			ls.sorted = false
		}
		first, last = false, ob.Key
		ff.see(ob.Key)
		if keep != nil && !keep(ob.Key) {
			// Another shard's key (docs/SHARDING.md): seen for the folder rule over the whole
			// listing, so item names equal a single-process backup's, but not backed up here.
			return nil
		}
		buf = appendObject(buf[:0], ob)
		_, err := bw.Write(buf)
		ls.n++
		return err
	})
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		ls.remove()
		return nil, err
	}
	if !ls.sorted {
		// Unsorted listings (not S3's contract) get the collision rule from EncodePaths over all keys.
		if err := ls.allDirs(); err != nil {
			ls.remove()
			return nil, err
		}
	}
	return ls, nil
}

// folderFinder sees a sorted listing's keys in order and records in dirs each key that is a folder
// of a later one. stack holds the keys that prefix the last key seen, shortest first: every key
// between "a" and "a/b" in key order starts with "a", so "a" is still there when "a/b" comes.
type folderFinder struct {
	stack []string
	dirs  map[string]bool
}

func (f *folderFinder) see(key string) {
	for len(f.stack) > 0 && !strings.HasPrefix(key, f.stack[len(f.stack)-1]) {
		f.stack = f.stack[:len(f.stack)-1]
	}
	for _, s := range f.stack {
		if strings.HasPrefix(key, s+"/") {
			f.dirs[s] = true
		}
	}
	f.stack = append(f.stack, key)
}

// allDirs finds the folder keys of an unsorted listing the slow way: every key's folders in a set.
func (ls *listSpool) allDirs() error {
	folders := map[string]bool{}
	keys := map[string]bool{}
	if err := ls.each(func(ob Object) error {
		keys[ob.Key] = true
		for i := strings.LastIndexByte(ob.Key, '/'); i > 0; i = strings.LastIndexByte(ob.Key[:i], '/') {
			folders[ob.Key[:i]] = true
		}
		return nil
	}); err != nil {
		return err
	}
	for k := range keys {
		if folders[k] {
			ls.dirs[k] = true
		}
	}
	return nil
}

// path is the encoded path of a listed key (EncodePaths' result for it, without the whole listing).
func (ls *listSpool) path(key string) string {
	p := encodeKey(key)
	if ls.dirs[key] {
		p += "%~"
	}
	return p
}

// each reads the listing back in order.
func (ls *listSpool) each(fn func(Object) error) error {
	if _, err := ls.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	br := bufio.NewReaderSize(ls.f, 256<<10)
	for i := int64(0); i < ls.n; i++ {
		ob, err := readObject(br)
		if err != nil {
			return fmt.Errorf("read the listing back: %w", err)
		}
		if err := fn(ob); err != nil {
			return err
		}
	}
	return nil
}

func (ls *listSpool) remove() {
	if ls != nil && ls.f != nil {
		ls.f.Close()
		os.Remove(ls.f.Name())
		ls.f = nil
	}
}

func appendObject(b []byte, ob Object) []byte {
	b = binary.AppendUvarint(b, uint64(len(ob.Key)))
	b = append(b, ob.Key...)
	b = binary.AppendVarint(b, ob.Size)
	b = binary.AppendUvarint(b, uint64(len(ob.ETag)))
	b = append(b, ob.ETag...)
	var ns int64
	if !ob.LastModified.IsZero() {
		ns = ob.LastModified.UnixNano()
	}
	return binary.AppendVarint(b, ns)
}

func readObject(br *bufio.Reader) (Object, error) {
	str := func() (string, error) {
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return "", err
		}
		if n > 1<<20 {
			return "", errors.New("listing spool: string too long")
		}
		b := make([]byte, n)
		_, err = io.ReadFull(br, b)
		return string(b), err
	}
	var ob Object
	var err error
	if ob.Key, err = str(); err != nil {
		return ob, err
	}
	if ob.Size, err = binary.ReadVarint(br); err != nil {
		return ob, err
	}
	if ob.ETag, err = str(); err != nil {
		return ob, err
	}
	ns, err := binary.ReadVarint(br)
	if err != nil {
		return ob, err
	}
	if ns != 0 {
		ob.LastModified = time.Unix(0, ns).UTC()
	}
	return ob, nil
}
