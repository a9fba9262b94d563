package engine

import "github.com/cfbackup/cfbackup/pkg/source"

// ParseSample reads test-restore's --sample (source.ParseSample).
func ParseSample(s string) (n int, pct float64, err error) { return source.ParseSample(s) }

// SampleIndexes picks which of total items a test-restore checks (source.SampleIndexes).
func SampleIndexes(total int, sample string) ([]int, error) {
	return source.SampleIndexes(total, sample)
}
