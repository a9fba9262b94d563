package durableobject

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"

	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source"
)

// testRestoreConcurrency is how many objects a test-restore reads at once.
const testRestoreConcurrency = 4

// ScratchWorkerURL checks that a test-restore's Workers runtime is local — test-restore must never
// write into the production Worker's objects (production is the worker_url setting) — and returns it
// without a trailing slash.
func ScratchWorkerURL(raw, production string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%w: scratch Worker URL %q: give the http://127.0.0.1:PORT address of a local runtime (wrangler dev, miniflare)", errclass.Usage, raw)
	}
	norm := func(s string) string { return strings.TrimRight(strings.TrimSpace(s), "/") }
	if production != "" && norm(raw) == norm(production) {
		return "", fmt.Errorf("%w: the scratch Worker URL is the production Worker (worker_url); test-restore imports only into a local runtime", errclass.Refused)
	}
	if !IsLoopback(u.Hostname()) {
		return "", fmt.Errorf("%w: scratch Worker URL %s is not on this machine; test-restore imports only into a local runtime on a loopback address (127.0.0.1, ::1, localhost)", errclass.Refused, raw)
	}
	return norm(raw), nil
}

// scratchClient is the client of the local runtime test-restore imports into, or nil without one.
func scratchClient(env source.Env, req source.TestRestoreRequest) (*Client, error) {
	if req.ScratchWorkerURL == "" {
		return nil, nil
	}
	production := ""
	if env != nil {
		production = env.Setting("worker_url")
	}
	u, err := ScratchWorkerURL(req.ScratchWorkerURL, production)
	if err != nil {
		return nil, err
	}
	if req.ScratchWorkerSecret == "" {
		return nil, fmt.Errorf("%w: a scratch Worker URL is set but CFBACKUP_TEST_RESTORE_WORKER_SECRET is not: set it to the local runtime's CFBACKUP_SECRET", errclass.Usage)
	}
	cl, err := NewClient(u, req.ScratchWorkerSecret)
	if err != nil {
		return nil, fmt.Errorf("%w: scratch Worker: %v", errclass.Usage, err)
	}
	return cl, nil
}

// TestRestore decodes every Durable Object of the snapshot (or a --sample of them), checking each
// item's SHA-256, that every line parses, and that the end line's counts match the lines and the
// catalogue; with a scratch Workers runtime it also imports them there, where the module's own
// counts are compared with the end line again. It never writes to the account.
func (c *component) TestRestore(ctx context.Context, env source.Env, req source.TestRestoreRequest) ([]source.TestRestoreCheck, error) {
	if _, _, err := source.ParseSample(req.Sample); err != nil {
		return nil, err
	}
	client, err := scratchClient(env, req)
	if err != nil {
		return nil, err
	}
	var out []source.TestRestoreCheck
	for _, src := range req.Snapshot.Sources {
		if src.Component != Component {
			continue
		}
		chk, more, items, err := source.SampleSource(req.Catalogue, src, req.Sample, req.Seed, func(it manifest.Item) bool {
			return it.Component == Component && it.Source == src.ID
		})
		if err != nil {
			return nil, err
		}
		t := &sourceTest{client: client, class: src.Class, open: Opener(req.Open), chk: chk, more: more}
		if err := t.run(ctx, items); err != nil {
			return nil, err
		}
		out = append(out, t.finish())
	}
	return out, nil
}

// sourceTest is the test-restore of one namespace's sampled objects.
type sourceTest struct {
	client *Client // the scratch runtime, or nil
	class  string
	open   Opener

	mu                sync.Mutex
	chk               source.TestRestoreCheck
	more              source.Overflow
	decoded, imported int
	refused           error
}

// run checks the items, testRestoreConcurrency at a time.
func (t *sourceTest) run(ctx context.Context, items []manifest.Item) error {
	work := make(chan manifest.Item)
	var wg sync.WaitGroup
	for w := 0; w < testRestoreConcurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range work {
				t.one(ctx, it)
			}
		}()
	}
feed:
	for _, it := range items {
		select {
		case work <- it:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	return ctx.Err()
}

// one decodes an object's item and, with a scratch runtime, imports it there.
func (t *sourceTest) one(ctx context.Context, it manifest.Item) {
	kind, err := checkItem(ctx, t.open, it)
	t.mu.Lock()
	if err != nil {
		source.AddProblem(&t.chk, &t.more, kind, fmt.Sprintf("object %s: %v", it.ObjectID, err))
	} else {
		t.decoded++
	}
	skip := t.client == nil || err != nil || t.refused != nil
	t.mu.Unlock()
	if skip || ctx.Err() != nil {
		return
	}
	_, ierr := RestoreObject(ctx, t.client, t.class, it, t.open, RestoreOptions{})
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case ierr == nil:
		t.imported++
	case errors.Is(ierr, ErrNotFound) || errors.Is(ierr, ErrAuth) || errors.Is(ierr, ErrNotConfigured):
		// The runtime cannot take any object (foreign IDs, wrong secret): say so once.
		if t.refused == nil {
			t.refused = ierr
			source.AddProblem(&t.chk, &t.more, source.FailureError, fmt.Sprintf("the scratch Worker refused the import: %v (it must be a local runtime of the same Worker and class; IDs minted by Cloudflare are bound to their namespace)", ierr))
		}
	default:
		source.AddProblem(&t.chk, &t.more, source.FailureRestore, fmt.Sprintf("object %s: import into the scratch Worker: %v", it.ObjectID, ierr))
	}
}

func (t *sourceTest) finish() source.TestRestoreCheck {
	t.chk.Checks = append(t.chk.Checks, "items' SHA-256", fmt.Sprintf("%d export(s) decoded: every line parses, end-line counts match the lines and the catalogue", t.decoded))
	if t.client != nil {
		t.chk.Checks = append(t.chk.Checks, fmt.Sprintf("%d imported into the scratch Worker with matching counts", t.imported))
	}
	source.CloseProblems(&t.chk, t.more)
	return t.chk
}

// checkItem decodes one object's item (DecodeItem); the SHA-256 is checked when the item is closed.
// The kind says what a failure is: damage (the SHA-256, or an export that does not decode) or a read
// error.
func checkItem(ctx context.Context, open Opener, it manifest.Item) (string, error) {
	rc, err := open(ctx, it.ItemRef)
	if err != nil {
		return source.ReadFailureKind(err, source.FailureError), err
	}
	_, end, derr := DecodeItem(rc)
	if derr != nil {
		// Read to the end so a damaged item reports its SHA-256 mismatch rather than a parse error.
		if _, cerr := io.Copy(io.Discard, rc); cerr != nil {
			rc.Close()
			return source.ReadFailureKind(cerr, source.FailureError), cerr
		}
	}
	if cerr := rc.Close(); cerr != nil {
		return source.ReadFailureKind(cerr, source.FailureError), cerr
	}
	if derr != nil {
		var ie *ItemError
		if !errors.As(derr, &ie) {
			return source.ReadFailureKind(derr, source.FailureError), derr
		}
		return source.FailureIntegrity, derr
	}
	if end.KV+end.Rows != it.Rows {
		return source.FailureIntegrity, fmt.Errorf("the end line counts %d kv and %d rows; the catalogue says %d in all", end.KV, end.Rows, it.Rows)
	}
	return "", nil
}
