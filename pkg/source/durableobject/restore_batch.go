package durableobject

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/cfbackup/cfbackup/pkg/manifest"
)

// BatchItemBytes is the largest item a restore sends in a batch: an object whose export is at most
// this size is imported in one request carried with others (see batch.go); a larger one alone.
const BatchItemBytes = 256 << 10

// outcome is one object's result within a group.
type outcome struct {
	it  manifest.Item
	res ObjectResult
	err error
}

// feedGroups sends the items to work in groups: small items (BatchItemBytes at most) together, up
// to the client's batch size and one chunk's bytes; any other item alone. It returns how many items
// it sent before ctx ended.
func feedGroups(ctx context.Context, c *Client, items []manifest.Item, chunkBytes int, work chan<- []manifest.Item) int {
	if chunkBytes <= 0 {
		chunkBytes = DefaultChunkBytes
	}
	per := c.batchItems()
	sent := 0
	var group []manifest.Item
	var bytes int64
	flush := func() bool {
		if len(group) == 0 {
			return true
		}
		select {
		case work <- group:
			sent += len(group)
			group, bytes = nil, 0
			return true
		case <-ctx.Done():
			return false
		}
	}
	for _, it := range items {
		if per < 2 || !c.batchEnabled() || it.Size > BatchItemBytes {
			if !flush() {
				return sent
			}
			group = []manifest.Item{it}
			if !flush() {
				return sent
			}
			continue
		}
		if len(group) == per || bytes+it.Size > int64(chunkBytes) {
			if !flush() {
				return sent
			}
		}
		group = append(group, it)
		bytes += it.Size
	}
	flush()
	return sent
}

func (c *Client) batchItems() int {
	if c.BatchItems <= 0 || c.BatchItems > MaxBatchItems {
		return MaxBatchItems
	}
	return c.BatchItems
}

// restoreGroup restores a group of items: one alone as Restore always did; several in one batch,
// each object imported in one atomic request. An object the batch could not settle (the batch
// failed as a whole, its answer is a transient error, its item does not fit one chunk, or the Worker
// module has no batch endpoint) is restored alone, with restoreOne's retries.
func restoreGroup(ctx context.Context, c *Client, class string, group []manifest.Item, open Opener, o RestoreOptions, progress func(int)) []outcome {
	out := make([]outcome, 0, len(group))
	var alone []manifest.Item
	if len(group) > 1 && c.batchEnabled() {
		done, rest := restoreBatch(ctx, c, class, group, open, o, progress)
		out = append(out, done...)
		alone = rest
	} else {
		alone = group
	}
	for _, it := range alone {
		if ctx.Err() != nil {
			out = append(out, outcome{it: it, err: ctx.Err()})
			continue
		}
		r, err := restoreOne(ctx, c, class, it, open, o, progress)
		out = append(out, outcome{it: it, res: r, err: err})
	}
	return out
}

// prepared is an item read whole into the body of its single import request.
type prepared struct {
	it   manifest.Item
	req  batchReq
	end  End
	size int
}

// prepare reads an item whole (its SHA-256 checked) into one import request, or reports that it
// does not fit one chunk (ok false).
func prepare(ctx context.Context, it manifest.Item, open Opener, o RestoreOptions) (p prepared, ok bool, err error) {
	chunk := o.ChunkBytes
	if chunk <= 0 {
		chunk = DefaultChunkBytes
	}
	rc, err := open(ctx, it.ItemRef)
	if err != nil {
		return p, false, err
	}
	dec := newDecoderSize(rc, int(min(it.Size+1, 256<<10)))
	var body bytes.Buffer
	for {
		line, err := dec.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			rc.Close()
			return p, false, itemErr(err)
		}
		if body.Len()+len(line) > chunk {
			rc.Close()
			return p, false, nil
		}
		body.Write(line)
	}
	if err := dec.Complete(); err != nil {
		rc.Close()
		return p, false, itemErr(err)
	}
	if err := rc.Close(); err != nil {
		return p, false, err // the item's SHA-256 is checked on close
	}
	p = prepared{it: it, end: *dec.End, size: body.Len()}
	p.req = batchReq{method: http.MethodPost, id: o.address(it), op: "import", q: finalQuery(0, dec.Header.Alarm), body: body.Bytes()}
	return p, true, nil
}

// restoreBatch imports the items it can in one batch; it returns their outcomes and the items to
// restore alone.
func restoreBatch(ctx context.Context, c *Client, class string, group []manifest.Item, open Opener, o RestoreOptions, progress func(int)) (done []outcome, alone []manifest.Item) {
	var ps []prepared
	for _, it := range group {
		p, ok, err := prepare(ctx, it, open, o)
		switch {
		case err != nil && permanent(err):
			done = append(done, outcome{it: it, err: fmt.Errorf("restore Durable Object %s: %w", it.ObjectID, err)})
		case err != nil || !ok:
			alone = append(alone, it) // a read error is retried alone; a large item goes in chunks
		default:
			ps = append(ps, p)
		}
	}
	if len(ps) == 0 {
		return done, alone
	}
	reqs := make([]batchReq, len(ps))
	for i, p := range ps {
		reqs[i] = p.req
	}
	answers, err := c.batch(ctx, class, reqs)
	if err != nil {
		if !errors.Is(err, errNoBatch) {
			o.Log.Warn("Durable Object batch failed; restoring its objects one by one", "class", class, "objects", len(ps), "err", err)
		}
		for _, p := range ps {
			alone = append(alone, p.it)
		}
		return done, alone
	}
	for i, a := range answers {
		p := ps[i]
		if a.err != nil {
			if a.err.retryable() {
				alone = append(alone, p.it)
				continue
			}
			done = append(done, outcome{it: p.it, err: fmt.Errorf("restore Durable Object %s: %w", p.it.ObjectID, classifyHTTP(a.err, fmt.Sprintf("import %s object %s", class, p.req.id)))})
			continue
		}
		var rep chunkReply
		if err := json.Unmarshal(a.body, &rep); err != nil {
			done = append(done, outcome{it: p.it, err: fmt.Errorf("restore Durable Object %s: %w: import answer: %v", p.it.ObjectID, ErrFormat, err)})
			continue
		}
		res := ObjectResult{ID: p.req.id}
		res.add(rep, p.size, true)
		if err := res.check(p.req.id, p.end); err != nil {
			done = append(done, outcome{it: p.it, err: fmt.Errorf("restore Durable Object %s: %w", p.it.ObjectID, err)})
			continue
		}
		progress(p.size)
		res.ID = p.it.ObjectID
		o.Log.Debug("restored Durable Object", "class", class, "id", p.it.ObjectID, "chunks", 1, "atomic", res.Atomic, "batched", true)
		done = append(done, outcome{it: p.it, res: res})
	}
	return done, alone
}
