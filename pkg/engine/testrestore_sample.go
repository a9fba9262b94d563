package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
)

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
			return 0, 0, fmt.Errorf("%w: --sample %q: a percentage must be a number above 0 and at most 100 (e.g. 5%%)", ErrUsage, s)
		}
		return 0, f, nil
	}
	v, perr := strconv.Atoi(s)
	if perr != nil || v < 1 {
		return 0, 0, fmt.Errorf("%w: --sample %q: give a number of objects (e.g. 100) or a percentage (e.g. 5%%)", ErrUsage, s)
	}
	return v, 0, nil
}

// SampleIndexes picks which of total items a test-restore checks: all of them without a sample,
// otherwise a random subset (so repeated drills cover different objects), in ascending order.
func SampleIndexes(total int, sample string) ([]int, error) {
	n, pct, err := ParseSample(sample)
	if err != nil {
		return nil, err
	}
	if pct > 0 {
		n = int(math.Ceil(float64(total) * pct / 100))
	}
	if n == 0 || n >= total {
		n = total
	}
	idx := make([]int, total)
	for i := range idx {
		idx[i] = i
	}
	if n < total {
		rand.Shuffle(total, func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		idx = idx[:n]
		// Ascending, so the items are read in catalogue (segment) order.
		slices.Sort(idx)
	}
	return idx, nil
}
