package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/layout"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// SliceNext is the --read-data-subset numerator that picks the slice after the last one recorded:
// "next/7" reads 1/7, 2/7, … 7/7, 1/7 on successive runs, whatever their schedule.
const SliceNext = "next"

// VerifyAllOptions choose how verify --all reads the repository.
type VerifyAllOptions struct {
	// VerifyOptions apply to each snapshot; its Subset is the whole repository's slice here: "k/t"
	// (segments whose id hashes to bucket k of t), "next/t" (the slice after the last recorded one)
	// or "x%" (a random x percent of the segments).
	VerifyOptions
}

// VerifyAllResult is the outcome of one verify --all run.
type VerifyAllResult struct {
	// Slice is the slice read ("3/7"; "" for every segment, "10%" for a random sample).
	Slice string
	// Results are the snapshots' results, oldest snapshot first.
	Results []*VerifyResult
	// SegmentsTotal counts the distinct segments of all snapshots; SegmentsRead those this run
	// checked (each once); ReadIDs are their ids.
	SegmentsTotal, SegmentsRead int
	ReadIDs                     []string
	BytesRead                   int64
	Items                       int
	Problems                    int
}

// ParseSlice checks a whole-repository --read-data-subset value: "", "k/t", "next/t" or "x%".
func ParseSlice(spec string) (k, t int, err error) {
	if spec == "" || strings.HasSuffix(spec, "%") {
		return 0, 0, ValidateSubset(spec)
	}
	a, b, ok := strings.Cut(spec, "/")
	t, terr := strconv.Atoi(b)
	if a == SliceNext && ok && terr == nil && t >= 1 {
		return 0, t, nil
	}
	k, kerr := strconv.Atoi(a)
	if !ok || kerr != nil || terr != nil || t < 1 || k < 1 || k > t {
		return 0, 0, fmt.Errorf("%w: --read-data-subset %q: use k/t with 1 ≤ k ≤ t (e.g. 3/7), next/t to read the slice after the last one (e.g. next/7), or a percentage (e.g. 10%%)", ErrUsage, spec)
	}
	return k, t, nil
}

// inSlice reports whether a segment falls in slice k of t: its id hashed (FNV-1a) modulo t. The
// choice depends on the id alone, so a segment shared by many snapshots is in the same slice in all
// of them, and the t slices of a repository are disjoint and cover every segment.
func inSlice(id string, k, t int) bool {
	h := fnv.New64a()
	_, _ = io.WriteString(h, id)
	return int(h.Sum64()%uint64(t)) == k-1
}

// VerifyAll checks every snapshot, each distinct segment once (by the oldest snapshot that
// references it), and with a slice only the segments in it: t runs of k/t (or of next/t) read every
// segment of the repository exactly once. Each snapshot's result is recorded as Verify records it,
// marked All with the slice, which is how next/t finds where the last run stopped. Problems are
// collected; the error wraps ErrIntegrity when any snapshot had one.
func (e *Engine) VerifyAll(ctx context.Context, snaps []*manifest.Manifest, o VerifyAllOptions) (*VerifyAllResult, error) {
	k, t, err := ParseSlice(o.Subset)
	if err != nil {
		return nil, err
	}
	out := &VerifyAllResult{}
	pct := strings.HasSuffix(o.Subset, "%")
	switch {
	case pct:
		out.Slice = o.Subset
	case t > 0 && k == 0:
		if k, err = e.nextSlice(ctx, t); err != nil {
			return nil, err
		}
		out.Slice = fmt.Sprintf("%d/%d", k, t)
	case t > 0:
		out.Slice = o.Subset
	}
	// The percentage sample is drawn per segment id, once for the whole run.
	if pct {
		distinct := map[string]int{}
		for _, m := range snaps {
			for _, s := range m.Segments {
				if _, ok := distinct[s.ID]; !ok {
					distinct[s.ID] = len(distinct)
				}
			}
		}
		pick, err := subset(len(distinct), o.Subset, o.Rand)
		if err != nil {
			return nil, err
		}
		o.Select = func(s archive.SegmentInfo) bool { return pick(distinct[s.ID]) }
	}
	ordered := append([]*manifest.Manifest(nil), snaps...)
	sort.SliceStable(ordered, func(i, j int) bool { return ordered[i].Time.Before(ordered[j].Time) })
	seen := map[string]bool{}
	var failed []string
	for _, m := range ordered {
		chosen := map[string]bool{}
		for _, s := range m.Segments {
			if seen[s.ID] {
				continue
			}
			seen[s.ID] = true
			out.SegmentsTotal++
			if (t == 0 || inSlice(s.ID, k, t)) && (o.Select == nil || o.Select(s)) {
				chosen[s.ID] = true
				out.ReadIDs = append(out.ReadIDs, s.ID)
			}
		}
		vo := o.VerifyOptions
		vo.Subset, vo.All, vo.Slice = "", true, out.Slice
		vo.Select = func(s archive.SegmentInfo) bool { return chosen[s.ID] }
		res, verr := e.Verify(ctx, m, vo)
		if res == nil {
			if ctx.Err() != nil || !errors.Is(verr, ErrIntegrity) && !errors.Is(verr, ErrNotFound) {
				return out, verr
			}
			res = &VerifyResult{Snapshot: m.ID, Mode: "quick", All: true, Slice: out.Slice, Problems: []string{}}
			fail(res, FailureKindOf(verr, FailureError), verr.Error())
		}
		out.Results = append(out.Results, res)
		out.SegmentsRead += res.Segments
		out.BytesRead += res.BytesRead
		out.Items += res.Items
		if len(res.Problems) > 0 {
			out.Problems += len(res.Problems)
			failed = append(failed, m.ID)
		}
	}
	if len(failed) > 0 {
		return out, fmt.Errorf("%w: %d of %d snapshot(s) failed verification (%s): %d problem(s)", ErrIntegrity, len(failed), len(ordered), strings.Join(failed, ", "), out.Problems)
	}
	return out, nil
}

// nextSlice is the slice after the one the newest whole-repository record of t slices read (1 when
// there is none): it lists verify/ once and reads records newest first until it finds one.
func (e *Engine) nextSlice(ctx context.Context, t int) (int, error) {
	var keys []string
	err := e.Repo.Store.List(ctx, layout.VerifyRecords, func(oi store.ObjectInfo) error {
		if strings.HasSuffix(oi.Key, layout.JSONSuffix) {
			keys = append(keys, oi.Key)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("list verify records: %w", err)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(keys))) // keys start with the record's UTC time
	for _, key := range keys {
		rc, err := e.Repo.Store.Open(ctx, key, 0, -1)
		if err != nil {
			return 0, fmt.Errorf("read verify record %s: %w", key, err)
		}
		var rec VerifyResult
		err = json.NewDecoder(io.LimitReader(rc, 1<<20)).Decode(&rec)
		rc.Close()
		if err != nil || !rec.All || rec.Slice == "" {
			continue
		}
		var rk, rt int
		if _, err := fmt.Sscanf(rec.Slice, "%d/%d", &rk, &rt); err == nil && rt == t && rk >= 1 && rk <= t {
			return rk%t + 1, nil
		}
	}
	return 1, nil
}
