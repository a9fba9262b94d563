package manifest_test

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/manifest"
)

func newIdentity(t testing.TB) *age.X25519Identity {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func sampleCatalogue() *manifest.Catalogue {
	return &manifest.Catalogue{Items: []manifest.Item{
		{Component: "d1", Source: "uuid-1", Kind: "table", Table: "users", Rows: 3, ItemRef: archive.ItemRef{
			Name: "d1/uuid-1/tables/users.sql", Size: 120, SHA256: strings.Repeat("ab", 32),
			Chunks: []archive.Chunk{{Segment: "seg1", Offset: 0, Length: 90, Size: 120}},
		}},
		{Component: "d1", Source: "uuid-1", Kind: "schema", ItemRef: archive.ItemRef{
			Name: "d1/uuid-1/schema-live.sql", Size: 0, SHA256: strings.Repeat("cd", 32),
			Chunks: []archive.Chunk{{Segment: "seg1", Offset: 90, Length: 30, Size: 0}},
		}},
	}}
}

func sampleManifest() *manifest.Manifest {
	return &manifest.Manifest{
		Format:     manifest.FormatVersion,
		ID:         "0123456789abcdef",
		Time:       time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC),
		Duration:   manifest.Duration(1500 * time.Millisecond),
		Host:       "host",
		Components: []string{"d1"},
		Labels:     map[string]string{"ticket": "OPS-1"},
		Sources:    []manifest.Source{{Component: "d1", ID: "uuid-1", Name: "app", Items: 2, Size: 120, Tables: 1, Blocked: manifest.Duration(time.Second)}},
		Segments:   []archive.SegmentInfo{{ID: "seg1", Key: "segments/seg1.age", Size: 300, SHA256: strings.Repeat("ef", 32), PlainSize: 120}},
		Items:      2,
		Size:       120,
		StoredSize: 300,
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	m := sampleManifest()
	id := newIdentity(t)
	if err := m.SealCatalogue(sampleCatalogue(), []age.Recipient{id.Recipient()}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := m.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"duration": "1.5s"`) {
		t.Errorf("duration not written as a Go duration string:\n%s", buf.String())
	}
	got, err := manifest.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("round trip changed the manifest:\n got %+v\nwant %+v", got, m)
	}
}

func TestDecodeRefuses(t *testing.T) {
	cases := []struct {
		name, in string
		want     error
	}{
		{"empty", ``, manifest.ErrFormat},
		{"garbage", `not json at all`, manifest.ErrFormat},
		{"truncated", `{"format":1,"id":"ab`, manifest.ErrFormat},
		{"array", `[1,2,3]`, manifest.ErrFormat},
		{"null", `null`, manifest.ErrFormat},
		{"format 0", `{"format":0,"id":"0123456789abcdef"}`, manifest.ErrFormat},
		{"format missing", `{"id":"0123456789abcdef"}`, manifest.ErrFormat},
		{"format as string", `{"format":"1","id":"0123456789abcdef"}`, manifest.ErrFormat},
		{"id missing", `{"format":1}`, manifest.ErrFormat},
		{"bad duration", `{"format":1,"id":"0123456789abcdef","duration":"soon"}`, manifest.ErrFormat},
		{"format 4", `{"format":4,"id":"0123456789abcdef"}`, manifest.ErrVersion},
		{"format 4 with unknown fields", `{"format":4,"id":"0123456789abcdef","new_field":{"x":1}}`, manifest.ErrVersion},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := manifest.Decode(strings.NewReader(c.in))
			if !errors.Is(err, c.want) {
				t.Fatalf("Decode(%q) = %+v, %v; want %v", c.in, m, err, c.want)
			}
			if m != nil {
				t.Errorf("Decode returned a manifest with its error")
			}
			if c.want == manifest.ErrVersion && !strings.Contains(err.Error(), "upgrade") {
				t.Errorf("version error gives no upgrade hint: %v", err)
			}
		})
	}
}

func TestDecodeAcceptsUnknownFieldsOfSameMajor(t *testing.T) {
	// A minor addition by a newer writer of format 1 must not break this reader.
	m, err := manifest.Decode(strings.NewReader(`{"format":1,"id":"0123456789abcdef","future":[1],"segments":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != "0123456789abcdef" {
		t.Errorf("id = %q", m.ID)
	}
}

func TestSealOpenCatalogue(t *testing.T) {
	a, b := newIdentity(t), newIdentity(t)
	m := sampleManifest()
	want := sampleCatalogue()
	if err := m.SealCatalogue(want, []age.Recipient{a.Recipient(), b.Recipient()}); err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(m.Catalogue)
	if err != nil {
		t.Fatalf("catalogue is not standard base64: %v", err)
	}
	if !bytes.HasPrefix(raw, []byte("age-encryption.org/v1\n")) {
		t.Errorf("catalogue is not an age file: %q", raw[:min(len(raw), 30)])
	}
	if bytes.Contains(raw, []byte("users")) {
		t.Errorf("sealed catalogue shows a table name")
	}
	for _, id := range []age.Identity{a, b} {
		got, err := m.OpenCatalogue([]age.Identity{id})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("catalogue round trip:\n got %+v\nwant %+v", got, want)
		}
	}
	// The layers are exactly base64(age(gzip(JSON))): a stranger's reader gets the same JSON.
	dec, err := age.Decrypt(bytes.NewReader(raw), a)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(dec)
	if err != nil {
		t.Fatalf("age plaintext is not gzip: %v", err)
	}
	var js bytes.Buffer
	if _, err := js.ReadFrom(zr); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(js.String(), `{"items":[{"component":"d1","source":"uuid-1","kind":"table","table":"users","rows":3,"name":"d1/uuid-1/tables/users.sql"`) {
		t.Errorf("catalogue JSON = %s", js.String())
	}
}

func TestOpenCatalogueWrongIdentity(t *testing.T) {
	m := sampleManifest()
	if err := m.SealCatalogue(sampleCatalogue(), []age.Recipient{newIdentity(t).Recipient()}); err != nil {
		t.Fatal(err)
	}
	_, err := m.OpenCatalogue([]age.Identity{newIdentity(t)})
	var nm *age.NoIdentityMatchError
	if !errors.As(err, &nm) {
		t.Fatalf("wrong identity: %v, want an age.NoIdentityMatchError", err)
	}
	if !strings.Contains(err.Error(), m.ID) {
		t.Errorf("error does not name the snapshot: %v", err)
	}
}

// sealRaw encrypts arbitrary plaintext the way SealCatalogue does, to build broken catalogues.
func sealRaw(t *testing.T, r age.Recipient, plain []byte, gz bool) string {
	t.Helper()
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, r)
	if err != nil {
		t.Fatal(err)
	}
	if gz {
		zw := gzip.NewWriter(w)
		zw.Write(plain)
		zw.Close()
	} else {
		w.Write(plain)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

func TestOpenCatalogueBroken(t *testing.T) {
	id := newIdentity(t)
	good := sampleManifest()
	if err := good.SealCatalogue(sampleCatalogue(), []age.Recipient{id.Recipient()}); err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(good.Catalogue)
	flipped := bytes.Clone(raw)
	flipped[len(flipped)-5] ^= 1
	cases := []struct {
		name, cat string
		format    bool // must match ErrFormat
	}{
		{"empty", "", false},
		{"not base64", "%%%not base64%%%", true},
		{"base64 of non-age", base64.StdEncoding.EncodeToString([]byte("hello")), false},
		{"truncated", base64.StdEncoding.EncodeToString(raw[:len(raw)/2]), false},
		{"flipped byte", base64.StdEncoding.EncodeToString(flipped), false},
		{"age of non-gzip", sealRaw(t, id.Recipient(), []byte(`{"items":[]}`), false), true},
		{"age of gzip of non-JSON", sealRaw(t, id.Recipient(), []byte(`items: none`), true), true},
		{"age of gzip of wrong JSON shape", sealRaw(t, id.Recipient(), []byte(`{"items":{"a":1}}`), true), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := sampleManifest()
			m.Catalogue = c.cat
			cat, err := m.OpenCatalogue([]age.Identity{id})
			if err == nil {
				t.Fatalf("opened a broken catalogue: %+v", cat)
			}
			if c.format && !errors.Is(err, manifest.ErrFormat) {
				t.Errorf("error %v does not match ErrFormat", err)
			}
		})
	}
}

func TestKeyAndIDFromKey(t *testing.T) {
	tokyo := time.FixedZone("JST", 9*3600)
	at := time.Date(2026, 11, 22, 9, 30, 5, 999, tokyo)
	k := manifest.Key(at, "0123456789abcdef")
	if k != "snapshots/20261122T003005Z-0123456789abcdef.json" {
		t.Fatalf("Key = %q (must be UTC, second resolution)", k)
	}
	if id := manifest.IDFromKey(k); id != "0123456789abcdef" {
		t.Errorf("IDFromKey(%q) = %q", k, id)
	}
	// Keys sort by time as strings.
	if k2 := manifest.Key(at.Add(time.Hour), "0000000000000000"); k2 <= k {
		t.Errorf("later snapshot key %q sorts before %q", k2, k)
	}
	for _, bad := range []string{"", "snapshots/", "snapshots/x.txt", "config.json", "segments/ab.json", "snapshots/nodash.json", "other/20261122T003005Z-ab.json"} {
		if id := manifest.IDFromKey(bad); id != "" {
			t.Errorf("IDFromKey(%q) = %q, want empty", bad, id)
		}
	}
}

func TestDuration(t *testing.T) {
	var d manifest.Duration
	if err := d.UnmarshalJSON([]byte(`"2m3.5s"`)); err != nil || time.Duration(d) != 2*time.Minute+3500*time.Millisecond {
		t.Fatalf("UnmarshalJSON = %v, %v", time.Duration(d), err)
	}
	for _, bad := range []string{`123`, `"3 days"`, `null x`, `""`} {
		if err := d.UnmarshalJSON([]byte(bad)); err == nil {
			t.Errorf("UnmarshalJSON(%s) accepted", bad)
		}
	}
	b, _ := manifest.Duration(0).MarshalJSON()
	if string(b) != `"0s"` {
		t.Errorf("zero duration = %s", b)
	}
}

func TestHelpers(t *testing.T) {
	m := sampleManifest()
	if s, ok := m.SourceByName("d1", "app"); !ok || s.ID != "uuid-1" {
		t.Errorf("SourceByName(name) = %+v, %v", s, ok)
	}
	if _, ok := m.SourceByName("d1", "uuid-1"); !ok {
		t.Errorf("SourceByName(id) not found")
	}
	if _, ok := m.SourceByName("r2", "app"); ok {
		t.Errorf("SourceByName matched another component")
	}
	if seg, ok := m.SegmentMap()["seg1"]; !ok || seg.Key != "segments/seg1.age" {
		t.Errorf("SegmentMap = %+v", m.SegmentMap())
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ms := []*manifest.Manifest{{ID: "a", Time: t0}, {ID: "c", Time: t0.Add(time.Hour)}, {ID: "b", Time: t0}}
	manifest.SortNewestFirst(ms)
	if got := ms[0].ID + ms[1].ID + ms[2].ID; got != "cba" {
		t.Errorf("SortNewestFirst order = %s, want cba", got)
	}
}
