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
		"2026-11-21 10:30:00+01:00": time.Date(2026, 11, 21, 9, 30, 0, 0, time.UTC),
		"2h ago":                    now.Add(-2 * time.Hour),
		"90m ago":                   now.Add(-90 * time.Minute),
		" 3d ago ":                  now.Add(-72 * time.Hour),
		"1.5d ago":                  now.Add(-36 * time.Hour),
		"1d12h ago":                 now.Add(-36 * time.Hour),
		"2w ago":                    now.Add(-14 * 24 * time.Hour),
		"0s ago":                    now,
		"now":                       now,
	} {
		got, err := parseAt(in, now)
		if err != nil || !got.Time.Equal(want) {
			t.Errorf("parseAt(%q) = %v, %v; want %v", in, got.Time, err, want)
		}
	}
	for _, bad := range []string{"", "someday", "2h", "-2h ago", "xd ago", "2026-11-23T00:00:00Z", "2026-11-22T03:00:01Z"} {
		if _, err := parseAt(bad, now); err == nil {
			t.Errorf("parseAt(%q) accepted", bad)
		}
	}
	// A time written to the second covers the whole second.
	got, err := parseAt("2026-11-21T09:30:00Z", now)
	if err != nil || !got.Last().Equal(time.Date(2026, 11, 21, 9, 30, 0, 999999999, time.UTC)) {
		t.Errorf("Last() = %v, %v", got.Last(), err)
	}
}

func TestParseSinceAndUntilShareTheGrammar(t *testing.T) {
	now := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"90d":                  now.Add(-90 * 24 * time.Hour),
		"1d12h":                now.Add(-36 * time.Hour),
		"1.5d":                 now.Add(-36 * time.Hour),
		"2w ago":               now.Add(-14 * 24 * time.Hour),
		"2026-11-21T09:30:00Z": time.Date(2026, 11, 21, 9, 30, 0, 0, time.UTC),
	} {
		if got, err := parseSince(in, now); err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for in, want := range map[string]time.Time{
		"90d":                  now.Add(90 * 24 * time.Hour),
		"1d12h":                now.Add(36 * time.Hour),
		"1.5d":                 now.Add(36 * time.Hour),
		"2027-01-31T00:00:00Z": time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC),
	} {
		if got, err := parseUntil(in, now); err != nil || !got.Equal(want) {
			t.Errorf("parseUntil(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"someday", "5", "-3d"} {
		if _, err := parseSince(bad, now); err == nil {
			t.Errorf("parseSince(%q) accepted", bad)
		}
		if _, err := parseUntil(bad, now); err == nil {
			t.Errorf("parseUntil(%q) accepted", bad)
		}
	}
}
