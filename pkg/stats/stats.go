// Package stats measures a repository: what it stores by prefix (segments, manifests, indexes,
// records), by component and by source, logical against stored size (what compression and
// deduplication save), and how fast it grows. `cfbackup stats` prints it and the compliance report's
// storage section embeds it (one implementation, so the two never disagree).
//
// It lists the bucket once, keeping only a count and a byte total per prefix, and reads everything
// else from the manifest summaries the caller already holds: memory grows with the number of
// snapshots and distinct segments, never with the number of objects (R2 index entries, audit
// records).
package stats

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cfbackup/cfbackup/pkg/layout"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// DefaultGrowthSnapshots is how many of the newest snapshots the growth figures cover by default.
const DefaultGrowthSnapshots = 30

// Options tune Compute.
type Options struct {
	// GrowthSnapshots is how many of the newest snapshots growth covers (default 30).
	GrowthSnapshots int
	// Held is the set of snapshot ids under an active legal hold (the caller reads holds/).
	Held map[string]bool
	// Now is when the figures were taken (tests inject it); default time.Now.
	Now time.Time
}

// Stats is a repository's storage figures; its JSON encoding is `stats --json` (docs/STATS.md).
type Stats struct {
	Generated  time.Time `json:"generated"`
	Repository string    `json:"repository"`
	// TotalObjects and TotalBytes are everything stored; Prefixes splits them by top-level prefix
	// ("segments/", "snapshots/", "index/", "audit/", …; a top-level file is its own entry).
	TotalObjects int64    `json:"total_objects"`
	TotalBytes   int64    `json:"total_bytes"`
	Prefixes     []Prefix `json:"prefixes"`
	// Snapshots counts the readable snapshots, Oldest and Newest are their times (null when none);
	// Held counts those under an active legal hold, Locks the repository lock objects present now.
	Snapshots int        `json:"snapshots"`
	Oldest    *time.Time `json:"oldest"`
	Newest    *time.Time `json:"newest"`
	Held      int        `json:"held"`
	Locks     int64      `json:"locks"`
	// LogicalBytes is what restoring every snapshot would yield (the sum of their sizes);
	// ReferencedBytes the distinct segments they reference, stored once; UnreferencedBytes is what
	// lies under segments/ that no snapshot references (prune collects it). SavingsRatio is
	// 1 - Referenced/Logical: what compression and deduplication save (0 when nothing is stored).
	LogicalBytes      int64   `json:"logical_bytes"`
	ReferencedBytes   int64   `json:"referenced_bytes"`
	UnreferencedBytes int64   `json:"unreferenced_bytes"`
	SavingsRatio      float64 `json:"savings_ratio"`
	// Components and Sources break the snapshots down (sorted by component, then name).
	Components []Component `json:"components"`
	Sources    []Source    `json:"sources"`
	Growth     Growth      `json:"growth"`
}

// Prefix is one top-level prefix's objects.
type Prefix struct {
	Prefix  string `json:"prefix"`
	Objects int64  `json:"objects"`
	Bytes   int64  `json:"bytes"`
}

// Component is one component's share.
type Component struct {
	Component string `json:"component"`
	Snapshots int    `json:"snapshots"`
	Sources   int    `json:"sources"`
	// LatestSize is the size of each source's newest capture, summed: what a restore of everything
	// this component holds now would yield. LogicalBytes sums every capture.
	LatestSize   int64 `json:"latest_size"`
	LogicalBytes int64 `json:"logical_bytes"`
	// StoredAdded is the stored bytes of the segments this component's snapshots added, a snapshot's
	// new segments split between its components by their sizes (exact for one-component snapshots).
	StoredAdded int64     `json:"stored_added"`
	Oldest      time.Time `json:"oldest"`
	Newest      time.Time `json:"newest"`
}

// Source is one database, bucket, namespace or account captured.
type Source struct {
	Component    string    `json:"component"`
	Name         string    `json:"name"`
	Snapshots    int       `json:"snapshots"`
	LatestSize   int64     `json:"latest_size"`
	LatestItems  int64     `json:"latest_items"`
	LogicalBytes int64     `json:"logical_bytes"`
	Oldest       time.Time `json:"oldest"`
	Newest       time.Time `json:"newest"`
}

// Growth is the stored bytes the newest snapshots added: segments no older snapshot references.
type Growth struct {
	// Snapshots is how many of the newest snapshots are covered; StoredAdded their total.
	Snapshots   int              `json:"snapshots"`
	StoredAdded int64            `json:"stored_added"`
	PerSnapshot []SnapshotGrowth `json:"per_snapshot"`
	// Daily (UTC dates) and Weekly (ISO weeks, "2026-W49") sum PerSnapshot, oldest first.
	Daily  []Period `json:"daily"`
	Weekly []Period `json:"weekly"`
}

// SnapshotGrowth is what one snapshot added.
type SnapshotGrowth struct {
	Snapshot    string    `json:"snapshot"`
	Time        time.Time `json:"time"`
	Components  []string  `json:"components"`
	Size        int64     `json:"size"`
	StoredAdded int64     `json:"stored_added"`
}

// Period is the growth of one day or week.
type Period struct {
	Period      string `json:"period"`
	Snapshots   int    `json:"snapshots"`
	StoredAdded int64  `json:"stored_added"`
}

// Compute lists st once and combines it with snaps (manifest summaries, any order).
func Compute(ctx context.Context, st store.Store, snaps []*manifest.Manifest, o Options) (*Stats, error) {
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	s := &Stats{Generated: now.UTC(), Repository: st.Location(), Prefixes: []Prefix{}, Components: []Component{}, Sources: []Source{},
		Growth: Growth{PerSnapshot: []SnapshotGrowth{}, Daily: []Period{}, Weekly: []Period{}}}
	if err := s.listPrefixes(ctx, st); err != nil {
		return nil, err
	}
	ordered := append([]*manifest.Manifest(nil), snaps...)
	sort.SliceStable(ordered, func(i, j int) bool { return ordered[i].Time.Before(ordered[j].Time) })
	s.Snapshots = len(ordered)
	if len(ordered) > 0 {
		oldest, newest := ordered[0].Time.UTC(), ordered[len(ordered)-1].Time.UTC()
		s.Oldest, s.Newest = &oldest, &newest
	}
	comps := map[string]*Component{}
	srcs := map[string]*Source{}
	seen := map[string]bool{}
	added := make([]int64, len(ordered))
	for i, m := range ordered {
		if o.Held[m.ID] {
			s.Held++
		}
		s.LogicalBytes += m.Size
		for _, seg := range m.Segments {
			if !seen[seg.ID] {
				seen[seg.ID] = true
				added[i] += seg.Size
			}
		}
		s.ReferencedBytes += added[i]
		s.addSnapshot(m, added[i], comps, srcs)
	}
	s.finish(comps, srcs)
	if seg := s.prefix(layout.Segments); seg != nil && seg.Bytes > s.ReferencedBytes {
		s.UnreferencedBytes = seg.Bytes - s.ReferencedBytes
	}
	if s.LogicalBytes > 0 {
		s.SavingsRatio = 1 - float64(s.ReferencedBytes)/float64(s.LogicalBytes)
	}
	s.growth(ordered, added, o.GrowthSnapshots)
	return s, nil
}

func (s *Stats) listPrefixes(ctx context.Context, st store.Store) error {
	byPrefix := map[string]*Prefix{}
	err := st.List(ctx, "", func(oi store.ObjectInfo) error {
		p := oi.Key
		if i := strings.IndexByte(p, '/'); i >= 0 {
			p = p[:i+1]
		}
		e := byPrefix[p]
		if e == nil {
			e = &Prefix{Prefix: p}
			byPrefix[p] = e
		}
		e.Objects++
		e.Bytes += oi.Size
		s.TotalObjects++
		s.TotalBytes += oi.Size
		return nil
	})
	if err != nil {
		return fmt.Errorf("list %s: %w", st.Location(), err)
	}
	for _, e := range byPrefix {
		s.Prefixes = append(s.Prefixes, *e)
	}
	sort.Slice(s.Prefixes, func(i, j int) bool { return s.Prefixes[i].Prefix < s.Prefixes[j].Prefix })
	if l := s.prefix(layout.Locks); l != nil {
		s.Locks = l.Objects
	}
	return nil
}

func (s *Stats) prefix(p string) *Prefix {
	for i := range s.Prefixes {
		if s.Prefixes[i].Prefix == p {
			return &s.Prefixes[i]
		}
	}
	return nil
}

// addSnapshot counts one snapshot (oldest first) under its components and sources.
func (s *Stats) addSnapshot(m *manifest.Manifest, added int64, comps map[string]*Component, srcs map[string]*Source) {
	compSize := map[string]int64{}
	for _, src := range m.Sources {
		compSize[src.Component] += src.Size
		k := src.Component + "\x00" + src.Name
		e := srcs[k]
		if e == nil {
			e = &Source{Component: src.Component, Name: src.Name, Oldest: m.Time.UTC()}
			srcs[k] = e
		}
		e.Snapshots++
		e.LogicalBytes += src.Size
		e.LatestSize, e.LatestItems, e.Newest = src.Size, src.Items, m.Time.UTC()
	}
	for _, c := range m.Components {
		e := comps[c]
		if e == nil {
			e = &Component{Component: c, Oldest: m.Time.UTC()}
			comps[c] = e
		}
		e.Snapshots++
		e.LogicalBytes += compSize[c]
		e.Newest = m.Time.UTC()
		switch {
		case len(m.Components) == 1:
			e.StoredAdded += added
		case m.Size > 0:
			e.StoredAdded += int64(float64(added) * float64(compSize[c]) / float64(m.Size))
		default:
			e.StoredAdded += added / int64(len(m.Components))
		}
	}
}

func (s *Stats) finish(comps map[string]*Component, srcs map[string]*Source) {
	for _, e := range srcs {
		s.Sources = append(s.Sources, *e)
		if c := comps[e.Component]; c != nil {
			c.Sources++
			c.LatestSize += e.LatestSize
		}
	}
	sort.Slice(s.Sources, func(i, j int) bool {
		a, b := s.Sources[i], s.Sources[j]
		return a.Component < b.Component || a.Component == b.Component && a.Name < b.Name
	})
	for _, c := range comps {
		s.Components = append(s.Components, *c)
	}
	sort.Slice(s.Components, func(i, j int) bool { return s.Components[i].Component < s.Components[j].Component })
}

// growth fills Growth from the newest n snapshots of ordered (oldest first) and what each added.
func (s *Stats) growth(ordered []*manifest.Manifest, added []int64, n int) {
	if n <= 0 {
		n = DefaultGrowthSnapshots
	}
	first := max(len(ordered)-n, 0)
	var daily, weekly []Period
	bump := func(ps []Period, key string, add int64) []Period {
		if len(ps) == 0 || ps[len(ps)-1].Period != key {
			ps = append(ps, Period{Period: key})
		}
		ps[len(ps)-1].Snapshots++
		ps[len(ps)-1].StoredAdded += add
		return ps
	}
	for i := first; i < len(ordered); i++ {
		m := ordered[i]
		t := m.Time.UTC()
		s.Growth.PerSnapshot = append(s.Growth.PerSnapshot, SnapshotGrowth{Snapshot: m.ID, Time: t, Components: m.Components, Size: m.Size, StoredAdded: added[i]})
		s.Growth.Snapshots++
		s.Growth.StoredAdded += added[i]
		y, w := t.ISOWeek()
		daily = bump(daily, t.Format("2006-01-02"), added[i])
		weekly = bump(weekly, fmt.Sprintf("%04d-W%02d", y, w), added[i])
	}
	if daily != nil {
		s.Growth.Daily, s.Growth.Weekly = daily, weekly
	}
}
