package r2_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"filippo.io/age"
	"github.com/spf13/pflag"

	"github.com/cfbackup/cfbackup/internal/testutil/s3server"
	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/source"
	"github.com/cfbackup/cfbackup/pkg/source/r2"
	"github.com/cfbackup/cfbackup/pkg/store"
	s3store "github.com/cfbackup/cfbackup/pkg/store/s3"
)

// catGets counts the GET requests for catalogue objects that reach the S3 server.
type catGets struct {
	rt http.RoundTripper
	n  atomic.Int64
}

func (c *catGets) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/catalogue/") {
		c.n.Add(1)
	}
	return c.rt.RoundTrip(req)
}

// quietEnv is the source.Env of a directory restore: no settings, no API.
type quietEnv struct{}

func (quietEnv) Cloudflare() (*cloudflare.Client, error) {
	return nil, errors.New("no API in this test")
}
func (quietEnv) Setting(string) string { return "" }
func (quietEnv) Log() *slog.Logger     { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
func (quietEnv) Stderr() io.Writer     { return io.Discard }
func (quietEnv) Interactive() bool     { return false }

func seekKey(i int) string { return fmt.Sprintf("img/%07d.png", i) }

// seekRepo writes, on the real S3 server, a snapshot of one bucket of n objects whose catalogue
// items all point at one stored 16-byte item: the catalogue is as large as n objects make it.
func seekRepo(t *testing.T, n int) (*repo.Repo, *catGets, []age.Identity, *manifest.Manifest) {
	t.Helper()
	ctx := context.Background()
	srv := s3server.Start(t)
	srv.CreateBucket(t, "repo", false)
	cg := &catGets{rt: http.DefaultTransport}
	st, err := s3store.New(ctx, s3store.Config{Bucket: "repo", Endpoint: srv.Endpoint, Region: srv.Region, AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey, HTTPClient: &http.Client{Transport: cg}})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := age.GenerateX25519Identity()
	rp, _, err := repo.Init(ctx, st, repo.InitOptions{Recipients: []string{id.Recipient().String()}})
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("sixteen bytes!!\n")
	plan := &engine.BackupPlan{Components: []string{r2.Component}}
	plan.AddCapture(engine.Capture{Component: r2.Component, Name: "b", Run: func(ctx context.Context, s *engine.Session) error {
		p, err := s.Writer.WriteItemAsync(r2.ItemName("b", "shared"), bytes.NewReader(data))
		if err != nil {
			return err
		}
		ref, err := p.Wait()
		if err != nil {
			return err
		}
		batch := make([]manifest.Item, 0, 1000)
		for i := range n {
			batch = append(batch, manifest.Item{Component: r2.Component, Source: "b", Kind: "object",
				Object: &manifest.ObjectMeta{Key: seekKey(i), ETag: `"e"`}, ItemRef: ref})
			if len(batch) == cap(batch) || i == n-1 {
				s.AddItems(batch...)
				batch = batch[:0]
			}
		}
		s.AddSource(manifest.Source{Component: r2.Component, ID: "b", Name: "b", Items: int64(n), Size: int64(n * len(data))})
		return nil
	}})
	m, err := (&engine.Engine{Repo: rp, Tool: "test"}).Backup(ctx, plan, engine.BackupOptions{Components: plan.Components})
	if err != nil {
		t.Fatal(err)
	}
	return rp, cg, []age.Identity{id}, m
}

// restoreDir restores --key keys (or --prefix) of bucket b from the newest snapshot into dir.
func restoreDir(rp *repo.Repo, ids []age.Identity, dir, prefix string, keys ...string) error {
	comp := r2.NewComponent()
	fs := pflag.NewFlagSet("restore", pflag.ContinueOnError)
	fs.String("to-dir", dir, "")
	fs.String("prefix", prefix, "")
	comp.Flags(source.VerbRestore, fs)
	var args []string
	for _, k := range keys {
		args = append(args, "--key", k)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := comp.(source.FlagChecker).CheckFlags(source.VerbRestore, fs); err != nil {
		return err
	}
	_, err := (&engine.Engine{Repo: rp, Tool: "test"}).Restore(context.Background(), comp, quietEnv{},
		engine.RestoreOptions{Snapshot: "latest", Identities: ids, ToDir: dir, Prefix: prefix, Yes: true})
	return err
}

// TestRestoreOneKeyReadsOneCatalogueObject: a snapshot whose catalogue spans several objects records
// each object's key range, and a restore of one key (or a narrow prefix) fetches only the object whose
// range holds it; a manifest whose range lies about its object is refused as damage (exit 6).
func TestRestoreOneKeyReadsOneCatalogueObject(t *testing.T) {
	n := 2*manifest.ObjectItems + 1000
	rp, cg, ids, m := seekRepo(t, n)
	if len(m.CatalogueObjects) != 3 {
		t.Fatalf("%d catalogue objects for %d items, want 3", len(m.CatalogueObjects), n)
	}
	for i, co := range m.CatalogueObjects {
		f, err := co.OpenFence(ids)
		if err != nil || f == nil {
			t.Fatalf("object %d: fence %v, %v", i, f, err)
		}
		if want := seekKey(i * manifest.ObjectItems); f.First != want || f.Source != "b" {
			t.Fatalf("object %d: fence %+v, want first %s", i, f, want)
		}
		if strings.Contains(co.Fence, "img/") {
			t.Fatal("a fence holds a key in plaintext")
		}
	}
	key := seekKey(manifest.ObjectItems + 17)
	dir := t.TempDir()
	cg.n.Store(0)
	if err := restoreDir(rp, ids, dir, "", key); err != nil {
		t.Fatal(err)
	}
	if got := cg.n.Load(); got != 1 {
		t.Fatalf("restore of one key fetched %d catalogue objects, want 1", got)
	}
	if b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(key))); err != nil || string(b) != "sixteen bytes!!\n" {
		t.Fatalf("restored %q: %q %v", key, b, err)
	}
	// A prefix inside the last object, and one across the first two.
	cg.n.Store(0)
	if err := restoreDir(rp, ids, t.TempDir(), seekKey(2*manifest.ObjectItems + 10)[:10]); err != nil {
		t.Fatal(err)
	}
	if got := cg.n.Load(); got != 1 {
		t.Fatalf("restore of a prefix inside one object fetched %d catalogue objects, want 1", got)
	}
	cg.n.Store(0)
	if err := restoreDir(rp, ids, t.TempDir(), "", seekKey(3), seekKey(manifest.ObjectItems+3), "img/none"); !errors.Is(err, r2.ErrNotInSnapshot) {
		t.Fatalf("a key in no object: %v", err)
	}
	if got := cg.n.Load(); got != 2 {
		t.Fatalf("restore of keys in two objects fetched %d catalogue objects, want 2", got)
	}

	// The middle object's fence lies: it claims to end before its last key. The manifest is sealed
	// again with the writer secret, as only a writer (or a bug) could: the reader still refuses it.
	rcp, _ := age.ParseX25519Recipient(ids[0].(*age.X25519Identity).Recipient().String())
	lie, err := manifest.SealFence(manifest.Fence{Component: r2.Component, Source: "b", First: seekKey(manifest.ObjectItems), Last: seekKey(manifest.ObjectItems + 100)}, []age.Recipient{rcp})
	if err != nil {
		t.Fatal(err)
	}
	m.CatalogueObjects[1].Fence = lie
	if err := rp.Seal(m); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := m.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	if err := rp.Store.Put(context.Background(), manifest.Key(m.Time, m.ID), &buf, store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	err = restoreDir(rp, ids, t.TempDir(), "", seekKey(manifest.ObjectItems+17))
	if !errors.Is(err, archive.ErrIntegrity) || !errors.Is(err, errclass.Integrity) {
		t.Fatalf("a lying fence: %v, want an integrity error (exit 6)", err)
	}
}
