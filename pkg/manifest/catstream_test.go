package manifest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"testing"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/local"
)

func testItems(n int, tag string) []Item {
	out := make([]Item, n)
	for i := range out {
		k := fmt.Sprintf("%s/%06d", tag, i)
		out[i] = Item{Component: "r2", Source: "b", Kind: "object", Object: &ObjectMeta{Key: k, ETag: `"e"`},
			ItemRef: archive.ItemRef{Name: "r2/b/" + k, Size: int64(i), SHA256: "00"}}
	}
	return out
}

// writeObject seals items as one catalogue object and stores it under key; it returns what a
// manifest records of it.
func writeObject(t *testing.T, st store.Store, key string, rcp age.Recipient, items []Item) CatalogueObject {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewCatalogueWriter(&buf, []age.Recipient{rcp})
	if err != nil {
		t.Fatal(err)
	}
	for len(items) > 0 { // in uneven batches, as captures add them
		k := min(len(items), 1000+len(items)%777)
		if err := w.Add(items[:k]...); err != nil {
			t.Fatal(err)
		}
		items = items[k:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return putRaw(t, st, key, buf.Bytes(), w.Items())
}

func putRaw(t *testing.T, st store.Store, key string, b []byte, items int64) CatalogueObject {
	t.Helper()
	if err := st.Put(context.Background(), key, bytes.NewReader(b), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return CatalogueObject{Key: key, Items: items, Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])}
}

func collect(m *Manifest, st store.Store, ids []age.Identity) ([]Item, error) {
	var got []Item
	err := m.EachItem(context.Background(), st, ids, func(it Item) error {
		got = append(got, it)
		return nil
	})
	return got, err
}

func newStore(t *testing.T) store.Store {
	st, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestStreamedCatalogueRoundTrip: items written in batches across records and two objects come back
// in order through EachItem, Stream and (for small snapshots and tests) OpenCatalogue.
func TestStreamedCatalogueRoundTrip(t *testing.T) {
	st := newStore(t)
	id, _ := age.GenerateX25519Identity()
	a, b := testItems(2*RecordItems+5, "a"), testItems(3, "b")
	m := &Manifest{ID: "s1", Items: int64(len(a) + len(b))}
	m.CatalogueObjects = []CatalogueObject{writeObject(t, st, "catalogue/s1-0.cat", id.Recipient(), a), writeObject(t, st, "catalogue/s1-1.cat", id.Recipient(), b)}
	got, err := collect(m, st, []age.Identity{id})
	if err != nil {
		t.Fatal(err)
	}
	want := append(append([]Item{}, a...), b...)
	if len(got) != len(want) {
		t.Fatalf("%d items, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Object.Key != want[i].Object.Key || got[i].Size != want[i].Size {
			t.Fatalf("item %d: %s, want %s", i, got[i].Object.Key, want[i].Object.Key)
		}
	}
	n := 0
	if err := m.Stream(context.Background(), st, []age.Identity{id}).Each(func(Item) error { n++; return nil }); err != nil || n != len(want) {
		t.Fatalf("Stream: %d items, %v", n, err)
	}
	m.SetStore(st)
	c, err := m.OpenCatalogue([]age.Identity{id})
	if err != nil || len(c.Items) != len(want) {
		t.Fatalf("OpenCatalogue: %v", err)
	}
	stop := errors.New("enough")
	if err := m.EachItem(context.Background(), st, []age.Identity{id}, func(Item) error { return stop }); err != stop {
		t.Fatalf("an error of fn comes back as it is, got %v", err)
	}
	other, _ := age.GenerateX25519Identity()
	var nm *age.NoIdentityMatchError
	if _, err := collect(m, st, []age.Identity{other}); !errors.As(err, &nm) {
		t.Fatalf("wrong identity: %v, want a NoIdentityMatchError (a key error, not damage)", err)
	}
	if err := m.CheckIdentity(context.Background(), st, []age.Identity{other}); !errors.As(err, &nm) {
		t.Fatalf("CheckIdentity with the wrong identity: %v", err)
	}
}

// records re-encrypts plaintext records (each u32be(len) ‖ gzip JSON) into an age file.
func sealPlain(t *testing.T, rcp age.Recipient, plain []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, rcp)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(plain)
	w.Close()
	return buf.Bytes()
}

func plainOf(t *testing.T, id age.Identity, b []byte) []byte {
	t.Helper()
	r, err := age.Decrypt(bytes.NewReader(b), id)
	if err != nil {
		t.Fatal(err)
	}
	p, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestStreamedCatalogueTampering: whatever is done to a catalogue object — swapped for another
// snapshot's, cut short, its records reordered (a valid age file: anyone with the public recipient
// can make one), a wrong item count, a record too large — reading it fails with an integrity error
// (exit 6), never with items quietly missing or added.
func TestStreamedCatalogueTampering(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	id, _ := age.GenerateX25519Identity()
	ids := []age.Identity{id}
	items := testItems(RecordItems+10, "a")
	good := writeObject(t, st, "catalogue/s1-0.cat", id.Recipient(), items)
	other := writeObject(t, st, "catalogue/s2-0.cat", id.Recipient(), testItems(RecordItems+10, "z"))
	raw := func(key string) []byte {
		rc, err := st.Open(ctx, key, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		b, _ := io.ReadAll(rc)
		return b
	}
	orig := raw(good.Key)
	plain := plainOf(t, id, orig)
	l0 := binary.BigEndian.Uint32(plain)
	rec0, rec1 := plain[:4+l0], plain[4+l0:]
	cases := []struct {
		name  string
		setup func() *Manifest
	}{
		{"swapped for another snapshot's object", func() *Manifest {
			putRaw(t, st, good.Key, raw(other.Key), 0)
			return &Manifest{ID: "s1", Items: good.Items, CatalogueObjects: []CatalogueObject{good}}
		}},
		{"truncated", func() *Manifest {
			putRaw(t, st, good.Key, orig[:len(orig)-100], 0)
			return &Manifest{ID: "s1", Items: good.Items, CatalogueObjects: []CatalogueObject{good}}
		}},
		{"records reordered", func() *Manifest {
			putRaw(t, st, good.Key, sealPlain(t, id.Recipient(), append(append([]byte{}, rec1...), rec0...)), 0)
			return &Manifest{ID: "s1", Items: good.Items, CatalogueObjects: []CatalogueObject{good}}
		}},
		{"object's item count wrong", func() *Manifest {
			putRaw(t, st, good.Key, orig, 0)
			co := good
			co.Items--
			return &Manifest{ID: "s1", Items: co.Items, CatalogueObjects: []CatalogueObject{co}}
		}},
		{"manifest's item count wrong", func() *Manifest {
			putRaw(t, st, good.Key, orig, 0)
			return &Manifest{ID: "s1", Items: good.Items + 1, CatalogueObjects: []CatalogueObject{good}}
		}},
		{"record length beyond the bound (recorded hash matches)", func() *Manifest {
			bad := sealPlain(t, id.Recipient(), []byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3})
			co := putRaw(t, st, "catalogue/s3-0.cat", bad, 1)
			return &Manifest{ID: "s3", Items: 1, CatalogueObjects: []CatalogueObject{co}}
		}},
		{"not an age file (recorded hash matches)", func() *Manifest {
			co := putRaw(t, st, "catalogue/s4-0.cat", []byte("hello"), 1)
			return &Manifest{ID: "s4", Items: 1, CatalogueObjects: []CatalogueObject{co}}
		}},
		{"inline and streamed both", func() *Manifest {
			putRaw(t, st, good.Key, orig, 0)
			return &Manifest{ID: "s1", Items: good.Items, Catalogue: "x", CatalogueObjects: []CatalogueObject{good}}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := c.setup()
			_, err := collect(m, st, ids)
			if err == nil {
				t.Fatal("read without an error")
			}
			if c.name == "inline and streamed both" {
				if !errors.Is(err, ErrFormat) {
					t.Fatalf("%v, want ErrFormat", err)
				}
				return
			}
			if !errors.Is(err, errclass.Integrity) {
				t.Fatalf("%v, want an integrity error (exit 6)", err)
			}
		})
	}
}

// FuzzCatalogueRecords: the record reader never panics, never hands over more than RecordItems items
// at once, and refuses what it cannot bound.
func FuzzCatalogueRecords(f *testing.F) {
	var buf bytes.Buffer
	id, _ := age.GenerateX25519Identity()
	w, _ := NewCatalogueWriter(&buf, []age.Recipient{id.Recipient()})
	w.Add(testItems(3, "f")...)
	w.Close()
	r, _ := age.Decrypt(&buf, id)
	plain, _ := io.ReadAll(r)
	f.Add(plain)
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0, 0, 0, 5, 0x1f, 0x8b, 8, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = readRecords(bytes.NewReader(b), func(items []Item) error {
			if len(items) == 0 || len(items) > RecordItems {
				t.Fatalf("a record of %d items", len(items))
			}
			return nil
		})
	})
}
