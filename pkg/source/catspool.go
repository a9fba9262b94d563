package source

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"os"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// CatalogueSpool is one writer's part of a streamed catalogue, sealed as it is written into a
// temporary file: items leave memory once their record (manifest.RecordItems) is full, and the
// engine stores the file as catalogue objects before the manifest (Store). The spool cuts an object
// at manifest.ObjectItems items or manifest.ObjectBytes bytes, and where a run of keyed items of one
// source (R2 objects of one bucket) begins or ends; an object whose items came in key order gets a
// fence (its first and last key, sealed), so a restore of one key reads one object.
type CatalogueSpool struct {
	recipients []age.Recipient
	f          *os.File
	bw         *bufio.Writer
	off        int64 // bytes written to f
	parts      []spoolPart
	cur        spoolPart // the object being written (start, hash, size)
	h          hash.Hash
	group      itemGroup // the current object's first item's
	items      int64     // in finished objects
	w          *manifest.CatalogueWriter
	end        bool
}

// spoolPart is one catalogue object inside the spool file.
type spoolPart struct {
	start, size, items int64
	sha256, fence      string
}

// itemGroup is what an object's items must share for the object to be fenced.
type itemGroup struct {
	component, source string
	keyed             bool
}

func groupOf(it *manifest.Item) itemGroup {
	_, keyed := it.SortKey()
	return itemGroup{it.Component, it.Source, keyed}
}

// NewCatalogueSpool starts a spool encrypted to the recipients.
func NewCatalogueSpool(recipients []age.Recipient) (*CatalogueSpool, error) {
	if len(recipients) == 0 {
		return nil, errors.New("catalogue: no recipients to encrypt it to")
	}
	f, err := os.CreateTemp("", "cfbackup-catalogue-*")
	if err != nil {
		return nil, err
	}
	sp := &CatalogueSpool{recipients: recipients, f: f, bw: bufio.NewWriterSize(f, 256<<10)}
	if err := sp.start(); err != nil {
		sp.Remove()
		return nil, err
	}
	return sp, nil
}

// start begins the next catalogue object at the end of the file.
func (sp *CatalogueSpool) start() error {
	sp.cur = spoolPart{start: sp.off}
	sp.h = sha256.New()
	var err error
	sp.w, err = manifest.NewCatalogueWriter(sp, sp.recipients)
	return err
}

// Write is where the age stream lands: hashed and counted on the way to the file.
func (sp *CatalogueSpool) Write(p []byte) (int, error) {
	n, err := sp.bw.Write(p)
	sp.h.Write(p[:n])
	sp.off += int64(n)
	return n, err
}

// Add appends items, cutting objects where the spool's rules say.
func (sp *CatalogueSpool) Add(items ...manifest.Item) error {
	for len(items) > 0 {
		n := sp.fits(items)
		if n == 0 {
			if err := sp.cut(true); err != nil {
				return err
			}
			continue
		}
		if err := sp.w.Add(items[:n]...); err != nil {
			return err
		}
		items = items[n:]
	}
	return nil
}

// fits is how many of items go into the current object before it must be cut (at least one when
// it is empty).
func (sp *CatalogueSpool) fits(items []manifest.Item) int {
	have := sp.w.Items()
	if have > 0 && sp.off-sp.cur.start >= manifest.ObjectBytes {
		return 0
	}
	for i := range items {
		g := groupOf(&items[i])
		switch {
		case have == 0:
			sp.group = g
		case have >= manifest.ObjectItems, g != sp.group && (g.keyed || sp.group.keyed):
			return i
		}
		have++
	}
	return len(items)
}

// cut ends the current object (the age stream's last chunk) and, with next, starts another.
func (sp *CatalogueSpool) cut(next bool) error {
	if err := sp.w.Close(); err != nil {
		return err
	}
	p := sp.cur
	p.size, p.items, p.sha256 = sp.off-p.start, sp.w.Items(), hex.EncodeToString(sp.h.Sum(nil))
	if f, ok := sp.w.Fence(); ok {
		sealed, err := manifest.SealFence(f, sp.recipients)
		if err != nil {
			return err
		}
		p.fence = sealed
	}
	sp.parts = append(sp.parts, p)
	sp.items += p.items
	if !next {
		return nil
	}
	return sp.start()
}

// Items is the number of items added.
func (sp *CatalogueSpool) Items() int64 {
	if sp.end {
		return sp.items
	}
	return sp.items + sp.w.Items()
}

// Store finishes the spool and stores its objects, with conditional creates, under the keys key(0),
// key(1), …, returning what the manifest records of them in order.
func (sp *CatalogueSpool) Store(ctx context.Context, st store.Store, key func(i int) string) ([]manifest.CatalogueObject, error) {
	if !sp.end {
		sp.end = true
		if sp.w.Items() > 0 {
			if err := sp.cut(false); err != nil {
				return nil, err
			}
		}
		if err := sp.bw.Flush(); err != nil {
			return nil, err
		}
	}
	out := make([]manifest.CatalogueObject, 0, len(sp.parts))
	for i, p := range sp.parts {
		k := key(i)
		if err := st.Put(ctx, k, io.NewSectionReader(sp.f, p.start, p.size), store.PutOptions{IfNotExists: true}); err != nil {
			return nil, err
		}
		out = append(out, manifest.CatalogueObject{Key: k, Items: p.items, Size: p.size, SHA256: p.sha256, Fence: p.fence})
	}
	return out, nil
}

// Remove deletes the temporary file.
func (sp *CatalogueSpool) Remove() {
	if sp.f != nil {
		sp.f.Close()
		os.Remove(sp.f.Name())
		sp.f = nil
	}
}
