package durableobject

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/manifest"
)

// Opener opens a catalogue item for reading (engine.Opener), checking its SHA-256 as it is read.
type Opener func(ctx context.Context, ref archive.ItemRef) (io.ReadCloser, error)

// DefaultChunkBytes keeps import requests far below the Worker request-body limit (100 MB on Free/Pro).
const DefaultChunkBytes = 4 << 20

// RestoreOptions tune a restore.
type RestoreOptions struct {
	// ChunkBytes is the largest import request body (default DefaultChunkBytes); one line larger than
	// that is sent alone.
	ChunkBytes int
	// Attempts is how many times one object's import starts over from its first chunk after a
	// transient failure (default 3). A started import is never resumed mid-way: chunk 0 wipes the
	// object first, so starting over is safe.
	Attempts    int
	Concurrency int
	Log         *slog.Logger
	Progress    func(n int)
	// Address, if set, is where an item is imported: an object ID of the target namespace or
	// NameRef(name). Unset, every item goes back into the object ID it came from.
	Address func(it manifest.Item) string
}

// address is where it is imported.
func (o RestoreOptions) address(it manifest.Item) string {
	if o.Address != nil {
		return o.Address(it)
	}
	return it.ObjectID
}

// ObjectResult is what the Worker reported writing into one object.
type ObjectResult struct {
	ID string `json:"id"`
	// Object is the object ID the Worker wrote into (another than ID when restored by name or
	// through an ID map into another namespace); "" from a module that does not report it.
	Object string `json:"object,omitempty"`
	Chunks int    `json:"chunks"`
	Atomic bool   `json:"atomic"` // the whole object was written in one transaction
	KV     int64  `json:"kv"`
	Tables int64  `json:"tables"`
	Rows   int64  `json:"rows"`
	Schema int64  `json:"schema"`
	// Sequences are the sqlite_sequence rows (AUTOINCREMENT counters) written back.
	Sequences int64  `json:"sequences"`
	Alarm     *int64 `json:"alarm"`
	Bytes     int64  `json:"bytes"`
}

type chunkReply struct {
	ID        string `json:"id"` // the object written (module versions that report it)
	Atomic    bool   `json:"atomic"`
	KV        int64  `json:"kv"`
	Tables    int64  `json:"tables"`
	Rows      int64  `json:"rows"`
	Schema    int64  `json:"schema"`
	Sequences int64  `json:"sequences"`
	Alarm     *int64 `json:"alarm"`
}

// ImportObject replays one object's export (r) into the object id of class, in chunks: the first
// chunk makes the object delete everything it stores, the last one sets the alarm. It checks the
// counts the Worker reports against the export's end line. The next chunk is read (and framed) while
// the Worker applies the current one (memory: two chunks).
func (c *Client) ImportObject(ctx context.Context, class, id string, r io.Reader, chunkBytes int, progress func(int)) (ObjectResult, error) {
	if chunkBytes <= 0 {
		chunkBytes = DefaultChunkBytes
	}
	if progress == nil {
		progress = func(int) {}
	}
	res := ObjectResult{ID: id}
	ctx, cancel := context.WithCancel(ctx)
	dec := NewDecoder(r)
	chunks := make(chan importChunk)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.readChunks(ctx, class, id, dec, chunkBytes, chunks)
	}()
	// The reader must be done with r before the caller closes it.
	defer func() { cancel(); <-done }()
	for ch := range chunks {
		if ch.err != nil {
			return res, ch.err
		}
		q := url.Values{"seq": {strconv.Itoa(res.Chunks)}, "final": {"0"}}
		if ch.final {
			q = finalQuery(res.Chunks, dec.Header.Alarm)
		}
		if ch.framed {
			q.Set("wire", Wire)
		}
		var rep chunkReply
		err := c.do(ctx, 1, http.MethodPost, class, id, "import", q, ch.body, func(rd io.Reader) error {
			return json.NewDecoder(rd).Decode(&rep)
		})
		if err != nil {
			if res.Chunks > 0 {
				return res, fmt.Errorf("%w (chunk %d: the object is partly restored; run the restore again, it starts over)", err, res.Chunks)
			}
			return res, err
		}
		progress(ch.n)
		res.add(rep, ch.n, ch.final)
		if ch.final {
			return res, res.check(id, *dec.End)
		}
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	return res, fmt.Errorf("%w: item ended without its last chunk", ErrFormat) // not reached: the reader sends it or an error
}

// importChunk is one import request's body: n bytes of the item's lines, framed or not. The last
// one (final) follows the item's end line; err ends the item.
type importChunk struct {
	body          []byte
	n             int
	final, framed bool
	err           error
}

// readChunks reads the item's lines into chunks of at most chunkBytes (one longer line alone) and
// hands them on, framed when the module speaks the framing; it stops when ctx is done.
func (c *Client) readChunks(ctx context.Context, class, id string, dec *Decoder, chunkBytes int, out chan<- importChunk) {
	defer close(out)
	var cur []byte
	send := func(ch importChunk) bool {
		select {
		case out <- ch:
			return true
		case <-ctx.Done():
			return false
		}
	}
	flush := func(final bool) bool {
		body, framed := c.importBody(ctx, class, id, cur)
		ch := importChunk{body: body, n: len(cur), final: final, framed: framed}
		cur = nil // the chunk keeps its buffer: the next one gets its own
		return send(ch)
	}
	for {
		line, err := dec.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			send(importChunk{err: itemErr(err)})
			return
		}
		if len(cur) > 0 && len(cur)+len(line) > chunkBytes && !flush(false) {
			return
		}
		if cur == nil {
			cur = make([]byte, 0, min(chunkBytes, max(2*len(line), 4<<10)))
		}
		cur = append(cur, line...)
	}
	if err := dec.Complete(); err != nil {
		send(importChunk{err: itemErr(err)})
		return
	}
	flush(true)
}

// add counts one chunk's reply (n body bytes) into the object's result.
func (res *ObjectResult) add(rep chunkReply, n int, final bool) {
	res.Bytes += int64(n)
	res.Chunks++
	res.Atomic = rep.Atomic
	if rep.ID != "" {
		res.Object = rep.ID
	}
	res.KV += rep.KV
	res.Tables += rep.Tables
	res.Rows += rep.Rows
	res.Schema += rep.Schema
	res.Sequences += rep.Sequences
	if final {
		res.Alarm = rep.Alarm
	}
}

// check compares what the Worker reported writing with the export's end line.
func (res *ObjectResult) check(id string, end End) error {
	if res.KV != end.KV || res.Tables != end.Tables || res.Rows != end.Rows || res.Schema != end.Schema || res.Sequences != end.Sequences {
		return fmt.Errorf("%w: object %s: wrote %d keys, %d tables, %d rows, %d schema objects, %d sequences; the backup has %d, %d, %d, %d, %d",
			ErrMismatch, id, res.KV, res.Tables, res.Rows, res.Schema, res.Sequences, end.KV, end.Tables, end.Rows, end.Schema, end.Sequences)
	}
	return nil
}

// finalQuery is the query of an object's last import chunk (seq n), with the export's alarm.
func finalQuery(n int, alarm *int64) url.Values {
	q := url.Values{"seq": {strconv.Itoa(n)}, "final": {"1"}}
	if alarm != nil {
		q.Set("alarm", strconv.FormatInt(*alarm, 10))
	}
	return q
}

// itemErr marks an item that does not decode as ErrFormat; a read error stays what it is.
func itemErr(err error) error {
	var ie *ItemError
	if errors.As(err, &ie) {
		return fmt.Errorf("%w: item: %v", ErrFormat, err)
	}
	return err
}

// permanent reports errors that starting over cannot fix.
func permanent(err error) bool {
	for _, e := range []error{ErrAuth, ErrNotConfigured, ErrNotFound, ErrRefused, ErrMismatch, ErrFormat, archive.ErrIntegrity, archive.ErrNoIdentity, context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// ObjectFailure is one object a restore could not bring back.
type ObjectFailure struct {
	ID  string
	Err error
}

// RestoreErrors lists every object of a restore that failed; the others were restored. It unwraps
// to each failure's error, so errors.Is finds their kinds (ErrRefused, ErrAuth…).
type RestoreErrors struct {
	Failures []ObjectFailure
	// Attempted is how many objects the restore tried.
	Attempted int
}

func (e *RestoreErrors) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d Durable Object(s) could not be restored:", len(e.Failures), e.Attempted)
	for _, f := range e.Failures {
		fmt.Fprintf(&b, "\n  %s: %v", f.ID, f.Err)
	}
	return b.String()
}

func (e *RestoreErrors) Unwrap() []error {
	out := make([]error, len(e.Failures))
	for i, f := range e.Failures {
		out[i] = f.Err
	}
	return out
}

// fatal reports errors after which restoring further objects is pointless: every object would meet
// them (the Worker refuses the secret, is not configured, or the run was cancelled).
func fatal(err error) bool {
	return errors.Is(err, ErrAuth) || errors.Is(err, ErrNotConfigured) || errors.Is(err, archive.ErrNoIdentity) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// Restore imports the items into the objects they came from (IDs are bound to their namespace, so
// the target is the same namespace, reached through the Worker routing class). Up to Concurrency
// objects are restored at once. An object that fails does not stop the others: they are restored,
// and the error (a *RestoreErrors) names every failed object. Only a failure every object would meet
// (authentication, configuration, cancellation) stops the rest. It returns the objects restored.
func Restore(ctx context.Context, c *Client, class string, items []manifest.Item, open Opener, o RestoreOptions) ([]ObjectResult, error) {
	o = o.withDefaults()
	conc := o.Concurrency
	if conc <= 0 {
		conc = 4
	}
	var pmu sync.Mutex
	progress := func(n int) {
		if o.Progress != nil {
			pmu.Lock()
			o.Progress(n)
			pmu.Unlock()
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	var out []ObjectResult
	var failures []ObjectFailure
	var stop error
	attempted := 0
	work := make(chan []manifest.Item)
	var wg sync.WaitGroup
	for i := 0; i < conc; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for group := range work {
				for _, oc := range restoreGroup(ctx, c, class, group, open, o, progress) {
					mu.Lock()
					switch err := oc.err; {
					case err == nil:
						out = append(out, oc.res)
					case fatal(err):
						if stop == nil {
							stop = err
							cancel()
						}
					default:
						o.Log.Error("Durable Object not restored; restoring the others", "class", class, "id", oc.it.ObjectID, "err", err)
						failures = append(failures, ObjectFailure{ID: oc.it.ObjectID, Err: err})
					}
					mu.Unlock()
				}
			}
		}()
	}
	attempted = feedGroups(ctx, c, items, o.ChunkBytes, work)
	close(work)
	wg.Wait()
	if stop != nil {
		return out, stop
	}
	if err := ctx.Err(); err != nil {
		return out, err
	}
	if len(failures) > 0 {
		sort.Slice(failures, func(i, j int) bool { return failures[i].ID < failures[j].ID })
		return out, &RestoreErrors{Failures: failures, Attempted: attempted}
	}
	return out, nil
}

func (o RestoreOptions) withDefaults() RestoreOptions {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Attempts <= 0 {
		o.Attempts = 3
	}
	return o
}

// RestoreObject imports one object's item into its Durable Object as Restore does for each (the
// item's SHA-256 checked, transient failures started over); test-restore uses it for a scratch Worker.
func RestoreObject(ctx context.Context, c *Client, class string, it manifest.Item, open Opener, o RestoreOptions) (ObjectResult, error) {
	o = o.withDefaults()
	progress := o.Progress
	if progress == nil {
		progress = func(int) {}
	}
	return restoreOne(ctx, c, class, it, open, o, progress)
}

func restoreOne(ctx context.Context, c *Client, class string, it manifest.Item, open Opener, o RestoreOptions, progress func(int)) (ObjectResult, error) {
	var last error
	for a := 0; a < o.Attempts; a++ {
		rc, err := open(ctx, it.ItemRef)
		if err != nil {
			return ObjectResult{}, fmt.Errorf("restore Durable Object %s: %w", it.ObjectID, err)
		}
		res, err := c.ImportObject(ctx, class, o.address(it), rc, o.ChunkBytes, progress)
		cerr := rc.Close()
		if err == nil && cerr != nil {
			err = cerr // the item's SHA-256 is checked on close
		}
		if err == nil {
			res.ID = it.ObjectID
			o.Log.Debug("restored Durable Object", "class", class, "id", it.ObjectID, "chunks", res.Chunks, "atomic", res.Atomic)
			return res, nil
		}
		last = fmt.Errorf("restore Durable Object %s: %w", it.ObjectID, err)
		if permanent(err) {
			return res, last
		}
		o.Log.Warn("Durable Object restore failed; starting it over", "id", it.ObjectID, "attempt", a+1, "err", err)
	}
	return ObjectResult{}, last
}
