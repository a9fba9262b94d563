package source

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// Helpers of the per-object test-restores (R2 objects, Durable Objects): the --sample grammar, the
// picking of a source's items, and a cap on the problems listed per source.

// ParseSample reads test-restore's --sample: "" (everything), "N" (that many items) or "x%" (that
// share of them, at least one). It returns n >= 0 items or pct in (0, 100].
func ParseSample(s string) (n int, pct float64, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, 0, nil
	}
	if p, ok := strings.CutSuffix(s, "%"); ok {
		f, perr := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if perr != nil || math.IsNaN(f) || f <= 0 || f > 100 {
			return 0, 0, fmt.Errorf("%w: --sample %q: a percentage must be a number above 0 and at most 100 (e.g. 5%%)", errclass.Usage, s)
		}
		return 0, f, nil
	}
	v, perr := strconv.Atoi(s)
	if perr != nil || v < 1 {
		return 0, 0, fmt.Errorf("%w: --sample %q: give a number of objects (e.g. 100) or a percentage (e.g. 5%%)", errclass.Usage, s)
	}
	return v, 0, nil
}

// SampleIndexes picks which of total items a test-restore checks: all of them without a sample,
// otherwise a random subset (so repeated drills cover different objects), in ascending order.
func SampleIndexes(total int, sample string) ([]int, error) {
	return SampleIndexesSeeded(total, sample, rand.Uint64(), "")
}

// SampleIndexesSeeded is SampleIndexes with the choice drawn from seed and the source's name (Rand):
// the same seed picks the same items of a source again.
func SampleIndexesSeeded(total int, sample string, seed uint64, source string) ([]int, error) {
	n, err := sampleSize(total, sample)
	if err != nil {
		return nil, err
	}
	return samplePositions(total, n, Rand(seed, source)), nil
}

// sampleSize is how many of total items --sample asks for (total without a sample).
func sampleSize(total int, sample string) (int, error) {
	n, pct, err := ParseSample(sample)
	if err != nil {
		return 0, err
	}
	if pct > 0 {
		n = int(math.Ceil(float64(total) * pct / 100))
	}
	if n == 0 || n >= total {
		n = total
	}
	return n, nil
}

// Rand is the random source of one source's sample: seeded by the run's seed and the source's name,
// so sources are sampled independently of their order and a seed reproduces every one of them.
func Rand(seed uint64, source string) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(source))
	return rand.New(rand.NewPCG(seed, h.Sum64()))
}

// samplePositions draws n distinct positions of [0, total) uniformly (Floyd's algorithm: n draws,
// memory for n, not total), ascending so the items are read in catalogue (segment) order.
func samplePositions(total, n int, rng *rand.Rand) []int {
	if n >= total {
		idx := make([]int, total)
		for i := range idx {
			idx[i] = i
		}
		return idx
	}
	chosen := make(map[int]struct{}, n)
	idx := make([]int, 0, n)
	for j := total - n; j < total; j++ {
		t := rng.IntN(j + 1)
		if _, dup := chosen[t]; dup {
			t = j
		}
		chosen[t] = struct{}{}
		idx = append(idx, t)
	}
	slices.Sort(idx)
	return idx
}

// MaxProblems caps the problems listed per source; the rest are counted (Overflow).
const MaxProblems = 20

// Overflow counts, by failure kind, the problems of a source beyond MaxProblems.
type Overflow map[string]int

// AddProblem records a problem of chk, or counts it in more once MaxProblems are listed.
func AddProblem(chk *TestRestoreCheck, more *Overflow, kind, p string) {
	if len(chk.Problems) < MaxProblems {
		chk.Fail(kind, p)
		return
	}
	if *more == nil {
		*more = Overflow{}
	}
	(*more)[kind]++
}

// CloseProblems appends one "and N more" problem per kind counted in more.
func CloseProblems(chk *TestRestoreCheck, more Overflow) {
	for _, k := range FailureKinds {
		if n := more[k]; n > 0 {
			chk.Fail(k, fmt.Sprintf("and %d more %s problem(s)", n, k))
		}
	}
}

// SampleNote says which of a source's objects a test-restore checked.
func SampleNote(n, total int) string {
	if n == total {
		return fmt.Sprintf("all %d object(s)", total)
	}
	return fmt.Sprintf("random sample of %d of %d object(s)", n, total)
}

// SampleSource picks the catalogue items of one source (mine), checks their count against the
// manifest, and takes the --sample of them, drawn from seed; the check starts with what was picked.
// When the source's items are all in fenced catalogue objects (sampleFenced), only the objects that
// hold a sampled item are read; otherwise the whole catalogue is read twice.
func SampleSource(cat *manifest.Catalogue, src manifest.Source, sample string, seed uint64, mine func(manifest.Item) bool) (chk TestRestoreCheck, more Overflow, items []manifest.Item, err error) {
	chk = TestRestoreCheck{Component: src.Component, Source: src.Name, Checks: []string{}, Problems: []string{}}
	if items, note, ok, err := sampleFenced(cat, src, sample, seed, mine); err != nil {
		return chk, more, nil, err
	} else if ok {
		for _, it := range items {
			chk.Items++
			chk.Bytes += it.Size
		}
		chk.Checks = append(chk.Checks, note)
		return chk, more, items, nil
	}
	// Two passes over the (streamed) catalogue: count the source's items, then take the sampled
	// ones; only the sample is held.
	total := 0
	if err := cat.Each(func(it manifest.Item) error {
		if mine(it) {
			total++
		}
		return nil
	}); err != nil {
		return chk, more, nil, err
	}
	if int64(total) != src.Items {
		AddProblem(&chk, &more, FailureIntegrity, fmt.Sprintf("the catalogue lists %d object(s), the manifest %d", total, src.Items))
	}
	idx, err := SampleIndexesSeeded(total, sample, seed, src.Component+"/"+src.Name)
	if err != nil {
		return chk, more, nil, err
	}
	slot := make(map[int][]int, len(idx)) // position among the source's items → places in the sample
	for i, j := range idx {
		slot[j] = append(slot[j], i)
	}
	items = make([]manifest.Item, len(idx))
	n := 0
	if err := cat.Each(func(it manifest.Item) error {
		if !mine(it) {
			return nil
		}
		for _, i := range slot[n] {
			items[i] = it
			chk.Items++
			chk.Bytes += it.Size
		}
		n++
		return nil
	}); err != nil {
		return chk, more, nil, err
	}
	if n != total {
		return chk, more, nil, fmt.Errorf("%w: the catalogue changed between two reads (%d then %d items of the source)", errclass.Integrity, total, n)
	}
	note := SampleNote(len(items), total)
	if len(items) < total {
		note += fmt.Sprintf(" (seed %d; the whole catalogue read)", seed)
	}
	chk.Checks = append(chk.Checks, note)
	return chk, more, items, nil
}

// ReadFailureKind classifies an error met while reading a snapshot's data back: FailureIntegrity when
// the data is damaged or gone (an integrity-class error, a stored object not found), else dflt.
func ReadFailureKind(err error, dflt string) string {
	if errors.Is(err, errclass.Integrity) || errors.Is(err, store.ErrNotFound) {
		return FailureIntegrity
	}
	return dflt
}
