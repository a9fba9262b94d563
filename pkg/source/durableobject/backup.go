package durableobject

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/manifest"
)

// ItemWriter is the part of archive.Writer a source needs.
type ItemWriter interface {
	WriteItem(name string, r io.Reader) (archive.ItemRef, error)
}

// BackupOptions tune one namespace's backup.
type BackupOptions struct {
	// Concurrency is how many objects are fetched at once (default 4). Memory is bounded by about
	// 2 × Concurrency × the client's PageBytes.
	Concurrency int
	Log         *slog.Logger
	// Progress, if set, is called with the byte count of every page fetched.
	Progress func(n int)
	// OnUnrestorable, if set, is called for every object whose export names values the platform
	// would refuse on restore (End.Unrestorable, End.Warnings).
	OnUnrestorable func(id string, end End)
}

// ItemName is the archive item of one object: do/<namespace id>/<object id>.ndjson.
func ItemName(namespaceID, objectID string) string {
	return "do/" + namespaceID + "/" + objectID + ".ndjson"
}

// ListStoredObjects returns the IDs of a namespace's objects that hold data, in listing order.
func ListStoredObjects(ctx context.Context, api ObjectLister, ns cloudflare.Namespace) (ids []string, skipped int, err error) {
	err = api.ListObjects(ctx, ns.ID, 10000, func(objs []cloudflare.DurableObject) error {
		for _, o := range objs {
			if o.HasStoredData {
				ids = append(ids, o.ID)
			} else {
				skipped++
			}
		}
		return nil
	})
	return ids, skipped, err
}

type fetched struct {
	id    string
	first Page
	err   error
}

// Backup exports the given objects of ns through the Worker module into w, one item per object. Up
// to Concurrency objects are fetched at once; items are written one at a time (archive.Writer is
// sequential). An object whose export spans several pages is streamed page by page.
func Backup(ctx context.Context, c *Client, w ItemWriter, ns cloudflare.Namespace, ids []string, o BackupOptions) (manifest.Source, []manifest.Item, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	conc := o.Concurrency
	if conc <= 0 {
		conc = 4
	}
	progress := o.Progress
	if progress == nil {
		progress = func(int) {}
	}
	src := manifest.Source{Component: Component, ID: ns.ID, Name: ns.Name, Class: ns.Class}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	idc := make(chan []string)
	res := make(chan fetched, conc)
	go feedIDs(ctx, c, ids, idc)
	var wg sync.WaitGroup
	for i := 0; i < conc; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for group := range idc {
				for _, f := range c.firstPages(ctx, ns.Class, group) {
					select {
					case res <- f:
					case <-ctx.Done():
						return
					}
				}
			}
		}()
	}
	go func() { wg.Wait(); close(res) }()
	fail := func(err error) (manifest.Source, []manifest.Item, error) {
		cancel()
		for range res {
		}
		return manifest.Source{}, nil, err
	}
	var items []manifest.Item
	for f := range res {
		if f.err != nil {
			return fail(fmt.Errorf("back up Durable Object %s/%s: %w", ns.Name, f.id, f.err))
		}
		progress(len(f.first.Data))
		var r io.Reader = bytes.NewReader(f.first.Data)
		var pr *pagesReader
		if f.first.End == nil {
			pr = &pagesReader{ctx: ctx, c: c, class: ns.Class, id: f.id, next: f.first.Next, onPage: progress}
			r = io.MultiReader(r, pr)
		}
		ref, err := w.WriteItem(ItemName(ns.ID, f.id), r)
		if err != nil {
			return fail(fmt.Errorf("back up Durable Object %s/%s: %w", ns.Name, f.id, err))
		}
		end := f.first.End
		if pr != nil {
			end = pr.end
		}
		if end == nil {
			return fail(fmt.Errorf("back up Durable Object %s/%s: %w: export ended without its end line", ns.Name, f.id, ErrFormat))
		}
		o.Log.Debug("backed up Durable Object", "namespace", ns.Name, "id", f.id, "bytes", ref.Size, "kv", end.KV, "rows", end.Rows)
		if end.FKCycle && ref.Size > DefaultChunkBytes {
			end.Unrestorable++
			end.Warnings = append(end.Warnings, fmt.Sprintf("foreign keys in a cycle or to their own table, and the export (%d bytes) is larger than one import chunk (%d bytes): a restore checks foreign keys per chunk and may refuse rows whose parents come in a later chunk", ref.Size, DefaultChunkBytes))
		}
		if end.Unrestorable > 0 {
			// Announced now, not discovered during an outage: the platform would refuse these values
			// on restore (the export's end line, stored in the item, names them too).
			o.Log.Warn("Durable Object holds values that cannot be restored as they are", "namespace", ns.Name, "id", f.id, "count", end.Unrestorable, "values", strings.Join(end.Warnings, "; "))
			if o.OnUnrestorable != nil {
				o.OnUnrestorable(f.id, *end)
			}
		}
		items = append(items, manifest.Item{Component: Component, Source: ns.ID, Kind: "object", ObjectID: f.id, ObjectName: f.first.name(), Rows: end.KV + end.Rows, ItemRef: ref})
		src.Items++
		src.Size += ref.Size
	}
	if err := ctx.Err(); err != nil {
		return manifest.Source{}, nil, err
	}
	if len(items) != len(ids) {
		return manifest.Source{}, nil, fmt.Errorf("back up Durable Object namespace %s: %d of %d objects captured", ns.Name, len(items), len(ids))
	}
	return src, items, nil
}

// feedIDs sends the IDs to idc in groups of one batch (one when batches are off), then closes it.
func feedIDs(ctx context.Context, c *Client, ids []string, idc chan<- []string) {
	defer close(idc)
	per := 1
	if c.batchEnabled() {
		per = c.batchItems()
	}
	for len(ids) > 0 {
		n := min(per, len(ids))
		select {
		case idc <- ids[:n]:
			ids = ids[n:]
		case <-ctx.Done():
			return
		}
	}
}
