package timespec

import (
	"errors"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
	}{
		{"0", 0},
		{"0s", 0},
		{"90s", 90 * time.Second},
		{"45m", 45 * time.Minute},
		{"36h", 36 * time.Hour},
		{"1d12h", 36 * time.Hour},
		{"1d 12h", 36 * time.Hour},
		{"1.5d", 36 * time.Hour},
		{"2w", 14 * 24 * time.Hour},
		{"1w2d3h4m5s", (9*24+3)*time.Hour + 4*time.Minute + 5*time.Second},
		{"0.5h", 30 * time.Minute},
		{" 30d ", 30 * 24 * time.Hour},
	} {
		got, err := ParseDuration(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "5", "d", "3x", "-1d", "1d-2h", "1..5d", "2 h", "h2", "1y", "ms", "100ms", "1e3s", "999999999w"} {
		if d, err := ParseDuration(bad); err == nil || !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseDuration(%q) = %v, %v; want an ErrSyntax error", bad, d, err)
		}
	}
}

func TestParseTime(t *testing.T) {
	berlin := time.FixedZone("CET", 3600)
	now := time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		in   string
		bare Bare
		want time.Time
		prec time.Duration
	}{
		{"now", BareNone, now, 0},
		{"NOW", BareNone, now, 0},
		{"2h ago", BareNone, now.Add(-2 * time.Hour), 0},
		{"1d12h ago", BareNone, now.Add(-36 * time.Hour), 0},
		{"1.5d ago", BareNone, now.Add(-36 * time.Hour), 0},
		{"2w ago", BareNone, now.Add(-14 * 24 * time.Hour), 0},
		{" 0s ago ", BareNone, now, 0},
		{"2026-12-03T13:19:44Z", BareNone, time.Date(2026, 12, 3, 13, 19, 44, 0, time.UTC), time.Second},
		{"2026-12-03t13:19:44z", BareNone, time.Date(2026, 12, 3, 13, 19, 44, 0, time.UTC), time.Second},
		{"2026-12-03T14:19:44+01:00", BareNone, time.Date(2026, 12, 3, 13, 19, 44, 0, time.UTC), time.Second},
		{"2026-12-03 14:19:44+01:00", BareNone, time.Date(2026, 12, 3, 13, 19, 44, 0, time.UTC), time.Second},
		{"2026-12-03 13:19:44Z", BareNone, time.Date(2026, 12, 3, 13, 19, 44, 0, time.UTC), time.Second},
		{"2026-12-03T13:19:44.6Z", BareNone, time.Date(2026, 12, 3, 13, 19, 44, 600e6, time.UTC), 100 * time.Millisecond},
		{"2026-12-03T13:19:44.123456789Z", BareNone, time.Date(2026, 12, 3, 13, 19, 44, 123456789, time.UTC), time.Nanosecond},
		// No zone: the given location (TZ).
		{"2026-12-03 13:19:44", BareNone, time.Date(2026, 12, 3, 12, 19, 44, 0, time.UTC), time.Second},
		{"2026-12-03T13:19:44", BareNone, time.Date(2026, 12, 3, 12, 19, 44, 0, time.UTC), time.Second},
		{"2026-12-03  13:19:44", BareNone, time.Date(2026, 12, 3, 12, 19, 44, 0, time.UTC), time.Second},
		{"2026-12-03 13:19:44.25", BareNone, time.Date(2026, 12, 3, 12, 19, 44, 250e6, time.UTC), 10 * time.Millisecond},
		{"2026-12-03 13:19", BareNone, time.Date(2026, 12, 3, 12, 19, 0, 0, time.UTC), time.Minute},
		{"2026-12-03T13:19Z", BareNone, time.Date(2026, 12, 3, 13, 19, 0, 0, time.UTC), time.Minute},
		{"2026-12-03", BareNone, time.Date(2026, 12, 2, 23, 0, 0, 0, time.UTC), 24 * time.Hour},
		{"today", BareNone, time.Date(2026, 12, 2, 23, 0, 0, 0, time.UTC), 24 * time.Hour},
		{"yesterday", BareNone, time.Date(2026, 12, 1, 23, 0, 0, 0, time.UTC), 24 * time.Hour},
		// Bare durations where the flag gives them a direction.
		{"90d", BarePast, now.Add(-90 * 24 * time.Hour), 0},
		{"2w", BarePast, now.Add(-14 * 24 * time.Hour), 0},
		{"90d", BareFuture, now.Add(90 * 24 * time.Hour), 0},
		{"2w ago", BarePast, now.Add(-14 * 24 * time.Hour), 0},
	} {
		got, err := ParseTime(c.in, now, berlin, c.bare)
		if err != nil || !got.Time.Equal(c.want) || got.Precision != c.prec {
			t.Errorf("ParseTime(%q) = %v (precision %v), %v; want %v (precision %v)", c.in, got.Time.UTC(), got.Precision, err, c.want, c.prec)
		}
	}
	for _, c := range []struct {
		in   string
		bare Bare
	}{
		{"", BareNone}, {"2h", BareNone}, {"-2h ago", BareNone}, {"xd ago", BareNone}, {"ago", BareNone},
		{"someday", BarePast}, {"2026-13-01", BareNone}, {"2026-12-03 25:00:00", BareNone}, {"03/12/2026", BareNone},
		{"1700000000", BareNone}, {"5", BarePast},
	} {
		if got, err := ParseTime(c.in, now, berlin, c.bare); err == nil || !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseTime(%q) = %v, %v; want an ErrSyntax error", c.in, got, err)
		}
	}
}

func TestLastCoversThePrecision(t *testing.T) {
	now := time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC)
	sec, err := ParseTime("2026-12-03T13:19:44Z", now, time.UTC, BareNone)
	if err != nil {
		t.Fatal(err)
	}
	taken := time.Date(2026, 12, 3, 13, 19, 44, 600e6, time.UTC) // a snapshot listed as 13:19:44
	if taken.After(sec.Last()) {
		t.Errorf("Last() = %v: a snapshot at %v is not at or before 13:19:44", sec.Last(), taken)
	}
	if !time.Date(2026, 12, 3, 13, 19, 45, 0, time.UTC).After(sec.Last()) {
		t.Errorf("Last() = %v covers the next second", sec.Last())
	}
	exact, _ := ParseTime("2h ago", now, time.UTC, BareNone)
	if !exact.Last().Equal(now.Add(-2 * time.Hour)) {
		t.Errorf("exact Last() = %v", exact.Last())
	}
	// A DST day is 23 hours long: the date covers exactly that day.
	ams, err := time.LoadLocation("Europe/Amsterdam")
	if err != nil {
		t.Skip("no tzdata:", err)
	}
	d, err := ParseTime("2026-03-29", now, ams, BareNone)
	if err != nil || d.Precision != 23*time.Hour {
		t.Fatalf("DST day: %v, %v", d, err)
	}
	if got := d.Last().In(ams); got.Day() != 29 || got.Hour() != 23 || got.Minute() != 59 {
		t.Errorf("DST day Last() = %v", got)
	}
}
