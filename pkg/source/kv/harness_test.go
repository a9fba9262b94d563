package kv_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"

	"filippo.io/age"
	"github.com/spf13/pflag"

	"github.com/cfbackup/cfbackup/internal/cftest"
	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/source"
	"github.com/cfbackup/cfbackup/pkg/source/kv"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/mem"
)

// fx is an emulated account with KV namespaces, an in-memory repository and an engine.
type fx struct {
	srv    *cftest.Server
	cf     *cloudflare.Client
	st     store.Store
	rp     *repo.Repo
	eng    *engine.Engine
	ids    []age.Identity
	secret []byte
	stderr bytes.Buffer
}

func newFx(t testing.TB, opts cftest.Options) *fx {
	t.Helper()
	ctx := context.Background()
	srv, base := cftest.Start(t, opts)
	cf, err := cloudflare.New(cloudflare.Config{AccountID: srv.AccountID(), APIToken: "test-token", BaseURL: base + "/client/v4"})
	if err != nil {
		t.Fatal(err)
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	st := mem.New()
	rp, secret, err := repo.Init(ctx, st, repo.InitOptions{Recipients: []string{id.Recipient().String()}, SegmentSize: 8 << 20, ChunkSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return &fx{srv: srv, cf: cf, st: st, rp: rp, eng: &engine.Engine{Repo: rp, Tool: "test"}, ids: []age.Identity{id}, secret: secret}
}

// Env (source.Env) for the component.
func (f *fx) Cloudflare() (*cloudflare.Client, error) { return f.cf, nil }
func (f *fx) Setting(string) string                   { return "" }
func (f *fx) Log() *slog.Logger                       { return slog.New(slog.DiscardHandler) }
func (f *fx) Stderr() io.Writer                       { return &f.stderr }
func (f *fx) Interactive() bool                       { return false }

func (f *fx) backup(t testing.TB, args ...string) *manifest.Manifest {
	t.Helper()
	m, err := f.tryBackup(args...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (f *fx) tryBackup(args ...string) (*manifest.Manifest, error) {
	ctx := context.Background()
	c, err := source.New(kv.Component)
	if err != nil {
		return nil, err
	}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	c.Flags(source.VerbBackup, fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	plan, err := c.PlanBackup(ctx, f, source.BackupRequest{Repo: f.rp, WriterSecret: f.secret})
	if err != nil {
		return nil, err
	}
	return f.eng.Backup(ctx, plan, engine.BackupOptions{Components: plan.Components})
}

func (f *fx) restore(snapshot string, o engine.RestoreOptions, args ...string) (*engine.RestoreOutcome, error) {
	c, err := source.New(kv.Component)
	if err != nil {
		return nil, err
	}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	c.Flags(source.VerbRestore, fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	o.Snapshot, o.Identities, o.Notes = snapshot, f.ids, &f.stderr
	return f.eng.Restore(context.Background(), c, f, o)
}

// pairs reads a namespace's live pairs.
func (f *fx) pairs(t testing.TB, ns string) []cftest.KVPair {
	t.Helper()
	p, err := f.srv.KVPairs(ns)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// samePairs compares two pair lists value by value.
func samePairs(t testing.TB, got, want []cftest.KVPair) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d pairs, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Key != w.Key || !bytes.Equal(g.Value, w.Value) || g.Expiration != w.Expiration || !sameJSON(g.Metadata, w.Metadata) {
			t.Fatalf("pair %d:\n got  %q %x exp %d meta %s\n want %q %x exp %d meta %s", i, g.Key, trunc(g.Value), g.Expiration, g.Metadata,
				w.Key, trunc(w.Value), w.Expiration, w.Metadata)
		}
	}
}

func sameJSON(a, b []byte) bool {
	var x, y bytes.Buffer
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	if jsonCompact(&x, a) != nil || jsonCompact(&y, b) != nil {
		return bytes.Equal(a, b)
	}
	return bytes.Equal(x.Bytes(), y.Bytes())
}

func trunc(b []byte) []byte {
	if len(b) > 24 {
		return b[:24]
	}
	return b
}
