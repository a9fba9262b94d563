package source

import (
	"context"
	"fmt"
	"testing"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/store/local"
)

func keyed(source string, from, n int) []manifest.Item {
	out := make([]manifest.Item, n)
	for i := range out {
		out[i] = manifest.Item{Component: "r2", Source: source, Kind: "object", Object: &manifest.ObjectMeta{Key: fmt.Sprintf("k/%07d", from+i)}}
	}
	return out
}

// TestSpoolCutsObjects: the spool cuts an object at manifest.ObjectItems and where a bucket's run of
// objects begins or ends (not between two D1 sources), and fences exactly the sorted runs; the
// objects read back in order through the manifest.
func TestSpoolCutsObjects(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	sp, err := NewCatalogueSpool([]age.Recipient{id.Recipient()})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Remove()
	d1 := func(src string) manifest.Item {
		return manifest.Item{Component: "d1", Source: src, Kind: "table", Table: "t"}
	}
	unsorted := keyed("c", 0, 3)
	unsorted[0], unsorted[2] = unsorted[2], unsorted[0]
	var all []manifest.Item
	for _, batch := range [][]manifest.Item{
		{d1("x"), d1("y")},                     // object 0: D1 of two sources, no fence
		keyed("a", 0, manifest.ObjectItems-5),  // object 1: bucket a, cut at ObjectItems
		keyed("a", manifest.ObjectItems-5, 10), // … object 2 takes the last 5
		keyed("b", 0, 7),                       // object 3: bucket b
		unsorted,                               // object 4: bucket c, unsorted: no fence
		{d1("z")},                              // object 5
	} {
		if err := sp.Add(batch...); err != nil {
			t.Fatal(err)
		}
		all = append(all, batch...)
	}
	st, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cos, err := sp.Store(context.Background(), st, func(i int) string { return fmt.Sprintf("catalogue/s-%d.cat", i) })
	if err != nil {
		t.Fatal(err)
	}
	wantItems := []int64{2, manifest.ObjectItems, 5, 7, 3, 1}
	wantFence := []string{"", "a k/0000000 k/0065535", "a k/0065536 k/0065540", "b k/0000000 k/0000006", "", ""}
	if len(cos) != len(wantItems) {
		t.Fatalf("%d objects, want %d", len(cos), len(wantItems))
	}
	for i, co := range cos {
		f, err := co.OpenFence([]age.Identity{id})
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		if f != nil {
			got = f.Source + " " + f.First + " " + f.Last
		}
		if co.Items != wantItems[i] || got != wantFence[i] {
			t.Errorf("object %d: %d items, fence %q; want %d, %q", i, co.Items, got, wantItems[i], wantFence[i])
		}
	}
	m := &manifest.Manifest{ID: "s", Items: int64(len(all)), CatalogueObjects: cos}
	n := 0
	err = m.EachItem(context.Background(), st, []age.Identity{id}, func(it manifest.Item) error {
		if it.Source != all[n].Source || it.Table != all[n].Table || (it.Object == nil) != (all[n].Object == nil) || it.Object != nil && it.Object.Key != all[n].Object.Key {
			return fmt.Errorf("item %d differs", n)
		}
		n++
		return nil
	})
	if err != nil || n != len(all) || sp.Items() != int64(len(all)) {
		t.Fatalf("read back %d of %d items (spool says %d): %v", n, len(all), sp.Items(), err)
	}
}
