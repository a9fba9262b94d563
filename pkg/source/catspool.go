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
// engine stores the file as one catalogue object before the manifest (Store).
type CatalogueSpool struct {
	f   *os.File
	bw  *bufio.Writer
	h   hash.Hash
	n   int64
	w   *manifest.CatalogueWriter
	end bool
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
	sp := &CatalogueSpool{f: f, bw: bufio.NewWriterSize(f, 256<<10), h: sha256.New()}
	sp.w, err = manifest.NewCatalogueWriter(sp, recipients)
	if err != nil {
		sp.Remove()
		return nil, err
	}
	return sp, nil
}

// Write is where the age stream lands: hashed and counted on the way to the file.
func (sp *CatalogueSpool) Write(p []byte) (int, error) {
	n, err := sp.bw.Write(p)
	sp.h.Write(p[:n])
	sp.n += int64(n)
	return n, err
}

// Add appends items.
func (sp *CatalogueSpool) Add(items ...manifest.Item) error { return sp.w.Add(items...) }

// Items is the number of items added.
func (sp *CatalogueSpool) Items() int64 { return sp.w.Items() }

// Store finishes the spool and stores it under key with a conditional create, returning what the
// manifest records of it.
func (sp *CatalogueSpool) Store(ctx context.Context, st store.Store, key string) (manifest.CatalogueObject, error) {
	if !sp.end {
		sp.end = true
		if err := sp.w.Close(); err != nil {
			return manifest.CatalogueObject{}, err
		}
		if err := sp.bw.Flush(); err != nil {
			return manifest.CatalogueObject{}, err
		}
	}
	if _, err := sp.f.Seek(0, io.SeekStart); err != nil {
		return manifest.CatalogueObject{}, err
	}
	if err := st.Put(ctx, key, sp.f, store.PutOptions{IfNotExists: true}); err != nil {
		return manifest.CatalogueObject{}, err
	}
	return manifest.CatalogueObject{Key: key, Items: sp.w.Items(), Size: sp.n, SHA256: hex.EncodeToString(sp.h.Sum(nil))}, nil
}

// Remove deletes the temporary file.
func (sp *CatalogueSpool) Remove() {
	if sp.f != nil {
		sp.f.Close()
		os.Remove(sp.f.Name())
		sp.f = nil
	}
}
