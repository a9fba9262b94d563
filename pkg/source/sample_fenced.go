package source

import (
	"fmt"

	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/manifest"
)

// sampleFenced takes a source's --sample with work bounded by the sample, not the catalogue: when
// every item of the source is in fenced catalogue objects (an R2 bucket's objects, written in key
// order: docs/FORMAT.md "Streamed catalogue") whose item counts add up to the manifest's count for
// it, n positions are drawn uniformly among those items (Floyd, seeded as Rand), each position falls
// in one object by the objects' counts (so an object is chosen with a weight of its item count), and
// only the objects holding a drawn position are read — each checked as every catalogue read is
// (size, SHA-256, item count, fence). ok is false when the catalogue offers no such layout (inline,
// unfenced, or counts that do not add up): the caller reads the whole catalogue instead.
func sampleFenced(cat *manifest.Catalogue, src manifest.Source, sample string, seed uint64, mine func(manifest.Item) bool) (items []manifest.Item, note string, ok bool, err error) {
	layout, streamed, err := cat.Layout()
	if err != nil || !streamed {
		return nil, "", false, err
	}
	var objs []int
	var total int64
	for i, l := range layout {
		if l.Fenced && l.Component == src.Component && (l.Source == src.ID || l.Source == src.Name) {
			objs = append(objs, i)
			total += l.Items
		}
	}
	if len(objs) == 0 || total != src.Items || total > int64(maxInt) {
		return nil, "", false, nil
	}
	n, err := sampleSize(int(total), sample)
	if err != nil {
		return nil, "", true, err
	}
	pos := samplePositions(int(total), n, Rand(seed, src.Component+"/"+src.Name))
	// want[o] are the drawn positions inside object objs[o], as indexes within it, ascending.
	want := map[int][]int64{}
	var read []int
	var off int64
	p := 0
	for _, o := range objs {
		end := off + layout[o].Items
		for p < len(pos) && int64(pos[p]) < end {
			if len(want[o]) == 0 {
				read = append(read, o)
			}
			want[o] = append(want[o], int64(pos[p])-off)
			p++
		}
		off = end
	}
	items = make([]manifest.Item, 0, n)
	cur, at, next := -1, int64(0), 0
	err = cat.EachInObjects(read, func(o int, it manifest.Item) error {
		if o != cur {
			cur, at, next = o, 0, 0
		}
		if next < len(want[o]) && want[o][next] == at {
			if !mine(it) {
				return fmt.Errorf("%w: catalogue object %d holds an item that is not of %s %s, though its fence says so", errclass.Integrity, o, src.Component, src.Name)
			}
			items = append(items, it)
			next++
		}
		at++
		return nil
	})
	if err != nil {
		return nil, "", true, err
	}
	if len(items) != n {
		return nil, "", true, fmt.Errorf("%w: %d of %d sampled items found in the catalogue objects that should hold them", errclass.Integrity, len(items), n)
	}
	note = fmt.Sprintf("%s (%d of %d catalogue object(s) read)", SampleNote(n, int(total)), len(read), len(layout))
	if n < int(total) {
		note = fmt.Sprintf("%s (seed %d; %d of %d catalogue object(s) read)", SampleNote(n, int(total)), seed, len(read), len(layout))
	}
	return items, note, true, nil
}

const maxInt = int(^uint(0) >> 1)
