package retention

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkEvaluate: ten years of hourly snapshots of three sources (262,800 snapshots).
func BenchmarkEvaluate(b *testing.B) {
	start := ts("2016-01-01T00:00:00Z")
	var snaps []Snapshot
	for h := 0; h < 10*365*24; h++ {
		for s := 0; s < 3; s++ {
			snaps = append(snaps, Snapshot{ID: fmt.Sprintf("%d-%d", h, s), Time: start.Add(time.Duration(h) * time.Hour),
				Groups: []Group{{"d1", fmt.Sprint("db", s)}}})
		}
	}
	ps := Policies{Default: Policy{Last: 48, Daily: 30, Weekly: 8, Monthly: 24, Yearly: 10, Within: 72 * time.Hour}}
	now := start.Add(10 * 365 * 24 * time.Hour)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := Evaluate(snaps, ps, now)
		if len(r.Keep) == 0 {
			b.Fatal("nothing kept")
		}
	}
}
