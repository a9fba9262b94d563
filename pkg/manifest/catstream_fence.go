package manifest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/archive"
)

// Streamed catalogue objects are cut at ObjectItems items (docs/FORMAT.md "Streamed catalogue"), or
// once they hold ObjectBytes, and where a run of keyed items (SortKey) of one source begins or ends,
// so that an object of a sorted source holds one key range its fence names.
const (
	ObjectItems = 8 * RecordItems
	ObjectBytes = 64 << 20
)

// maxFencePlain bounds a fence's plaintext: two keys of at most 1 KiB, JSON-escaped, and a source.
const maxFencePlain = 64 << 10

// fencePad: a fence's plaintext is padded to a multiple of this, so its length hints little at the
// length of the keys it holds.
const fencePad = 256

// Fence is the key range of a catalogue object whose items the writer saw in sort order: all of one
// component and source, keyed (Item.SortKey), strictly ascending from First to Last. The manifest
// stores it sealed to the repository's recipients (CatalogueObject.Fence): object keys are names the
// store must not learn.
type Fence struct {
	Component string `json:"component"`
	Source    string `json:"source"`
	First     string `json:"first"`
	Last      string `json:"last"`
}

// SortKey is the key an item sorts by within its source, when it has one: an R2 object's key, which
// a bucket listing returns in ascending byte order. Other items (D1 tables in replay order, Durable
// Objects in the API's order) have none, and objects holding them get no fence.
func (it *Item) SortKey() (string, bool) {
	if it.Object == nil {
		return "", false
	}
	return it.Object.Key, true
}

// fenceTracker follows items in order and keeps their fence while they qualify for one.
type fenceTracker struct {
	n  int64
	ok bool
	f  Fence
}

func (t *fenceTracker) see(it *Item) {
	k, keyed := it.SortKey()
	switch {
	case t.n == 0:
		// A key that is not UTF-8 comes back from the catalogue's JSON with U+FFFD in it, so the
		// reader could not hold it to a range the writer took over the raw bytes: no fence.
		t.ok = keyed && utf8.ValidString(k)
		t.f = Fence{Component: it.Component, Source: it.Source, First: k, Last: k}
	case t.ok && keyed && it.Component == t.f.Component && it.Source == t.f.Source && k > t.f.Last && utf8.ValidString(k):
		t.f.Last = k
	default:
		t.ok = false
	}
	t.n++
}

// fence is the tracked fence, when every item seen qualifies.
func (t *fenceTracker) fence() (Fence, bool) { return t.f, t.ok && t.n > 0 }

// Fence is the key range of the items added so far, when they were all keyed items of one source in
// strictly ascending order.
func (w *CatalogueWriter) Fence() (Fence, bool) { return w.fence.fence() }

// SealFence encrypts a fence to the recipients, as CatalogueObject.Fence holds it.
func SealFence(f Fence, recipients []age.Recipient) (string, error) {
	b, err := json.Marshal(f)
	if err != nil {
		return "", err
	}
	b = append(b, bytes.Repeat([]byte{' '}, fencePad-len(b)%fencePad)...)
	var buf bytes.Buffer
	enc, err := age.Encrypt(&buf, recipients...)
	if err != nil {
		return "", fmt.Errorf("encrypt fence: %w", err)
	}
	if _, err := enc.Write(b); err != nil {
		return "", err
	}
	if err := enc.Close(); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes()), nil
}

// OpenFence decrypts the object's fence; nil when it has none.
func (co CatalogueObject) OpenFence(ids []age.Identity) (*Fence, error) {
	if co.Fence == "" {
		return nil, nil
	}
	raw, err := base64.StdEncoding.DecodeString(co.Fence)
	if err != nil {
		return nil, fmt.Errorf("%w: fence of catalogue object %s is not base64", archive.ErrIntegrity, co.Key)
	}
	dec, err := age.Decrypt(bytes.NewReader(raw), ids...)
	if err != nil {
		var nm *age.NoIdentityMatchError
		if errors.As(err, &nm) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: fence of catalogue object %s: %v", archive.ErrIntegrity, co.Key, err)
	}
	b, err := io.ReadAll(io.LimitReader(dec, maxFencePlain+1))
	if err != nil || len(b) > maxFencePlain {
		return nil, fmt.Errorf("%w: fence of catalogue object %s is unreadable or too long", archive.ErrIntegrity, co.Key)
	}
	var f Fence
	if err := json.Unmarshal(b, &f); err != nil || f.First > f.Last {
		return nil, fmt.Errorf("%w: fence of catalogue object %s is malformed", archive.ErrIntegrity, co.Key)
	}
	return &f, nil
}

// openFences decrypts every catalogue object's fence (nil for those without one).
func (m *Manifest) openFences(ids []age.Identity) ([]*Fence, error) {
	out := make([]*Fence, len(m.CatalogueObjects))
	for i, co := range m.CatalogueObjects {
		f, err := co.OpenFence(ids)
		if err != nil {
			return nil, fmt.Errorf("catalogue of snapshot %s: %w", m.ID, err)
		}
		out[i] = f
	}
	return out, nil
}

// Selection is what a reader takes from a catalogue: the items of one component and source whose
// sort key is one of Keys or, without Keys, starts with Prefix. A streamed catalogue skips the
// objects whose fences show they hold none of it (Catalogue.EachSelected).
type Selection struct {
	Component, Source string
	Keys              []string
	Prefix            string
}

// sorted returns the selection with its keys sorted (a copy), for mayHold's binary search.
func (s *Selection) sorted() *Selection {
	if s == nil || slices.IsSorted(s.Keys) {
		return s
	}
	c := *s
	c.Keys = slices.Clone(s.Keys)
	slices.Sort(c.Keys)
	return &c
}

// mayHold reports whether an object fenced by f may hold an item of the selection (s sorted).
func (s *Selection) mayHold(f *Fence) bool {
	if f.Component != s.Component || f.Source != s.Source {
		return false
	}
	if len(s.Keys) > 0 {
		i := sort.SearchStrings(s.Keys, f.First)
		return i < len(s.Keys) && s.Keys[i] <= f.Last
	}
	// The keys under a prefix are one interval from the prefix itself: it meets [First, Last] when
	// the prefix lies inside it or First is under the prefix.
	return (f.First <= s.Prefix && s.Prefix <= f.Last) || strings.HasPrefix(f.First, s.Prefix)
}

// fenceCheck holds a fenced object's items to their fence as they are read: a fence that lies about
// what its object holds (hostile or broken writer) is an integrity error, never a silent skip.
type fenceCheck struct {
	want *Fence
	seen fenceTracker
	co   string
	snap string
}

func (c *fenceCheck) item(it *Item) error {
	if c.want == nil {
		return nil
	}
	c.seen.see(it)
	k, _ := it.SortKey()
	if _, ok := c.seen.fence(); !ok || it.Component != c.want.Component || it.Source != c.want.Source || k < c.want.First || k > c.want.Last {
		return c.lie()
	}
	return nil
}

// end checks, once the object was read whole, that its first and last keys are the fence's.
func (c *fenceCheck) end() error {
	if c.want == nil {
		return nil
	}
	if f, ok := c.seen.fence(); !ok || f != *c.want {
		return c.lie()
	}
	return nil
}

func (c *fenceCheck) lie() error {
	return fmt.Errorf("%w: catalogue object %s of snapshot %s holds items outside the key range its manifest records", archive.ErrIntegrity, c.co, c.snap)
}
