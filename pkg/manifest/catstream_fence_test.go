package manifest

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// TestWriterFence: a writer records a fence only for keyed items of one source in strictly
// ascending key order.
func TestWriterFence(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	sorted := testItems(10, "k")
	d1 := Item{Component: "d1", Source: "db", Kind: "table", Table: "t"}
	other := sorted[3]
	other.Source = "c"
	cases := []struct {
		name  string
		items []Item
		want  *Fence
	}{
		{"sorted", sorted, &Fence{Component: "r2", Source: "b", First: "k/000000", Last: "k/000009"}},
		{"one", sorted[4:5], &Fence{Component: "r2", Source: "b", First: "k/000004", Last: "k/000004"}},
		{"descending", []Item{sorted[2], sorted[1]}, nil},
		{"repeated", []Item{sorted[1], sorted[1]}, nil},
		{"unkeyed", []Item{d1}, nil},
		{"unkeyed after keyed", []Item{sorted[0], d1}, nil},
		{"two sources", []Item{sorted[0], other, sorted[5]}, nil},
		{"empty", nil, nil},
		{"not UTF-8", []Item{sorted[0], {Component: "r2", Source: "b", Object: &ObjectMeta{Key: "k/1\xff"}}}, nil},
	}
	for _, tc := range cases {
		w, err := NewCatalogueWriter(io.Discard, []age.Recipient{id.Recipient()})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Add(tc.items...); err != nil {
			t.Fatal(err)
		}
		f, ok := w.Fence()
		switch {
		case tc.want == nil && ok:
			t.Errorf("%s: fence %+v, want none", tc.name, f)
		case tc.want != nil && (!ok || f != *tc.want):
			t.Errorf("%s: fence %+v (%v), want %+v", tc.name, f, ok, *tc.want)
		}
	}
}

// TestSelectionMayHold: which key ranges a selection of keys or a prefix meets.
func TestSelectionMayHold(t *testing.T) {
	f := &Fence{Component: "r2", Source: "b", First: "b/2", Last: "d/1"}
	cases := []struct {
		sel  Selection
		want bool
	}{
		{Selection{Prefix: ""}, true},
		{Selection{Prefix: "a"}, false},
		{Selection{Prefix: "b"}, true},   // First is under it
		{Selection{Prefix: "b/3"}, true}, // inside
		{Selection{Prefix: "b/1"}, false},
		{Selection{Prefix: "c"}, true},
		{Selection{Prefix: "d/1"}, true}, // Last itself
		{Selection{Prefix: "d/2"}, false},
		{Selection{Prefix: "e"}, false},
		{Selection{Keys: []string{"a", "e"}}, false},
		{Selection{Keys: []string{"e", "b/2"}}, true},
		{Selection{Keys: []string{"d/1"}}, true},
		{Selection{Keys: []string{"d/10"}}, false},
	}
	for _, tc := range cases {
		s := tc.sel
		s.Component, s.Source = "r2", "b"
		if got := s.sorted().mayHold(f); got != tc.want {
			t.Errorf("%+v: %v, want %v", tc.sel, got, tc.want)
		}
	}
	if (&Selection{Component: "r2", Source: "a"}).mayHold(f) || (&Selection{Component: "do", Source: "b"}).mayHold(f) {
		t.Error("a selection of another source or component meets the range")
	}
}

type openCounter struct {
	store.Store
	n atomic.Int64
}

func (c *openCounter) Open(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	c.n.Add(1)
	return c.Store.Open(ctx, key, off, n)
}

// fencedManifest stores three fenced objects of bucket b ("a/…", "b/…", "c/…") and one without a
// fence (bucket z's items, unsorted).
func fencedManifest(t *testing.T) (*Manifest, *openCounter, []age.Identity, age.Recipient) {
	st := &openCounter{Store: newStore(t)}
	id, _ := age.GenerateX25519Identity()
	rcp := id.Recipient()
	m := &Manifest{ID: "s1"}
	for _, tag := range []string{"a", "b", "c"} {
		items := testItems(100, tag)
		co := writeObject(t, st, "catalogue/s1-"+tag+".cat", rcp, items)
		var err error
		if co.Fence, err = SealFence(Fence{Component: "r2", Source: "b", First: items[0].Object.Key, Last: items[99].Object.Key}, []age.Recipient{rcp}); err != nil {
			t.Fatal(err)
		}
		m.CatalogueObjects = append(m.CatalogueObjects, co)
		m.Items += 100
	}
	z := testItems(5, "z")
	for i := range z {
		z[i].Source = "z"
	}
	z[0], z[4] = z[4], z[0]
	m.CatalogueObjects = append(m.CatalogueObjects, writeObject(t, st, "catalogue/s1-z.cat", rcp, z))
	m.Items += 5
	return m, st, []age.Identity{id}, rcp
}

// TestEachSelectedSkips: a selection reads the objects whose fences meet it and every unfenced one;
// the catalogue's own checks still hold on what is read.
func TestEachSelectedSkips(t *testing.T) {
	m, st, ids, _ := fencedManifest(t)
	cat := m.Stream(context.Background(), st, ids)
	cases := []struct {
		sel   *Selection
		opens int64
		items int
	}{
		{nil, 4, 305},
		{&Selection{Component: "r2", Source: "b", Keys: []string{"b/000050"}}, 2, 105},
		{&Selection{Component: "r2", Source: "b", Keys: []string{"c/000001", "a/000001"}}, 3, 205},
		{&Selection{Component: "r2", Source: "b", Prefix: "b/0000"}, 2, 105},
		{&Selection{Component: "r2", Source: "b", Prefix: "x"}, 1, 5},
		{&Selection{Component: "r2", Source: "z"}, 1, 5},
	}
	for _, tc := range cases {
		st.n.Store(0)
		n := 0
		if err := cat.EachSelected(tc.sel, func(Item) error { n++; return nil }); err != nil {
			t.Fatalf("%+v: %v", tc.sel, err)
		}
		if st.n.Load() != tc.opens || n != tc.items {
			t.Errorf("%+v: %d objects opened, %d items seen; want %d, %d", tc.sel, st.n.Load(), n, tc.opens, tc.items)
		}
	}
	// The identity check reads a fence, not an object.
	st.n.Store(0)
	if err := m.CheckIdentity(context.Background(), st, ids); err != nil || st.n.Load() != 0 {
		t.Fatalf("CheckIdentity: %v, %d objects opened", err, st.n.Load())
	}
	other, _ := age.GenerateX25519Identity()
	var nm *age.NoIdentityMatchError
	if err := m.CheckIdentity(context.Background(), st, []age.Identity{other}); !errors.As(err, &nm) {
		t.Fatalf("CheckIdentity with another identity: %v", err)
	}
	if err := m.Stream(context.Background(), st, []age.Identity{other}).EachSelected(&Selection{Component: "r2", Source: "b"}, func(Item) error { return nil }); !errors.As(err, &nm) {
		t.Fatalf("a selection with another identity: %v", err)
	}
}

// TestLyingFence: a fence that does not describe its object — narrower, shifted, of another source,
// or not a fence at all — is an integrity error when the object is read.
func TestLyingFence(t *testing.T) {
	lies := []struct {
		name string
		f    Fence
	}{
		{"ends early", Fence{Component: "r2", Source: "b", First: "b/000000", Last: "b/000060"}},
		{"starts late", Fence{Component: "r2", Source: "b", First: "b/000010", Last: "b/000099"}},
		{"wider", Fence{Component: "r2", Source: "b", First: "b/", Last: "b/1"}},
		{"other source", Fence{Component: "r2", Source: "z", First: "b/000000", Last: "b/000099"}},
	}
	for _, lie := range lies {
		m, st, ids, rcp := fencedManifest(t)
		var err error
		if m.CatalogueObjects[1].Fence, err = SealFence(lie.f, []age.Recipient{rcp}); err != nil {
			t.Fatal(err)
		}
		sel := &Selection{Component: lie.f.Component, Source: lie.f.Source, Keys: []string{"b/000050"}}
		err = m.EachSelected(context.Background(), st, ids, sel, nil, func(Item) error { return nil })
		if !errors.Is(err, archive.ErrIntegrity) || !strings.Contains(err.Error(), "key range") {
			t.Errorf("%s: %v, want an integrity error about the key range", lie.name, err)
		}
	}
	m, st, ids, _ := fencedManifest(t)
	m.CatalogueObjects[0].Fence = "bm90IGFnZQ=="
	err := m.EachSelected(context.Background(), st, ids, &Selection{Component: "r2", Source: "b"}, nil, func(Item) error { return nil })
	if !errors.Is(err, archive.ErrIntegrity) {
		t.Errorf("a fence that is not age: %v", err)
	}
}
