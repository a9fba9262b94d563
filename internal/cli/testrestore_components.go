package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source"
	"github.com/cfbackup/cfbackup/pkg/source/durableobject"
	"github.com/cfbackup/cfbackup/pkg/source/r2"
)

// The R2 and Durable Object test restorers live on the CLI side because their sources import the
// engine (an engine-side registration would be an import cycle).
func init() {
	engine.TestRestorers[r2.Component] = testRestoreR2
	engine.TestRestorers[durableobject.Component] = testRestoreDO
}

// testRestoreConcurrency is how many objects a test-restore reads at once.
const testRestoreConcurrency = 4

// testRestoreR2 restores every bucket's objects (or a --sample of them) into a scratch directory
// with the R2 source's directory restore (each object's SHA-256 checked while it is read), then reads
// the files back: size and SHA-256 of each against the catalogue, and the metadata written beside
// them (content type, custom metadata, ETag) against the catalogue's.
func testRestoreR2(ctx context.Context, e *engine.Engine, m *manifest.Manifest, cat *manifest.Catalogue, o engine.TestRestoreOptions, scratch string) ([]engine.TestRestoreCheck, error) {
	if _, _, err := engine.ParseSample(o.Sample); err != nil {
		return nil, err
	}
	open := r2.Opener(e.Opener(m, o.Identities))
	var out []engine.TestRestoreCheck
	for _, src := range engine.SourcesOf(m, r2.Component) {
		chk, more, items, err := source.SampleSource(cat, src, o.Sample, func(it manifest.Item) bool {
			return it.Component == r2.Component && it.Source == src.Name && it.Object != nil
		})
		if err != nil {
			return nil, err
		}
		if len(items) == 0 {
			out = append(out, chk)
			continue
		}
		dir := filepath.Join(scratch, src.Name)
		plan, err := r2.PlanRestore(ctx, nil, items, r2.Target{Dir: dir, Overwrite: r2.OverwriteOverwrite})
		if err != nil {
			return nil, err
		}
		if _, err := r2.Restore(ctx, nil, open, plan, testRestoreConcurrency); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			source.AddProblem(&chk, &more, engine.FailureKindOf(err, engine.FailureRestore), err.Error())
			source.CloseProblems(&chk, more)
			out = append(out, chk)
			continue
		}
		chk.Checks = append(chk.Checks, "objects' SHA-256 while reading")
		metas, err := readDirIndex(filepath.Join(dir, r2.DirIndexName))
		if err != nil {
			source.AddProblem(&chk, &more, engine.FailureRestore, err.Error())
		}
		hashed, metaOK := 0, 0
		for i, pe := range plan.Entries {
			it := items[i]
			size, sum, err := hashFile(filepath.Join(dir, filepath.FromSlash(pe.Target)))
			switch {
			case err != nil:
				source.AddProblem(&chk, &more, engine.FailureKindOf(err, engine.FailureRestore), fmt.Sprintf("object %q: %v", it.Object.Key, err))
			case size != it.Size || sum != it.SHA256:
				source.AddProblem(&chk, &more, engine.FailureRestore, fmt.Sprintf("object %q: restored file has %d bytes, SHA-256 %.16s…; the catalogue says %d bytes, %.16s…", it.Object.Key, size, sum, it.Size, it.SHA256))
			default:
				hashed++
			}
			if metas == nil {
				continue
			}
			got, ok := metas[pe.Target]
			a, _ := json.Marshal(got)
			b, _ := json.Marshal(*it.Object)
			switch {
			case !ok:
				source.AddProblem(&chk, &more, engine.FailureRestore, fmt.Sprintf("object %q: no metadata written beside the restored file", it.Object.Key))
			case !bytes.Equal(a, b):
				source.AddProblem(&chk, &more, engine.FailureRestore, fmt.Sprintf("object %q: restored metadata %s differs from the catalogue's %s", it.Object.Key, a, b))
			default:
				metaOK++
			}
		}
		chk.Checks = append(chk.Checks, fmt.Sprintf("%d file(s) re-read: size and SHA-256 match", hashed), fmt.Sprintf("metadata of %d object(s) matches the catalogue", metaOK))
		source.CloseProblems(&chk, more)
		out = append(out, chk)
	}
	return out, nil
}

func readDirIndex(path string) (map[string]manifest.ObjectMeta, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("the restore wrote no object index: %v", err)
	}
	defer f.Close()
	out := map[string]manifest.ObjectMeta{}
	dec := json.NewDecoder(bufio.NewReader(f))
	for {
		var de r2.DirEntry
		if err := dec.Decode(&de); err == io.EOF {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("object index %s: %v", filepath.Base(path), err)
		}
		out[de.Path] = de.ObjectMeta
	}
}

func hashFile(path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return n, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// doCounts is what one object's export holds, counted line by line.
type doCounts struct {
	KV, Tables, Rows, Schema, Sequences int64
}

// decodeDOItem reads one object's cfbackup-do/1 or /2 export: a header first, then kv/table/row/schema
// lines that each parse as JSON, and an end line last whose counts match the lines.
func decodeDOItem(r io.Reader) (doCounts, durableobject.End, error) {
	var c doCounts
	var end *durableobject.End
	br := bufio.NewReaderSize(r, 256<<10)
	for n := 0; ; n++ {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			if line[len(line)-1] != '\n' {
				return c, durableobject.End{}, fmt.Errorf("line %d is truncated (no newline)", n+1)
			}
			if end != nil {
				return c, *end, fmt.Errorf("line %d follows the end line", n+1)
			}
			var l struct {
				T      string `json:"t"`
				Format string `json:"format"`
			}
			if jerr := json.Unmarshal(line, &l); jerr != nil {
				return c, durableobject.End{}, fmt.Errorf("line %d does not parse as JSON: %v", n+1, jerr)
			}
			if n == 0 {
				if l.T != "header" || !durableobject.KnownFormat(l.Format) {
					return c, durableobject.End{}, fmt.Errorf("the export does not start with a %s or %s header", durableobject.Format, durableobject.FormatV1)
				}
				continue
			}
			switch l.T {
			case "kv":
				c.KV++
			case "table":
				c.Tables++
			case "row":
				c.Rows++
			case "schema":
				c.Schema++
			case "seq":
				c.Sequences++
			case "end":
				var e durableobject.End
				if jerr := json.Unmarshal(line, &e); jerr != nil {
					return c, e, fmt.Errorf("bad end line: %v", jerr)
				}
				end = &e
			default:
				return c, durableobject.End{}, fmt.Errorf("line %d has unknown type %q", n+1, l.T)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return c, durableobject.End{}, err
		}
	}
	if end == nil {
		return c, durableobject.End{}, errors.New("the export has no end line")
	}
	if c.KV != end.KV || c.Tables != end.Tables || c.Rows != end.Rows || c.Schema != end.Schema || c.Sequences != end.Sequences {
		return c, *end, fmt.Errorf("the export holds %d kv, %d table, %d row and %d schema line(s); its end line says %d, %d, %d, %d",
			c.KV, c.Tables, c.Rows, c.Schema, end.KV, end.Tables, end.Rows, end.Schema)
	}
	return c, *end, nil
}

// scratchWorkerURL checks that a test-restore's Workers runtime is local: test-restore must never
// write into the production Worker's objects.
func scratchWorkerURL(raw, production string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%w: scratch Worker URL %q: give the http://127.0.0.1:PORT address of a local runtime (wrangler dev, miniflare)", engine.ErrUsage, raw)
	}
	norm := func(s string) string { return strings.TrimRight(strings.TrimSpace(s), "/") }
	if production != "" && norm(raw) == norm(production) {
		return "", fmt.Errorf("%w: the scratch Worker URL is the production Worker (worker_url); test-restore imports only into a local runtime", engine.ErrRefused)
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); !(host == "localhost" || (ip != nil && ip.IsLoopback())) {
		return "", fmt.Errorf("%w: scratch Worker URL %s is not on this machine; test-restore imports only into a local runtime on a loopback address (127.0.0.1, ::1, localhost)", engine.ErrRefused, raw)
	}
	return norm(raw), nil
}

// testRestoreDO decodes every Durable Object of the snapshot (or a --sample of them), checking each
// item's SHA-256, that every line parses, and that the end line's counts match the lines and the
// catalogue; with a scratch Workers runtime it also imports them there, where the module's own
// counts are compared with the end line again.
func testRestoreDO(ctx context.Context, e *engine.Engine, m *manifest.Manifest, cat *manifest.Catalogue, o engine.TestRestoreOptions, scratch string) ([]engine.TestRestoreCheck, error) {
	if _, _, err := engine.ParseSample(o.Sample); err != nil {
		return nil, err
	}
	var client *durableobject.Client
	if o.ScratchWorkerURL != "" {
		var err error
		if client, err = durableobject.NewClient(o.ScratchWorkerURL, o.ScratchWorkerSecret); err != nil {
			return nil, fmt.Errorf("%w: scratch Worker: %v", engine.ErrUsage, err)
		}
	}
	open := durableobject.Opener(e.Opener(m, o.Identities))
	var out []engine.TestRestoreCheck
	for _, src := range engine.SourcesOf(m, durableobject.Component) {
		chk, more, items, err := source.SampleSource(cat, src, o.Sample, func(it manifest.Item) bool {
			return it.Component == durableobject.Component && it.Source == src.ID
		})
		if err != nil {
			return nil, err
		}
		var mu sync.Mutex
		decoded, imported := 0, 0
		var refused error
		work := make(chan manifest.Item)
		var wg sync.WaitGroup
		for w := 0; w < testRestoreConcurrency; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for it := range work {
					pkind, perr := checkDOItem(ctx, open, it)
					mu.Lock()
					if perr != nil {
						source.AddProblem(&chk, &more, pkind, fmt.Sprintf("object %s: %v", it.ObjectID, perr))
					} else {
						decoded++
					}
					skip := client == nil || perr != nil || refused != nil
					mu.Unlock()
					if skip || ctx.Err() != nil {
						continue
					}
					_, ierr := durableobject.RestoreObject(ctx, client, src.Class, it, open, durableobject.RestoreOptions{})
					mu.Lock()
					switch {
					case ierr == nil:
						imported++
					case errors.Is(ierr, durableobject.ErrNotFound) || errors.Is(ierr, durableobject.ErrAuth) || errors.Is(ierr, durableobject.ErrNotConfigured):
						// The runtime cannot take any object (foreign IDs, wrong secret): say so once.
						if refused == nil {
							refused = ierr
							source.AddProblem(&chk, &more, engine.FailureError, fmt.Sprintf("the scratch Worker refused the import: %v (it must be a local runtime of the same Worker and class; IDs minted by Cloudflare are bound to their namespace)", ierr))
						}
					default:
						source.AddProblem(&chk, &more, engine.FailureRestore, fmt.Sprintf("object %s: import into the scratch Worker: %v", it.ObjectID, ierr))
					}
					mu.Unlock()
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
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		chk.Checks = append(chk.Checks, "items' SHA-256", fmt.Sprintf("%d export(s) decoded: every line parses, end-line counts match the lines and the catalogue", decoded))
		if client != nil {
			chk.Checks = append(chk.Checks, fmt.Sprintf("%d imported into the scratch Worker with matching counts", imported))
		}
		source.CloseProblems(&chk, more)
		out = append(out, chk)
	}
	return out, nil
}

// checkDOItem decodes one object's item; the SHA-256 is checked when the item is closed. The kind
// says what a failure is: damage (the SHA-256, or an export that does not decode) or a read error.
func checkDOItem(ctx context.Context, open durableobject.Opener, it manifest.Item) (string, error) {
	rc, err := open(ctx, it.ItemRef)
	if err != nil {
		return engine.FailureKindOf(err, engine.FailureError), err
	}
	_, end, derr := decodeDOItem(rc)
	if derr != nil {
		// Read to the end so a damaged item reports its SHA-256 mismatch rather than a parse error.
		if _, cerr := io.Copy(io.Discard, rc); cerr != nil {
			rc.Close()
			return engine.FailureKindOf(cerr, engine.FailureError), cerr
		}
	}
	if cerr := rc.Close(); cerr != nil {
		return engine.FailureKindOf(cerr, engine.FailureError), cerr
	}
	if derr != nil {
		return engine.FailureIntegrity, derr
	}
	if end.KV+end.Rows != it.Rows {
		return engine.FailureIntegrity, fmt.Errorf("the end line counts %d kv and %d rows; the catalogue says %d in all", end.KV, end.Rows, it.Rows)
	}
	return "", nil
}
