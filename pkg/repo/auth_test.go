package repo_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cfbackup/cfbackup/pkg/keys"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/seal"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/mem"
)

// forger holds what a bucket writer holds: the store, nothing else. Its helpers rewrite JSON objects
// the way such a person would, recomputing every unkeyed value (fingerprints, ids, keys).
type forger struct {
	t  *testing.T
	st store.Store
}

func (f forger) rewrite(key string, edit func(m map[string]any)) []byte {
	f.t.Helper()
	var m map[string]any
	if err := json.Unmarshal(readAll(f.t, f.st, key), &m); err != nil {
		f.t.Fatal(err)
	}
	edit(m)
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		f.t.Fatal(err)
	}
	return b
}

func (f forger) put(key string, b []byte) {
	f.t.Helper()
	put(f.t, f.st, key, string(b))
}

// newAuthRepo makes a format 2 repository with two snapshots and returns it with its writer secret.
func newAuthRepo(t *testing.T) (store.Store, []byte, string, []*manifest.Manifest) {
	t.Helper()
	ctx := context.Background()
	_, rcp := newKey(t)
	st := mem.New()
	r, secret, err := repo.Init(ctx, st, repo.InitOptions{Recipients: []string{rcp}})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	a := snap("aaaa000000000001", t0, "d1")
	a.Sources = []manifest.Source{{Component: "d1", ID: "db-billing", Name: "billing"}}
	b := snap("bbbb000000000002", t0.Add(time.Hour), "d1")
	b.Sources = []manifest.Source{{Component: "d1", ID: "db-users", Name: "users"}}
	for _, m := range []*manifest.Manifest{a, b} {
		if err := r.SaveManifest(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	return st, secret, rcp, []*manifest.Manifest{a, b}
}

func openAuth(t *testing.T, st store.Store, secret []byte) (*repo.Repo, error) {
	t.Helper()
	r, err := repo.Open(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	return r, r.Authenticate(secret, repo.AuthOptions{})
}

func TestConfigAndManifestsAuthenticate(t *testing.T) {
	ctx := context.Background()
	st, secret, _, _ := newAuthRepo(t)
	r, err := openAuth(t, st, secret)
	if err != nil {
		t.Fatalf("genuine repository does not authenticate: %v", err)
	}
	snaps, bad, err := r.ListSnapshots(ctx)
	if err != nil || len(bad) != 0 || len(snaps) != 2 {
		t.Fatalf("ListSnapshots = %d, bad %v, %v", len(snaps), bad, err)
	}
	for _, m := range snaps {
		if m.Auth != manifest.AuthOK || m.Format != manifest.FormatVersion {
			t.Errorf("snapshot %s: auth %q format %d", m.ID, m.Auth, m.Format)
		}
	}
	// Another repository's secret authenticates nothing here.
	_, other, _, _ := newAuthRepo(t)
	if _, err := openAuth(t, st, other); !errors.Is(err, repo.ErrUnauthenticated) || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("another repository's secret: %v", err)
	}
}

// A bucket writer swaps the recipient and recomputes its (unkeyed) fingerprint: a backup host with the
// writer secret refuses the configuration instead of encrypting to the attacker.
func TestRecipientSubstitutionRefused(t *testing.T) {
	st, secret, _, _ := newAuthRepo(t)
	_, evil := newKey(t)
	f := forger{t, st}
	f.put(repo.ConfigKey, f.rewrite(repo.ConfigKey, func(m map[string]any) {
		m["recipients"] = []map[string]string{{"recipient": evil, "fingerprint": keys.Fingerprint(evil)}}
	}))
	_, err := openAuth(t, st, secret)
	if !errors.Is(err, repo.ErrUnauthenticated) || !strings.Contains(err.Error(), repo.ConfigKey) {
		t.Fatalf("substituted recipient: %v, want ErrUnauthenticated naming config.json", err)
	}
	// Dropping the MAC does not help either.
	f.put(repo.ConfigKey, f.rewrite(repo.ConfigKey, func(m map[string]any) { delete(m, "mac") }))
	if _, err := openAuth(t, st, secret); !errors.Is(err, repo.ErrUnauthenticated) {
		t.Errorf("config without mac: %v", err)
	}
}

// Downgrading config.json to format 1 (which carries no MAC) makes the repository read-only, and a
// host that pins the key id refuses it outright.
func TestDowngradeRefused(t *testing.T) {
	st, secret, _, _ := newAuthRepo(t)
	_, evil := newKey(t)
	f := forger{t, st}
	f.put(repo.ConfigKey, f.rewrite(repo.ConfigKey, func(m map[string]any) {
		m["format"] = 1
		delete(m, "mac")
		m["recipients"] = []map[string]string{{"recipient": evil, "fingerprint": keys.Fingerprint(evil)}}
	}))
	r, err := openAuth(t, st, secret)
	if err != nil {
		t.Fatalf("format 1 without a pin reads as legacy: %v", err)
	}
	if err := r.RequireWritable("backup"); !errors.Is(err, repo.ErrLegacy) || !strings.Contains(err.Error(), "cfbackup migrate") {
		t.Errorf("writing into a (downgraded) format 1 repository: %v", err)
	}
	r2, _ := repo.Open(context.Background(), st)
	pin := seal.NewKey(secret).ID()
	if err := r2.Authenticate(secret, repo.AuthOptions{KeyID: pin}); !errors.Is(err, repo.ErrUnauthenticated) || !strings.Contains(err.Error(), "downgrade") {
		t.Errorf("pinned host, downgraded config: %v", err)
	}
}

func TestPinnedKeyID(t *testing.T) {
	st, secret, _, _ := newAuthRepo(t)
	r, _ := repo.Open(context.Background(), st)
	if err := r.Authenticate(secret, repo.AuthOptions{KeyID: seal.NewKey(secret).ID()}); err != nil {
		t.Fatalf("right pin: %v", err)
	}
	_, other, _, _ := newAuthRepo(t)
	r, _ = repo.Open(context.Background(), st)
	err := r.Authenticate(other, repo.AuthOptions{KeyID: seal.NewKey(secret).ID()})
	if !errors.Is(err, repo.ErrUnauthenticated) || !strings.Contains(err.Error(), "pins") {
		t.Errorf("a replaced writer secret under a pin: %v", err)
	}
}

// Forged, relabelled and replayed manifests: none authenticates, none becomes latest, and "latest"
// is refused rather than silently passing over them to an older snapshot.
func TestForgedManifestsNeverChosen(t *testing.T) {
	ctx := context.Background()
	st, secret, _, ms := newAuthRepo(t)
	a, b := ms[0], ms[1]
	f := forger{t, st}
	keyA, keyB := manifest.Key(a.Time, a.ID), manifest.Key(b.Time, b.ID)
	future := time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)
	// Replay: a's manifest under a new id and a 2099 time, its source renamed to b's database.
	forged := f.rewrite(keyA, func(m map[string]any) {
		m["id"] = "ffff000000000009"
		m["time"] = future.Format(time.RFC3339)
		m["sources"] = []map[string]any{{"component": "d1", "id": "db-users", "name": "users", "items": 0, "size": 0}}
	})
	forgedKey := manifest.Key(future, "ffff000000000009")
	f.put(forgedKey, forged)

	r, err := openAuth(t, st, secret)
	if err != nil {
		t.Fatal(err)
	}
	snaps, bad, err := r.ListSnapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 2 || !errors.Is(bad[forgedKey], repo.ErrUnauthenticated) {
		t.Fatalf("forged manifest listed as genuine: snaps %d, bad %v", len(snaps), bad)
	}
	_, err = r.FindSnapshot(ctx, "latest", "d1")
	if !errors.Is(err, repo.ErrNewerUnreadable) || !strings.Contains(err.Error(), forgedKey) {
		t.Errorf("latest with a forged future manifest: %v (must refuse, naming it)", err)
	}
	if _, err := r.FindSnapshotAt(ctx, future, "d1"); !errors.Is(err, repo.ErrNewerUnreadable) {
		t.Errorf("--at past a forged manifest: %v", err)
	}
	if _, err := r.FindSnapshot(ctx, "ffff000000000009", ""); !errors.Is(err, repo.ErrUnauthenticated) {
		t.Errorf("forged manifest by id: %v", err)
	}
	// Before the forged time, the genuine pick still works.
	if m, err := r.FindSnapshotAt(ctx, b.Time, "d1"); err != nil || m.ID != b.ID {
		t.Errorf("--at the genuine snapshot's time: %v, %v", m, err)
	}

	// Relabelling in place: b's own manifest with a's database name.
	f.put(keyB, f.rewrite(keyB, func(m map[string]any) {
		m["labels"] = map[string]string{"ticket": "OPS-1"}
	}))
	st.Delete(ctx, forgedKey)
	if _, err := r.FindSnapshot(ctx, b.ID, ""); !errors.Is(err, repo.ErrUnauthenticated) {
		t.Errorf("relabelled manifest by id: %v", err)
	}
	if _, err := r.FindSnapshot(ctx, "latest", ""); !errors.Is(err, repo.ErrNewerUnreadable) {
		t.Errorf("latest past a relabelled manifest: %v", err)
	}
}

// Without any key a format 2 repository can be listed (each manifest marked unchecked) but no
// snapshot can be chosen, and nothing can be written.
func TestNoKeyListsButNeverChooses(t *testing.T) {
	ctx := context.Background()
	st, _, _, _ := newAuthRepo(t)
	r, err := repo.Open(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	snaps, _, err := r.ListSnapshots(ctx)
	if err != nil || len(snaps) != 2 || snaps[0].Auth != manifest.AuthUnchecked {
		t.Fatalf("ListSnapshots without a key: %v, %v", snaps, err)
	}
	if _, err := r.FindSnapshot(ctx, "latest", ""); !errors.Is(err, repo.ErrNoKey) {
		t.Errorf("latest without a key: %v", err)
	}
	if err := r.SaveManifest(ctx, snap("cccc000000000003", time.Now(), "d1")); !errors.Is(err, repo.ErrNoKey) {
		t.Errorf("saving a manifest without a key: %v", err)
	}
}

func TestCheckRecipients(t *testing.T) {
	st, _, rcp, _ := newAuthRepo(t)
	r, _ := repo.Open(context.Background(), st)
	_, other := newKey(t)
	if err := r.CheckRecipients(nil); err != nil {
		t.Errorf("no pin: %v", err)
	}
	if err := r.CheckRecipients([]string{"# comment", strings.ToUpper(rcp)}); err != nil {
		t.Errorf("same recipient pinned: %v", err)
	}
	err := r.CheckRecipients([]string{other})
	if !errors.Is(err, repo.ErrUnauthenticated) || !strings.Contains(err.Error(), rcp) {
		t.Errorf("other recipient pinned: %v", err)
	}
	if err := r.CheckRecipients([]string{rcp, other}); !errors.Is(err, repo.ErrUnauthenticated) {
		t.Errorf("a pinned recipient missing from the repository: %v", err)
	}
}

// ListSnapshots keeps summaries only; LoadManifest (and FindSnapshot) bring back the catalogue.
func TestListDropsCatalogues(t *testing.T) {
	ctx := context.Background()
	st, secret, _, _ := newAuthRepo(t)
	r, _ := openAuth(t, st, secret)
	m := snap("cccc000000000003", time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC), "d1")
	m.Catalogue = strings.Repeat("QUFB", 1<<16)
	if err := r.SaveManifest(ctx, m); err != nil {
		t.Fatal(err)
	}
	snaps, _, _ := r.ListSnapshots(ctx)
	if snaps[0].ID != m.ID || snaps[0].Catalogue != "" || !snaps[0].Summary {
		t.Fatalf("listing kept the catalogue (%d bytes)", len(snaps[0].Catalogue))
	}
	full, err := r.FindSnapshot(ctx, "latest", "")
	if err != nil || full.Catalogue != m.Catalogue || full.Summary {
		t.Errorf("FindSnapshot did not load the whole manifest: %v", err)
	}
}
