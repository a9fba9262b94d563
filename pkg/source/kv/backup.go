package kv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
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
	var st Stats
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	progress := o.Progress
	if progress == nil {
		progress = func(int) {}
	}
	conc := o.Concurrency
	if conc <= 0 {
		conc = DefaultConcurrency
	}
	ns := o.Namespace.ID
	haveSecret := len(o.WriterSecret) > 0
	var ik indexKeys
	var par *parent
	if haveSecret {
		ik = deriveKeys(o.WriterSecret)
		if o.Incremental && len(o.Keys) == 0 {
			var err error
			if par, err = loadParent(ctx, s, ns, ik); err != nil {
				if ctx.Err() != nil {
					return st, ctx.Err()
				}
				log.Warn("cannot use the parent snapshot's KV index: reading every value", "namespace", o.Namespace.Title, "err", err)
				par = nil
			}
		}
	} else if len(o.Keys) == 0 {
		log.Warn("no writer secret: reading every value and writing no incremental index (set CFBACKUP_WRITER_KEY_FILE)", "namespace", o.Namespace.Title)
	}
	var want map[string]bool
	if len(o.Keys) > 0 {
		want = make(map[string]bool, len(o.Keys))
		for _, k := range o.Keys {
			want[k] = true
		}
	}
	var all *listingHashState
	if haveSecret {
		all = ik.newListingHash(ns)
	}
	ix := &Index{Version: IndexVersion, Namespace: ns, Batches: map[string]manifest.Item{}}
	type pending struct {
		item *manifest.Item
		p    *archive.PendingItem
		hash string
	}
	var items []*manifest.Item
	var queue []pending
	settle := func(keep int) error {
		for len(queue) > keep {
			q := queue[0]
			queue = queue[1:]
			ref, err := q.p.Wait()
			if err != nil {
				return err
			}
			q.item.ItemRef = ref
			if q.hash != "" {
				ix.Batches[q.hash] = *q.item
			}
		}
		return nil
	}
	var cur []cloudflare.KVKey
	seq := 0
	flush := func() error {
		if len(cur) == 0 {
			return nil
		}
		defer func() { cur = cur[:0] }()
		hash := ""
		if haveSecret {
			h := ik.newListingHash(ns)
			for _, k := range cur {
				h.add(k)
			}
			hash = h.sum()
		}
		if par != nil {
			if it, segs, ok := par.reuse(hash); ok {
				s.Reference(segs...)
				it.Source = ns
				items = append(items, &it)
				ix.Batches[hash] = it
				st.Reused += it.Rows
				st.Keys += it.Rows
				st.ReusedBatches++
				st.Batches++
				st.Bytes += it.Size
				progress(int(it.Size))
				return nil
			}
		}
		seq++
		name := fmt.Sprintf("kv/%s/%s-%06d", ns, s.SnapshotID, seq)
		b := &batchReader{ctx: ctx, c: c, ns: ns, keys: cur, conc: conc, st: &st, progress: progress}
		pr, pw := io.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			pw.CloseWithError(b.produce(pw))
		}()
		p, err := s.Writer.WriteItemAsync(name, pr)
		pr.CloseWithError(errors.New("item abandoned"))
		<-done
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("back up KV namespace %s: %w", o.Namespace.Title, err)
		}
		it := &manifest.Item{Component: Component, Source: ns, Kind: KindEntries, Rows: b.written}
		items = append(items, it)
		st.Batches++
		if b.skipped > 0 {
			hash = "" // a batch missing keys of its listing is never reused
		}
		queue = append(queue, pending{item: it, p: p, hash: hash})
		return settle(64)
	}
	err := c.ListKVKeys(ctx, ns, "", cloudflare.KVListLimit, func(page []cloudflare.KVKey) error {
		for _, k := range page {
			if want != nil && !want[k.Name] {
				continue
			}
			if all != nil {
				all.add(k)
			}
			cur = append(cur, k)
			if boundary(k.Name) || len(cur) >= MaxBatchKeys {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err == nil {
		err = settle(0)
	}
	if err != nil {
		if ctx.Err() != nil {
			return st, ctx.Err()
		}
		return st, err
	}
	src := manifest.Source{Component: Component, ID: ns, Name: o.Namespace.Title, Items: int64(len(items)), Size: st.Bytes, Reused: st.Reused, Skipped: st.Skipped}
	var out []manifest.Item
	for _, it := range items {
		out = append(out, *it)
	}
	if par != nil {
		src.Parent = par.snapshot
		st.Parent = par.snapshot
	}
	if haveSecret && len(o.Keys) == 0 {
		ix.Listing, ix.Keys = all.sum(), st.Keys
		st.Unchanged = par != nil && par.ix.Listing == ix.Listing
		if st.Unchanged {
			log.Info("KV namespace listing unchanged since the parent snapshot: every batch reused", "namespace", o.Namespace.Title, "parent", par.snapshot)
		}
		b, err := ik.seal(ix)
		if err != nil {
			return st, err
		}
		key := IndexKey(s.SnapshotID, ns)
		if err := s.PutObject(ctx, key, b); err != nil {
			return st, fmt.Errorf("store the KV incremental index: %w", err)
		}
		src.Index = key
	}
	s.Add(src, out...)
	return st, nil
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
	go func() {
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
				names := make([]string, len(g))
				for j, k := range g {
					names[j] = k.Name
				}
				vals, err := b.c.BulkGetKV(ctx, b.ns, names)
				r := groupResult{vals: vals, err: err, exact: map[string]exactValue{}}
				if err != nil && fallback(err) {
					vals = nil
				}
				if err == nil || fallback(err) {
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
				}
				results[i] <- r
			}()
		}
	}()
	var buf bytes.Buffer
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
		for _, k := range g {
			exp, meta := k.Expiration, k.Metadata
			var value []byte
			v, inBulk := r.vals[k.Name]
			switch {
			case r.vals != nil && inBulk && !v.Found:
				b.skipped++
				continue
			case inBulk && cloudflare.KVTextSafe(v.Value):
				value = []byte(v.Value)
			default:
				var got []byte
				var gexp int64
				var err error
				if x, ok := r.exact[k.Name]; ok {
					got, gexp, err = x.value, x.exp, x.err
				} else {
					b.st.SingleGets++
					got, gexp, err = b.fetchOne(ctx, k.Name)
				}
				if errors.Is(err, cloudflare.ErrNotFound) {
					b.skipped++
					continue
				}
				if err != nil {
					return err
				}
				value = got
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
			buf.Reset()
			if err := appendEntry(&buf, k.Name, exp, meta, value); err != nil {
				return err
			}
			if _, err := w.Write(buf.Bytes()); err != nil {
				return err
			}
			b.written++
			b.st.Keys++
			b.st.Fetched++
			b.st.Bytes += int64(buf.Len())
			b.progress(len(value))
		}
	}
	b.st.Skipped += b.skipped
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
