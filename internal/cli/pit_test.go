package cli

import (
	"testing"
	"time"
)

func TestParseAt(t *testing.T) {
	now := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2026-11-21T09:30:00Z":      time.Date(2026, 11, 21, 9, 30, 0, 0, time.UTC),
		"2026-11-21T10:30:00+01:00": time.Date(2026, 11, 21, 9, 30, 0, 0, time.UTC),
		"2h ago":                    now.Add(-2 * time.Hour),
		"90m ago":                   now.Add(-90 * time.Minute),
		" 3d ago ":                  now.Add(-72 * time.Hour),
		"1.5d ago":                  now.Add(-36 * time.Hour),
		"0s ago":                    now,
	} {
		got, err := parseAt(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseAt(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "yesterday", "2h", "-2h ago", "xd ago", "2026-11-23T00:00:00Z", "2026-11-21 09:30"} {
		if _, err := parseAt(bad, now); err == nil {
			t.Errorf("parseAt(%q) accepted", bad)
		}
	}
}
