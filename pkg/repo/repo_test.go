package repo_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/keys"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/local"
	"github.com/cfbackup/cfbackup/pkg/store/mem"
)

// stores gives each test the in-memory store and a real directory, so behaviour does not depend on
// one implementation's quirks.
func stores(t *testing.T) map[string]func() store.Store {
	return map[string]func() store.Store{
		"mem": func() store.Store { return mem.New() },
		"local": func() store.Store {
			st, err := local.New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return st
		},
	}
}

func newKey(t *testing.T) (*age.X25519Identity, string) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return id, id.Recipient().String()
}

func readAll(t *testing.T, st store.Store, key string) []byte {
	t.Helper()
	rc, err := st.Open(context.Background(), key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func put(t *testing.T, st store.Store, key, body string) {
	t.Helper()
	if err := st.Put(context.Background(), key, strings.NewReader(body), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestInitWritesConfigAndWriterSecret(t *testing.T) {
	ctx := context.Background()
	id, rcp := newKey(t)
	created := time.Date(2026, 11, 22, 8, 0, 0, 0, time.FixedZone("X", 3600))
	st := mem.New()
	r, secret, err := repo.Init(ctx, st, repo.InitOptions{Recipients: []string{"  " + rcp + "\n"}, Now: func() time.Time { return created }})
	if err != nil {
		t.Fatal(err)
	}
	if len(secret) != 32 {
		t.Errorf("writer secret is %d bytes", len(secret))
	}
	var cfg map[string]any
	if err := json.Unmarshal(readAll(t, st, repo.ConfigKey), &cfg); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"format": 2.0, "segment_size": float64(archive.DefaultSegmentSize), "chunk_size": float64(archive.DefaultChunkSize),
		"writer_key": "keys/writer.age", "created": "2026-11-22T07:00:00Z",
	} {
		if cfg[k] != want {
			t.Errorf("config.json %s = %v, want %v", k, cfg[k], want)
		}
	}
	if id, _ := cfg["id"].(string); len(id) != 32 {
		t.Errorf("config.json id = %q, want 32 hex digits", id)
	}
	rs, _ := cfg["recipients"].([]any)
	if len(rs) != 1 || rs[0].(map[string]any)["recipient"] != rcp || rs[0].(map[string]any)["fingerprint"] != keys.Fingerprint(rcp) {
		t.Errorf("config.json recipients = %v", cfg["recipients"])
	}
	if r.Config.Recipients[0].Recipient != rcp {
		t.Errorf("recipient not trimmed: %q", r.Config.Recipients[0].Recipient)
	}
	// keys/writer.age is an age file the identity opens, holding the secret as hex and a newline.
	dec, err := age.Decrypt(bytes.NewReader(readAll(t, st, repo.WriterKeyKey)), id)
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(dec)
	if string(plain) != hex.EncodeToString(secret)+"\n" {
		t.Errorf("writer.age holds %q", plain)
	}
	// Open reads back what Init wrote.
	o, err := repo.Open(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if o.Config.ID != r.Config.ID || o.Config.ChunkSize != r.Config.ChunkSize || len(o.Config.Recipients) != 1 {
		t.Errorf("Open = %+v, Init = %+v", o.Config, r.Config)
	}
	if _, err := o.Recipients(); err != nil {
		t.Errorf("Recipients of a fresh repository: %v", err)
	}
}

func TestInitRefusals(t *testing.T) {
	ctx := context.Background()
	_, rcp := newKey(t)
	for name, mk := range stores(t) {
		t.Run(name, func(t *testing.T) {
			st := mk()
			if _, _, err := repo.Init(ctx, st, repo.InitOptions{}); !errors.Is(err, repo.ErrNoRecipients) {
				t.Errorf("no recipients: %v", err)
			}
			if _, _, err := repo.Init(ctx, st, repo.InitOptions{Recipients: []string{"AGE-SECRET-KEY-1XYZ"}}); !errors.Is(err, repo.ErrBadRecipient) {
				t.Errorf("identity given as recipient: %v", err)
			}
			if err := st.List(ctx, "", func(oi store.ObjectInfo) error {
				t.Errorf("a refused init left %s", oi.Key)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			first, _, err := repo.Init(ctx, st, repo.InitOptions{Recipients: []string{rcp}})
			if err != nil {
				t.Fatal(err)
			}
			before := readAll(t, st, repo.ConfigKey)
			_, _, err = repo.Init(ctx, st, repo.InitOptions{Recipients: []string{rcp}})
			if !errors.Is(err, repo.ErrExists) {
				t.Fatalf("second init: %v, want ErrExists", err)
			}
			if !bytes.Equal(before, readAll(t, st, repo.ConfigKey)) {
				t.Errorf("second init changed config.json")
			}
			o, err := repo.Open(ctx, st)
			if err != nil || o.Config.ID != first.Config.ID {
				t.Errorf("after a refused init: %+v, %v", o, err)
			}
		})
	}
}

func TestOpenRefusals(t *testing.T) {
	ctx := context.Background()
	_, rcp := newKey(t)
	fp := keys.Fingerprint(rcp)
	rcpJSON := `[{"recipient":"` + rcp + `","fingerprint":"` + fp + `"}]`
	cases := []struct {
		name, config string // "" = no config.json
		want         error
	}{
		{"empty store", "", repo.ErrNotRepo},
		{"garbage", "this is not json", repo.ErrNotRepo},
		{"format 0", `{"format":0,"recipients":` + rcpJSON + `}`, repo.ErrNotRepo},
		{"no recipients", `{"format":1,"recipients":[]}`, repo.ErrNotRepo},
		{"format 3", `{"format":3,"recipients":` + rcpJSON + `}`, repo.ErrVersion},
		{"format 3, unknown shape", `{"format":3,"recipients":"moved to keys/"}`, repo.ErrNotRepo},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := mem.New()
			put(t, st, "snapshots/20260101T000000Z-0123456789abcdef.json", "{}") // not a config: ignored
			if c.config != "" {
				put(t, st, repo.ConfigKey, c.config)
			}
			r, err := repo.Open(ctx, st)
			if !errors.Is(err, c.want) {
				t.Fatalf("Open = %+v, %v; want %v", r, err, c.want)
			}
			if c.want == repo.ErrVersion && !strings.Contains(err.Error(), "upgrade") {
				t.Errorf("no upgrade hint: %v", err)
			}
		})
	}
	// A config written in a newer format with an otherwise readable shape is refused by version,
	// before anything looks at its fields.
	st := mem.New()
	put(t, st, repo.ConfigKey, `{"format":3,"recipients":`+rcpJSON+`,"chunk_size":1}`)
	if _, err := repo.Open(ctx, st); !errors.Is(err, repo.ErrVersion) {
		t.Errorf("format 3: %v", err)
	}
}

func TestRecipientsFailClosed(t *testing.T) {
	ctx := context.Background()
	_, rcp := newKey(t)
	_, other := newKey(t)
	st := mem.New()
	r, _, err := repo.Init(ctx, st, repo.InitOptions{Recipients: []string{rcp}})
	if err != nil {
		t.Fatal(err)
	}
	// Someone with write access to the store swaps in their own key but cannot fix the fingerprint
	// without it being visible; the swapped config must not be used for encryption.
	tampered := r.Config
	tampered.Recipients = []repo.Recipient{{Recipient: other, Fingerprint: r.Config.Recipients[0].Fingerprint}}
	bad := &repo.Repo{Store: st, Config: tampered}
	if rs, err := bad.Recipients(); err == nil {
		t.Fatalf("tampered recipient accepted: %v", rs)
	} else if !strings.Contains(err.Error(), "fingerprint") {
		t.Errorf("error does not say why: %v", err)
	}
	// An unparsable recipient with a matching fingerprint fails too.
	junk := "age1notarealkey"
	bad.Config.Recipients = []repo.Recipient{{Recipient: junk, Fingerprint: keys.Fingerprint(junk)}}
	if _, err := bad.Recipients(); err == nil {
		t.Errorf("unparsable recipient accepted")
	}
	// Case and white space do not change a fingerprint (Bech32 is case-insensitive).
	ok := &repo.Repo{Store: st, Config: r.Config}
	ok.Config.Recipients = []repo.Recipient{{Recipient: strings.ToUpper(rcp), Fingerprint: r.Config.Recipients[0].Fingerprint}}
	if _, err := ok.Recipients(); err != nil {
		t.Errorf("upper-case recipient: %v", err)
	}
}

// snap builds a minimal valid manifest.
func snap(id string, at time.Time, comps ...string) *manifest.Manifest {
	return &manifest.Manifest{Format: manifest.FormatVersion, ID: id, Time: at, Components: comps}
}

func TestSaveManifestIsConditional(t *testing.T) {
	ctx := context.Background()
	_, rcp := newKey(t)
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	for name, mk := range stores(t) {
		t.Run(name, func(t *testing.T) {
			r, _, err := repo.Init(ctx, mk(), repo.InitOptions{Recipients: []string{rcp}})
			if err != nil {
				t.Fatal(err)
			}
			m := snap("aaaa000000000001", t0, "d1")
			m.Host = "first"
			if err := r.SaveManifest(ctx, m); err != nil {
				t.Fatal(err)
			}
			m2 := snap("aaaa000000000001", t0, "d1")
			m2.Host = "second"
			if err := r.SaveManifest(ctx, m2); !errors.Is(err, store.ErrExists) {
				t.Fatalf("second SaveManifest: %v, want ErrExists", err)
			}
			got, err := r.FindSnapshot(ctx, "aaaa000000000001", "")
			if err != nil {
				t.Fatal(err)
			}
			if got.Host != "first" {
				t.Errorf("manifest was rewritten: host %q", got.Host)
			}
			if _, err := r.Store.Stat(ctx, "snapshots/20261122T100000Z-aaaa000000000001.json"); err != nil {
				t.Errorf("manifest not at its documented key: %v", err)
			}
		})
	}
}

func TestFindSnapshot(t *testing.T) {
	ctx := context.Background()
	_, rcp := newKey(t)
	st := mem.New()
	r, _, err := repo.Init(ctx, st, repo.InitOptions{Recipients: []string{rcp}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.FindSnapshot(ctx, "latest", ""); !errors.Is(err, repo.ErrSnapshotNotFound) {
		t.Fatalf("latest in an empty repository: %v", err)
	}
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	for _, m := range []*manifest.Manifest{
		snap("aaaa000000000001", t0, "d1"),
		snap("aaaa000000000002", t0.Add(time.Hour), "d1", "r2"),
		snap("bbbb000000000003", t0.Add(2*time.Hour), "r2"), // newest
	} {
		if err := r.SaveManifest(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	// Unreadable manifests: garbage, a newer format, and one whose id disagrees with its key.
	// They are older than every readable one: a newer unreadable one blocks "latest" (see
	// TestLatestNeverFallsBackPastUnreadable).
	put(t, st, "snapshots/20261122T070000Z-cccc000000000004.json", "{ truncated")
	put(t, st, "snapshots/20261122T080000Z-dddd000000000005.json", `{"format":4,"id":"dddd000000000005"}`)
	put(t, st, "snapshots/20261122T090000Z-eeee000000000006.json", `{"format":1,"id":"ffff000000000000"}`)
	put(t, st, "snapshots/README.txt", "not a manifest") // not .json: not listed at all

	snaps, bad, err := r.ListSnapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range snaps {
		ids = append(ids, m.ID)
	}
	if strings.Join(ids, ",") != "bbbb000000000003,aaaa000000000002,aaaa000000000001" {
		t.Errorf("ListSnapshots = %v (want newest first)", ids)
	}
	if len(bad) != 3 {
		t.Errorf("bad = %v, want the 3 unreadable manifests", bad)
	}
	if e := bad["snapshots/20261122T080000Z-dddd000000000005.json"]; !errors.Is(e, manifest.ErrVersion) {
		t.Errorf("newer-format manifest: %v", e)
	}
	if e := bad["snapshots/20261122T090000Z-eeee000000000006.json"]; !errors.Is(e, manifest.ErrFormat) {
		t.Errorf("id/key mismatch: %v", e)
	}

	cases := []struct {
		ref, comp, want string
		err             error
	}{
		{"latest", "", "bbbb000000000003", nil},
		{"", "", "bbbb000000000003", nil},
		{"latest", "d1", "aaaa000000000002", nil},
		{"latest", "r2", "bbbb000000000003", nil},
		{"latest", "do", "", repo.ErrSnapshotNotFound},
		{"aaaa000000000001", "", "aaaa000000000001", nil},
		{"bbbb", "", "bbbb000000000003", nil},
		{"aaaa0000000000", "", "", repo.ErrSnapshotNotFound}, // ambiguous
		{"aaaa", "", "", repo.ErrSnapshotNotFound},           // ambiguous
		{"bbb", "", "", repo.ErrSnapshotNotFound},            // prefixes need 4 characters
		{"9999", "", "", repo.ErrSnapshotNotFound},
	}
	for _, c := range cases {
		m, err := r.FindSnapshot(ctx, c.ref, c.comp)
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("FindSnapshot(%q, %q) = %v, %v; want %v", c.ref, c.comp, m, err, c.err)
			}
			continue
		}
		if err != nil || m.ID != c.want {
			t.Errorf("FindSnapshot(%q, %q) = %v, %v; want %s", c.ref, c.comp, m, err, c.want)
		}
	}
	if _, err := r.FindSnapshot(ctx, "aaaa", ""); err == nil || !strings.Contains(err.Error(), "ambiguous") {
		t.Errorf("ambiguous prefix error: %v", err)
	}
	// Asking for an unreadable snapshot by id says it is unreadable and why, instead of "not found".
	_, err = r.FindSnapshot(ctx, "dddd000000000005", "")
	if err == nil || errors.Is(err, repo.ErrSnapshotNotFound) || !errors.Is(err, manifest.ErrVersion) || !strings.Contains(err.Error(), "unusable") {
		t.Errorf("unreadable snapshot by id: %v", err)
	}
}

func TestFindLatestWhenAllUnreadable(t *testing.T) {
	ctx := context.Background()
	_, rcp := newKey(t)
	st := mem.New()
	r, _, err := repo.Init(ctx, st, repo.InitOptions{Recipients: []string{rcp}})
	if err != nil {
		t.Fatal(err)
	}
	put(t, st, "snapshots/20261122T130000Z-cccc000000000004.json", "{ truncated")
	_, err = r.FindSnapshot(ctx, "latest", "")
	if !errors.Is(err, repo.ErrSnapshotNotFound) || !strings.Contains(err.Error(), "unreadable") {
		t.Errorf("latest with only an unreadable manifest: %v (must mention it, not claim an empty repository)", err)
	}
}

func TestNewSnapshotID(t *testing.T) {
	a, b := repo.NewSnapshotID(), repo.NewSnapshotID()
	if len(a) != 16 || a == b || strings.ContainsAny(a, "-ABCDEF") {
		t.Errorf("NewSnapshotID = %q, %q", a, b)
	}
	if _, err := hex.DecodeString(a); err != nil {
		t.Errorf("not hex: %v", err)
	}
}
