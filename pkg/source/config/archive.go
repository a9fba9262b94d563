package config

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/manifest"
)

// Item kinds in the catalogue.
const (
	KindInventory = "inventory"
	KindScript    = "script"
)

// maxDocSize bounds how much of one item Load reads: configuration documents are kilobytes.
const maxDocSize = 64 << 20

// ItemWriter is the part of archive.Writer a capture needs.
type ItemWriter interface {
	WriteItem(name string, r io.Reader) (archive.ItemRef, error)
}

// Opener reads one item back from a snapshot, checking its SHA-256 at EOF (engine.Opener).
type Opener func(ctx context.Context, ref archive.ItemRef) (io.ReadCloser, error)

// ItemName is the archive name of a document: config/inventory.json or config/scripts/<name>.json.
func ItemName(kind, script string) string {
	if kind == KindInventory {
		return "config/inventory.json"
	}
	return "config/scripts/" + FileName(script)
}

// FileName is a script's document file name: the script name with anything outside [A-Za-z0-9._-]
// %-escaped (Workers names are already in that set), plus ".json".
func FileName(script string) string {
	var b strings.Builder
	for i := 0; i < len(script); i++ {
		c := script[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || (c == '.' && i > 0) {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String() + ".json"
}

// Backup writes the state into the snapshot: the inventory first, then one item per script. The
// source's plaintext summary names only the account (script names are inside the catalogue).
func Backup(ctx context.Context, w ItemWriter, st *State) (manifest.Source, []manifest.Item, error) {
	src := manifest.Source{Component: Component, ID: st.AccountID, Name: st.AccountID}
	var items []manifest.Item
	add := func(kind, script string, doc Doc) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		b, err := Encode(doc)
		if err != nil {
			return err
		}
		ref, err := w.WriteItem(ItemName(kind, script), bytes.NewReader(b))
		if err != nil {
			return fmt.Errorf("store configuration document %s: %w", ItemName(kind, script), err)
		}
		items = append(items, manifest.Item{Component: Component, Source: src.ID, Kind: kind, Table: script, ItemRef: ref})
		src.Items++
		src.Size += ref.Size
		return nil
	}
	if err := add(KindInventory, "", st.Inventory); err != nil {
		return src, nil, err
	}
	for _, n := range st.ScriptNames() {
		if err := add(KindScript, n, st.Scripts[n]); err != nil {
			return src, nil, err
		}
	}
	return src, items, nil
}

// Load reads a snapshot's configuration documents back (only the given scripts, when any are named).
// Every item is checked against its SHA-256.
func Load(ctx context.Context, open Opener, cat *manifest.Catalogue, src manifest.Source, scripts []string) (*State, error) {
	st := &State{AccountID: src.ID, Scripts: map[string]Doc{}}
	want := map[string]bool{}
	for _, s := range scripts {
		want[s] = true
	}
	var have []string
	mine, err := accountItems(cat, src) // held before any is read
	if err != nil {
		return nil, err
	}
	for _, it := range mine {
		if it.Kind == KindScript {
			have = append(have, it.Table)
			if len(want) > 0 && !want[it.Table] {
				continue
			}
		}
		doc, err := readDoc(ctx, open, it.ItemRef)
		if err != nil {
			return nil, err
		}
		switch it.Kind {
		case KindInventory:
			st.Inventory = doc
		case KindScript:
			st.Scripts[it.Table] = doc
		}
	}
	sort.Strings(have)
	for s := range want {
		if st.Scripts[s] == nil {
			return nil, fmt.Errorf("%w: %q is not in the snapshot (it has: %s)", ErrNoScript, s, strings.Join(have, ", "))
		}
	}
	if st.Inventory == nil {
		return nil, fmt.Errorf("%w: the snapshot's configuration has no inventory item", archive.ErrIntegrity)
	}
	return st, nil
}

func readDoc(ctx context.Context, open Opener, ref archive.ItemRef) (Doc, error) {
	rc, err := open(ctx, ref)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxDocSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxDocSize {
		return nil, fmt.Errorf("%w: configuration document %s is larger than %d bytes", archive.ErrIntegrity, ref.Name, maxDocSize)
	}
	doc, err := decodeObject(b)
	if err != nil {
		return nil, fmt.Errorf("%w: configuration document %s: %v", archive.ErrIntegrity, ref.Name, err)
	}
	return doc, nil
}

// ErrExists: a file restore would write is already there (and overwriting was not asked for).
var ErrExists = errclass.New(errclass.Refused, "file already exists")

// WriteDir writes the state as files under dir: inventory.json and scripts/<name>.json, each in
// Encode's stable format, each written to a temporary file and renamed into place. It refuses, before
// writing anything, when a target file exists unless overwrite is set. On failure it removes the files
// it wrote. It returns the paths written. Files are created 0600 (they hold account data) and only
// inside dir.
func WriteDir(dir string, st *State, overwrite bool) ([]string, error) {
	type file struct {
		path string
		doc  Doc
	}
	files := []file{{filepath.Join(dir, "inventory.json"), st.Inventory}}
	for _, n := range st.ScriptNames() {
		files = append(files, file{filepath.Join(dir, "scripts", FileName(n)), st.Scripts[n]})
	}
	if !overwrite {
		for _, f := range files {
			if _, err := os.Lstat(f.path); err == nil {
				return nil, fmt.Errorf("%w: %s (choose an empty --to-dir, or add --yes to overwrite)", ErrExists, f.path)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// Files are written through os.Root, so no path (nor a symbolic link already in dir, such as
	// dir/scripts -> elsewhere) leads outside dir; they are created 0600: they hold account data.
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	if err := root.MkdirAll("scripts", 0o755); err != nil {
		return nil, err
	}
	var written []string
	undo := func(err error) ([]string, error) {
		for _, p := range written {
			_ = os.Remove(p)
		}
		return nil, err
	}
	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix)
	for _, f := range files {
		b, err := Encode(f.doc)
		if err != nil {
			return undo(err)
		}
		rel, err := filepath.Rel(dir, f.path)
		if err != nil {
			return undo(err)
		}
		tmp := rel + ".tmp-" + hex.EncodeToString(suffix)
		if err := writeNew(root, tmp, b); err != nil {
			_ = root.Remove(tmp)
			return undo(err)
		}
		if err := root.Rename(tmp, rel); err != nil {
			_ = root.Remove(tmp)
			return undo(err)
		}
		written = append(written, f.path)
	}
	return written, nil
}

// writeNew creates name under root (0600, failing if it exists) and writes b into it.
func writeNew(root *os.Root, name string, b []byte) error {
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
