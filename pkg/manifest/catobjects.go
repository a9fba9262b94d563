package manifest

import (
	"context"
	"fmt"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/store"
)

// ObjectLayout is what a reader knows of one catalogue object without reading it: its item count
// (covered by the manifest's MAC) and, when it is fenced, the component and source all its items
// belong to (from its sealed fence, which the object's items are held to when it is read).
type ObjectLayout struct {
	Items             int64
	Fenced            bool
	Component, Source string
}

// objectReader reads chosen objects of a streamed catalogue (Manifest.Stream).
type objectReader struct {
	ctx    context.Context
	st     store.Store
	ids    []age.Identity
	m      *Manifest
	fences func() ([]*Fence, error)
}

// Layout lists the catalogue's objects in order (ObjectLayout), opening their fences (no request:
// fences are in the manifest). ok is false for a catalogue not read from side objects (an inline
// catalogue, one held in memory): such a reader has nothing to pick from.
func (c *Catalogue) Layout() (layout []ObjectLayout, ok bool, err error) {
	if c.objects == nil {
		return nil, false, nil
	}
	fs, err := c.objects.fences()
	if err != nil {
		return nil, true, err
	}
	out := make([]ObjectLayout, len(c.objects.m.CatalogueObjects))
	for i, co := range c.objects.m.CatalogueObjects {
		out[i].Items = co.Items
		if i < len(fs) && fs[i] != nil {
			out[i].Fenced, out[i].Component, out[i].Source = true, fs[i].Component, fs[i].Source
		}
	}
	return out, true, nil
}

// EachInObjects calls fn with every item of the catalogue objects numbered objs (indexes into
// Layout, ascending), in order, and nothing else: each object is read as EachItem reads it — its
// size, SHA-256 and item count checked against the manifest, its items held to its fence. fn sees an
// object's items before its end is checked: act on them only once EachInObjects returned nil.
func (c *Catalogue) EachInObjects(objs []int, fn func(obj int, it Item) error) error {
	if c.objects == nil {
		return fmt.Errorf("catalogue is not read from side objects: nothing to pick from")
	}
	r := c.objects
	fs, err := r.fences()
	if err != nil {
		return err
	}
	last := -1
	for _, i := range objs {
		if i <= last || i >= len(r.m.CatalogueObjects) {
			return fmt.Errorf("catalogue object %d of snapshot %s: not one of its %d objects in ascending order", i, r.m.ID, len(r.m.CatalogueObjects))
		}
		last = i
		var f *Fence
		if i < len(fs) {
			f = fs[i]
		}
		if _, err := eachInObject(r.ctx, r.st, r.m.ID, r.m.CatalogueObjects[i], f, r.ids, func(it Item) error { return fn(i, it) }); err != nil {
			return err
		}
	}
	return nil
}

// Wrap is a catalogue whose Each and EachSelected are each (the caller's wrapper around c's, e.g.
// classifying errors), and whose Layout and EachInObjects are c's.
func (c *Catalogue) Wrap(each func(sel *Selection, fn func(Item) error) error) *Catalogue {
	return &Catalogue{stream: each, objects: c.objects}
}
