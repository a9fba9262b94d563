package kv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source"
)

// Batching. A namespace's keys are cut into batches (one catalogue item each) at content-defined
// boundaries — after a key whose name's SHA-256 starts with 16 bits below boundaryBelow, or after
// MaxBatchKeys keys — so inserting or deleting a key changes only its own batch and an incremental
// backup reuses the others. The rule is part of the format: changing it makes every batch new once.
const (
	MaxBatchKeys  = 2000
	boundaryBelow = 65536 / 512 // about 512 keys per batch
	// DefaultConcurrency is the number of bulk reads in flight.
	DefaultConcurrency = 4
)

func boundary(name string) bool {
	h := sha256.Sum256([]byte(name))
	return binary.BigEndian.Uint16(h[:2]) < boundaryBelow
}

// BackupOptions select what one namespace backup captures.
type BackupOptions struct {
	Namespace cloudflare.KVNamespace
	// WriterSecret keys the incremental index; without it no index is written and nothing is reused.
	WriterSecret []byte
	// Incremental reuses a batch of the parent snapshot when its listing (names, expirations,
	// metadata) is unchanged, without reading its values: a value rewritten with the same metadata
	// and expiration is then not seen (docs/KV.md "Incremental backups").
	Incremental bool
	// Keys, when set, limits the backup to these keys: a restore's safety snapshot of exactly the
	// keys it overwrites. No index is written for it.
	Keys []string
	// Absent lists keys that did not exist when the snapshot was taken and that restoring it deletes:
	// the keys a restore creates, recorded in its safety snapshot so the undo removes them again.
	Absent []string
	// Concurrency is the number of bulk reads in flight (default DefaultConcurrency).
	Concurrency int
	Log         *slog.Logger
	Progress    func(int)
}

// Stats are counters of one namespace backup.
type Stats struct {
	Keys, Reused, Fetched, Skipped int64
	Batches, ReusedBatches         int64
	Bytes                          int64
	BulkGets, SingleGets           int64
	// Unchanged: the whole listing equals the parent's.
	Unchanged bool
	Parent    string
}

// Backup captures one namespace into the session: lists its keys, cuts them into batches, reuses
// unchanged batches from the parent snapshot (Incremental), reads the rest in bulk, writes one
// entries item per batch and the namespace's index, and adds the source.
func Backup(ctx context.Context, c *cloudflare.Client, s *source.Session, o BackupOptions) (Stats, error) {
	nb, err := newNamespaceBackup(ctx, c, s, o)
	if err != nil {
		return nb.st, err
	}
	err = c.ListKVKeys(ctx, nb.ns, "", cloudflare.KVListLimit, nb.page)
	if err == nil {
		err = nb.flush()
	}
	if err == nil {
		err = nb.settle(0)
	}
	if err == nil {
		err = nb.finish()
	}
	if err != nil && ctx.Err() != nil {
		return nb.st, ctx.Err()
	}
	return nb.st, err
}

// namespaceBackup is one namespace backup under way.
type namespaceBackup struct {
	ctx      context.Context
	c        *cloudflare.Client
	s        *source.Session
	o        BackupOptions
	ns       string
	log      *slog.Logger
	progress func(int)
	st       Stats

	ik    indexKeys // zero without the writer secret
	par   *parent
	want  map[string]bool    // safety snapshots: only these keys
	all   *listingHashState  // the whole listing (with the writer secret)
	ix    *Index             // this snapshot's index
	items []*manifest.Item   // catalogue items, in key order
	queue []pendingItem      // items written, not yet placed
	cur   []cloudflare.KVKey // the batch being collected
	seq   int                // items written
}

type pendingItem struct {
	item *manifest.Item
	p    *archive.PendingItem
	hash string
}

func newNamespaceBackup(ctx context.Context, c *cloudflare.Client, s *source.Session, o BackupOptions) (*namespaceBackup, error) {
	nb := &namespaceBackup{ctx: ctx, c: c, s: s, o: o, ns: o.Namespace.ID, log: o.Log, progress: o.Progress}
	if nb.log == nil {
		nb.log = slog.New(slog.DiscardHandler)
	}
	if nb.progress == nil {
		nb.progress = func(int) {}
	}
	if nb.o.Concurrency <= 0 {
		nb.o.Concurrency = DefaultConcurrency
	}
	nb.ix = &Index{Version: IndexVersion, Namespace: nb.ns, Batches: map[string]manifest.Item{}}
	if len(o.Keys) > 0 {
		nb.want = make(map[string]bool, len(o.Keys))
		for _, k := range o.Keys {
			nb.want[k] = true
		}
	}
	if len(o.WriterSecret) == 0 {
		if len(o.Keys) == 0 {
			nb.log.Warn("no writer secret: reading every value and writing no incremental index (set CFBACKUP_WRITER_KEY_FILE)", "namespace", o.Namespace.Title)
		}
		return nb, nil
	}
	nb.ik = deriveKeys(o.WriterSecret)
	nb.all = nb.ik.newListingHash(nb.ns)
	if o.Incremental && len(o.Keys) == 0 {
		par, err := loadParent(ctx, s, nb.ns, nb.ik)
		if err != nil {
			if ctx.Err() != nil {
				return nb, ctx.Err()
			}
			nb.log.Warn("cannot use the parent snapshot's KV index: reading every value", "namespace", o.Namespace.Title, "err", err)
			par = nil
		}
		nb.par = par
	}
	return nb, nil
}

// page takes one listing page, flushing a batch at every boundary.
func (nb *namespaceBackup) page(keys []cloudflare.KVKey) error {
	for _, k := range keys {
		if nb.want != nil && !nb.want[k.Name] {
			continue
		}
		if nb.all != nil {
			nb.all.add(k)
		}
		nb.cur = append(nb.cur, k)
		if boundary(k.Name) || len(nb.cur) >= MaxBatchKeys {
			if err := nb.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// settle waits for all but keep written items to be placed and records them in the index.
func (nb *namespaceBackup) settle(keep int) error {
	for len(nb.queue) > keep {
		q := nb.queue[0]
		nb.queue = nb.queue[1:]
		ref, err := q.p.Wait()
		if err != nil {
			return err
		}
		q.item.ItemRef = ref
		if q.hash != "" {
			nb.ix.Batches[q.hash] = *q.item
		}
	}
	return nil
}

// batchHash is the keyed hash of the current batch's listing ("" without the writer secret).
func (nb *namespaceBackup) batchHash() string {
	if nb.all == nil {
		return ""
	}
	h := nb.ik.newListingHash(nb.ns)
	for _, k := range nb.cur {
		h.add(k)
	}
	return h.sum()
}

// flush stores the current batch: reused from the parent when its listing is unchanged, else read
// and written as a new item.
func (nb *namespaceBackup) flush() error {
	if len(nb.cur) == 0 {
		return nil
	}
	defer func() { nb.cur = nb.cur[:0] }()
	hash := nb.batchHash()
	if nb.par != nil {
		if it, segs, ok := nb.par.reuse(hash); ok {
			nb.s.Reference(segs...)
			it.Source = nb.ns
			nb.items = append(nb.items, &it)
			nb.ix.Batches[hash] = it
			nb.st.Reused += it.Rows
			nb.st.Keys += it.Rows
			nb.st.ReusedBatches++
			nb.st.Batches++
			nb.st.Bytes += it.Size
			nb.progress(int(it.Size))
			return nil
		}
	}
	nb.seq++
	name := fmt.Sprintf("kv/%s/%s-%06d", nb.ns, nb.s.SnapshotID, nb.seq)
	b := &batchReader{ctx: nb.ctx, c: nb.c, ns: nb.ns, keys: nb.cur, conc: nb.o.Concurrency, st: &nb.st, progress: nb.progress}
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(b.produce(pw))
	}()
	p, err := nb.s.Writer.WriteItemAsync(name, pr)
	pr.CloseWithError(errors.New("item abandoned"))
	<-done
	if err != nil {
		return fmt.Errorf("back up KV namespace %s: %w", nb.o.Namespace.Title, err)
	}
	it := &manifest.Item{Component: Component, Source: nb.ns, Kind: KindEntries, Rows: b.written}
	nb.items = append(nb.items, it)
	nb.st.Batches++
	if b.skipped > 0 {
		hash = "" // a batch missing keys of its listing is never reused
	}
	nb.queue = append(nb.queue, pendingItem{item: it, p: p, hash: hash})
	return nb.settle(64)
}

// finish writes the index (full backups with the writer secret) and adds the source and its items.
func (nb *namespaceBackup) finish() error {
	o := nb.o
	src := manifest.Source{Component: Component, ID: nb.ns, Name: o.Namespace.Title, Items: int64(len(nb.items)), Size: nb.st.Bytes,
		Reused: nb.st.Reused, Skipped: nb.st.Skipped}
	out := make([]manifest.Item, 0, len(nb.items))
	for _, it := range nb.items {
		out = append(out, *it)
	}
	if nb.par != nil {
		src.Parent, nb.st.Parent = nb.par.snapshot, nb.par.snapshot
	}
	if len(o.Absent) > 0 {
		it, err := writeAbsent(nb.s, nb.ns, o.Absent)
		if err != nil {
			return err
		}
		out = append(out, it)
		src.Items++
		src.Size += it.Size
	}
	if nb.all != nil && len(o.Keys) == 0 {
		nb.ix.Listing, nb.ix.Keys = nb.all.sum(), nb.st.Keys
		nb.st.Unchanged = nb.par != nil && nb.par.ix.Listing == nb.ix.Listing
		if nb.st.Unchanged {
			nb.log.Info("KV namespace listing unchanged since the parent snapshot: every batch reused", "namespace", o.Namespace.Title, "parent", nb.par.snapshot)
		}
		b, err := nb.ik.seal(nb.ix)
		if err != nil {
			return err
		}
		key := IndexKey(nb.s.SnapshotID, nb.ns)
		if err := nb.s.PutObject(nb.ctx, key, b); err != nil {
			return fmt.Errorf("store the KV incremental index: %w", err)
		}
		src.Index = key
	}
	nb.s.Add(src, out...)
	return nil
}

// writeAbsent stores the keys a restore of this snapshot deletes as an "absent" item: one JSON string
// per line.
func writeAbsent(s *source.Session, ns string, keys []string) (manifest.Item, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for _, k := range keys {
		if err := enc.Encode(k); err != nil {
			return manifest.Item{}, err
		}
	}
	ref, err := s.Writer.WriteItem(fmt.Sprintf("kv/%s/%s-absent", ns, s.SnapshotID), &buf)
	if err != nil {
		return manifest.Item{}, err
	}
	return manifest.Item{Component: Component, Source: ns, Kind: KindAbsent, Rows: int64(len(keys)), ItemRef: ref}, nil
}

// batchReader reads one batch's values (bulk reads in flight, in key order) and writes its entries.
type batchReader struct {
	ctx      context.Context
	c        *cloudflare.Client
	ns       string
	keys     []cloudflare.KVKey
	conc     int
	st       *Stats
	progress func(int)

	written, skipped int64
	buf              bytes.Buffer
}

type groupResult struct {
	vals map[string]cloudflare.KVBulkValue
	err  error
	// exact holds values the bulk read could not return as bytes, read one by one ahead of their
	// turn (up to prefetchSingles bytes per group; the rest are read when written).
	exact map[string]exactValue
	gets  int64
}

type exactValue struct {
	value []byte
	exp   int64
	err   error
}

// prefetchSingles bounds the bytes of single reads one group holds ahead of the writer.
const prefetchSingles = 8 << 20

// produce writes the batch's entries to w, reading groups of KVBulkGetKeys keys with up to conc
// groups in flight and writing them in key order.
func (b *batchReader) produce(w io.Writer) error {
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	var groups [][]cloudflare.KVKey
	for i := 0; i < len(b.keys); i += cloudflare.KVBulkGetKeys {
		groups = append(groups, b.keys[i:min(i+cloudflare.KVBulkGetKeys, len(b.keys))])
	}
	results := make([]chan groupResult, len(groups))
	for i := range results {
		results[i] = make(chan groupResult, 1)
	}
	sem := make(chan struct{}, b.conc)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(1)
	go b.launch(ctx, &wg, sem, groups, results)
	for i, g := range groups {
		var r groupResult
		select {
		case r = <-results[i]:
		case <-ctx.Done():
			return ctx.Err()
		}
		<-sem
		b.st.BulkGets++
		b.st.SingleGets += r.gets
		if r.err != nil {
			if ctx.Err() != nil || !fallback(r.err) {
				return r.err
			}
			r.vals = nil // read this group key by key
		}
		if err := b.writeGroup(ctx, w, g, r); err != nil {
			return err
		}
	}
	b.st.Skipped += b.skipped
	return nil
}

// launch starts one fetch per group, at most cap(sem) unconsumed at a time.
func (b *batchReader) launch(ctx context.Context, wg *sync.WaitGroup, sem chan struct{}, groups [][]cloudflare.KVKey, results []chan groupResult) {
	defer wg.Done()
	for i, g := range groups {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] <- b.fetchGroup(ctx, g)
		}()
	}
}

// fetchGroup bulk-reads a group, then reads the values the bulk read could not return as bytes.
func (b *batchReader) fetchGroup(ctx context.Context, g []cloudflare.KVKey) groupResult {
	names := make([]string, len(g))
	for j, k := range g {
		names[j] = k.Name
	}
	vals, err := b.c.BulkGetKV(ctx, b.ns, names)
	r := groupResult{vals: vals, err: err, exact: map[string]exactValue{}}
	if err != nil && !fallback(err) {
		return r
	}
	if err != nil {
		vals = nil
	}
	held := 0
	for _, k := range g {
		v, ok := vals[k.Name]
		if (ok && !v.Found) || (ok && cloudflare.KVTextSafe(v.Value)) || held >= prefetchSingles {
			continue
		}
		val, exp, err := b.fetchOne(ctx, k.Name)
		r.gets++
		r.exact[k.Name] = exactValue{val, exp, err}
		held += len(val)
	}
	return r
}

// value is one key's exact value with its expiration and metadata; found is false for a key gone
// since the listing.
func (b *batchReader) value(ctx context.Context, k cloudflare.KVKey, r groupResult) (value []byte, exp int64, meta json.RawMessage, found bool, err error) {
	exp, meta = k.Expiration, k.Metadata
	v, inBulk := r.vals[k.Name]
	switch {
	case r.vals != nil && inBulk && !v.Found:
		return nil, 0, nil, false, nil
	case inBulk && cloudflare.KVTextSafe(v.Value):
		value = []byte(v.Value)
	default:
		var gexp int64
		if x, ok := r.exact[k.Name]; ok {
			value, gexp, err = x.value, x.exp, x.err
		} else {
			b.st.SingleGets++
			value, gexp, err = b.fetchOne(ctx, k.Name)
		}
		if errors.Is(err, cloudflare.ErrNotFound) {
			return nil, 0, nil, false, nil
		}
		if err != nil {
			return nil, 0, nil, false, err
		}
		if gexp != 0 {
			exp = gexp
		}
	}
	if inBulk && v.Found {
		if v.Expiration != 0 {
			exp = v.Expiration
		}
		if v.Metadata != nil {
			meta = v.Metadata
		}
	}
	return value, exp, meta, true, nil
}

// writeGroup writes a fetched group's entries in key order.
func (b *batchReader) writeGroup(ctx context.Context, w io.Writer, g []cloudflare.KVKey, r groupResult) error {
	for _, k := range g {
		value, exp, meta, found, err := b.value(ctx, k, r)
		if err != nil {
			return err
		}
		if !found {
			b.skipped++
			continue
		}
		b.buf.Reset()
		if err := appendEntry(&b.buf, k.Name, exp, meta, value); err != nil {
			return err
		}
		if _, err := w.Write(b.buf.Bytes()); err != nil {
			return err
		}
		b.written++
		b.st.Keys++
		b.st.Fetched++
		b.st.Bytes += int64(b.buf.Len())
		b.progress(len(value))
	}
	return nil
}

// fetchOne reads one value as bytes (GET …/values/{key}), bounded by the value size limit. It may
// run on several goroutines at once.
func (b *batchReader) fetchOne(ctx context.Context, key string) ([]byte, int64, error) {
	body, exp, err := b.c.GetKVValue(ctx, b.ns, key)
	if err != nil {
		return nil, 0, err
	}
	defer body.Close()
	v, err := io.ReadAll(io.LimitReader(body, cloudflare.KVMaxValueBytes+1))
	if err != nil {
		return nil, 0, fmt.Errorf("read a value of KV namespace %s: %w", b.ns, err)
	}
	if len(v) > cloudflare.KVMaxValueBytes {
		return nil, 0, fmt.Errorf("%w: a value of KV namespace %s is over %d bytes", ErrFormat, b.ns, cloudflare.KVMaxValueBytes)
	}
	return v, exp, nil
}

// fallback says whether a failed bulk read is worth reading key by key: the API refused the batch
// (a value that is not text, an answer too large), not the token, the namespace or the network.
func fallback(err error) bool {
	return !errors.Is(err, cloudflare.ErrAuth) && !errors.Is(err, cloudflare.ErrNotFound) && !errors.Is(err, cloudflare.ErrUnreachable) &&
		!errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}
