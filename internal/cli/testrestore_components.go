package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source"
	"github.com/cfbackup/cfbackup/pkg/source/r2"
)

// The R2 test restorer lives on the CLI side because its source imports the engine (an engine-side
// registration would be an import cycle).
func init() {
	engine.TestRestorers[r2.Component] = testRestoreR2
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
