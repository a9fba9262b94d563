package r2

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

	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source"
)

// testRestoreConcurrency is how many objects a test-restore reads at once.
const testRestoreConcurrency = 4

// TestRestore restores every bucket's objects (or a --sample of them) into a scratch directory with
// the directory restore (each object's SHA-256 checked while it is read), then reads the files back:
// size and SHA-256 of each against the catalogue, and the metadata written beside them (content
// type, custom metadata, ETag) against the catalogue's. It never reads the bucket.
func (c *component) TestRestore(ctx context.Context, env source.Env, req source.TestRestoreRequest) ([]source.TestRestoreCheck, error) {
	if _, _, err := source.ParseSample(req.Sample); err != nil {
		return nil, err
	}
	var out []source.TestRestoreCheck
	for _, src := range source.SourcesOf(req.Snapshot, Component) {
		chk, err := testRestoreBucket(ctx, req, src)
		if err != nil {
			return nil, err
		}
		out = append(out, chk)
	}
	return out, nil
}

// testRestoreBucket restores one bucket's sample into Scratch/<bucket> and checks it.
func testRestoreBucket(ctx context.Context, req source.TestRestoreRequest, src manifest.Source) (source.TestRestoreCheck, error) {
	chk, more, items, err := source.SampleSource(req.Catalogue, src, req.Sample, req.Seed, func(it manifest.Item) bool {
		return it.Component == Component && it.Source == src.Name && it.Object != nil
	})
	if err != nil || len(items) == 0 {
		return chk, err
	}
	dir := filepath.Join(req.Scratch, src.Name)
	plan, err := PlanRestore(ctx, nil, items, Target{Dir: dir, Overwrite: OverwriteOverwrite})
	if err != nil {
		return chk, err
	}
	if _, err := Restore(ctx, nil, Opener(req.Open), plan, testRestoreConcurrency); err != nil {
		if ctx.Err() != nil {
			return chk, ctx.Err()
		}
		source.AddProblem(&chk, &more, source.ReadFailureKind(err, source.FailureRestore), err.Error())
		source.CloseProblems(&chk, more)
		return chk, nil
	}
	chk.Checks = append(chk.Checks, "objects' SHA-256 while reading")
	metas, err := readDirIndex(filepath.Join(dir, DirIndexName))
	if err != nil {
		source.AddProblem(&chk, &more, source.FailureRestore, err.Error())
	}
	hashed, metaOK := 0, 0
	for i, pe := range plan.Entries {
		it := items[i]
		if checkRestoredFile(&chk, &more, filepath.Join(dir, filepath.FromSlash(pe.Target)), it) {
			hashed++
		}
		if metas != nil && checkRestoredMeta(&chk, &more, metas, pe.Target, it) {
			metaOK++
		}
	}
	chk.Checks = append(chk.Checks, fmt.Sprintf("%d file(s) re-read: size and SHA-256 match", hashed), fmt.Sprintf("metadata of %d object(s) matches the catalogue", metaOK))
	source.CloseProblems(&chk, more)
	return chk, nil
}

// checkRestoredFile re-reads a restored file: its size and SHA-256 must be the catalogue's.
func checkRestoredFile(chk *source.TestRestoreCheck, more *source.Overflow, path string, it manifest.Item) bool {
	size, sum, err := hashFile(path)
	switch {
	case err != nil:
		source.AddProblem(chk, more, source.ReadFailureKind(err, source.FailureRestore), fmt.Sprintf("object %q: %v", it.Object.Key, err))
	case size != it.Size || sum != it.SHA256:
		source.AddProblem(chk, more, source.FailureRestore, fmt.Sprintf("object %q: restored file has %d bytes, SHA-256 %.16s…; the catalogue says %d bytes, %.16s…", it.Object.Key, size, sum, it.Size, it.SHA256))
	default:
		return true
	}
	return false
}

// checkRestoredMeta compares the metadata written beside a restored file with the catalogue's.
func checkRestoredMeta(chk *source.TestRestoreCheck, more *source.Overflow, metas map[string]manifest.ObjectMeta, path string, it manifest.Item) bool {
	got, ok := metas[path]
	a, _ := json.Marshal(got)
	b, _ := json.Marshal(*it.Object)
	switch {
	case !ok:
		source.AddProblem(chk, more, source.FailureRestore, fmt.Sprintf("object %q: no metadata written beside the restored file", it.Object.Key))
	case !bytes.Equal(a, b):
		source.AddProblem(chk, more, source.FailureRestore, fmt.Sprintf("object %q: restored metadata %s differs from the catalogue's %s", it.Object.Key, a, b))
	default:
		return true
	}
	return false
}

// readDirIndex reads the object index a directory restore writes (DirIndexName), by path.
func readDirIndex(path string) (map[string]manifest.ObjectMeta, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("the restore wrote no object index: %v", err)
	}
	defer f.Close()
	out := map[string]manifest.ObjectMeta{}
	dec := json.NewDecoder(bufio.NewReader(f))
	for {
		var de DirEntry
		if err := dec.Decode(&de); err == io.EOF {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("object index %s: %v", filepath.Base(path), err)
		}
		out[de.Path] = de.ObjectMeta
	}
}

// hashFile is a file's size and SHA-256.
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
