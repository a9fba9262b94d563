// Package timespec is the one grammar of every time and duration flag of cfbackup (--at, --since,
// --until, --keep-within, --grace, --retry-lock, require_within…), documented in docs/CONFIG.md
// ("Times and durations").
//
// Durations are one or more NUMBER UNIT parts, the number possibly fractional, the unit one of s, m,
// h, d (24 hours) and w (7 days): 90s, 36h, 1d12h, 1.5d, 2w; "0" alone is zero.
//
// Times are one of:
//
//	now, today, yesterday              (today and yesterday are whole local days)
//	DURATION ago                       2h ago, 1d12h ago, 2w ago
//	2026-12-03T13:19:44Z               RFC 3339 with Z or an offset (+01:00), fraction allowed
//	2026-12-03 13:19:44+01:00          the same with a space for the T
//	2026-12-03 13:19:44                no zone: local time (TZ is honoured)
//	2026-12-03T13:19  2026-12-03 13:19 to the minute, local time
//	2026-12-03                         a whole local day
//
// A time keeps the precision it was written with: 2026-12-03T13:19:44Z is the whole second
// 13:19:44.000–13:19:44.999999999, so a snapshot taken at 13:19:44.6 is "at or before" it. Commands
// that look for the newest thing at or before a time use Last; those that start a period use Time.
package timespec

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/cfbackup/cfbackup/pkg/errclass"
)

// ErrSyntax is wrapped by every parse error.
var ErrSyntax = errclass.New(errclass.Usage, "invalid time or duration")

// DurationHelp and TimeHelp are the short forms error messages show.
const (
	DurationHelp = "a duration such as 90s, 45m, 36h, 1d12h, 1.5d or 2w"
	TimeHelp     = "a time such as 2026-12-03T13:19:44Z (RFC 3339), '2026-12-03 13:19:44' (local time), 2026-12-03, '2h ago', now or yesterday"
)

var units = map[string]time.Duration{
	"s": time.Second,
	"m": time.Minute,
	"h": time.Hour,
	"d": 24 * time.Hour,
	"w": 7 * 24 * time.Hour,
}

// ParseDuration reads a non-negative duration: NUMBER UNIT parts (1d12h, 1.5d, 90m, 2w) or "0".
func ParseDuration(s string) (time.Duration, error) {
	in := s
	s = strings.TrimSpace(s)
	if s == "0" {
		return 0, nil
	}
	if s == "" {
		return 0, fmt.Errorf("%w: empty duration: give %s", ErrSyntax, DurationHelp)
	}
	if strings.HasPrefix(s, "-") {
		return 0, fmt.Errorf("%w: duration %q is negative", ErrSyntax, in)
	}
	var total float64
	rest := s
	for rest != "" {
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		j := i
		for j < len(rest) && (rest[j] >= 'a' && rest[j] <= 'z') {
			j++
		}
		if i == 0 || j == i {
			return 0, fmt.Errorf("%w: duration %q: give %s", ErrSyntax, in, DurationHelp)
		}
		n, err := strconv.ParseFloat(rest[:i], 64)
		unit, ok := units[rest[i:j]]
		if err != nil || !ok {
			return 0, fmt.Errorf("%w: duration %q: give %s", ErrSyntax, in, DurationHelp)
		}
		total += n * float64(unit)
		rest = strings.TrimLeft(rest[j:], " ")
	}
	if total > math.MaxInt64 {
		return 0, fmt.Errorf("%w: duration %q is too long", ErrSyntax, in)
	}
	return time.Duration(math.Round(total)), nil
}

// Time is a point in time as written: the instant and how precisely it was given.
type Time struct {
	// Time is the instant written (the start of its precision).
	Time time.Time
	// Precision is the span the text names: 0 for an exact instant (now, '2h ago'), a second for
	// 13:19:44, a millisecond for 13:19:44.600, a day for a date (23 or 25 hours on DST days).
	Precision time.Duration
}

// Last is the last instant the text covers: Time plus Precision less a nanosecond (Time when exact).
// "At or before 13:19:44" means "not after Last".
func (t Time) Last() time.Time {
	if t.Precision <= 0 {
		return t.Time
	}
	return t.Time.Add(t.Precision - time.Nanosecond)
}

// Bare says what a duration alone (no "ago") means where a time is expected.
type Bare int

const (
	// BareNone refuses a bare duration (--at: "2h" might mean 02:00).
	BareNone Bare = iota
	// BarePast reads "90d" as 90 days ago (--since).
	BarePast
	// BareFuture reads "90d" as 90 days from now (--until).
	BareFuture
)

// layouts without a zone, read in the given location, with their precision.
var localLayouts = []struct {
	layout string
	prec   time.Duration
}{
	{"2006-01-02T15:04:05", time.Second},
	{"2006-01-02T15:04", time.Minute},
}

// ParseTime reads a time (see the package comment) relative to now; times without a zone are in loc
// (nil: time.Local, which honours TZ).
func ParseTime(s string, now time.Time, loc *time.Location, bare Bare) (Time, error) {
	if loc == nil {
		loc = time.Local
	}
	in := s
	s = strings.TrimSpace(s)
	low := strings.ToLower(s)
	switch low {
	case "":
		return Time{}, fmt.Errorf("%w: empty time: give %s", ErrSyntax, TimeHelp)
	case "now":
		return Time{Time: now}, nil
	case "today", "yesterday":
		n := now.In(loc)
		day := time.Date(n.Year(), n.Month(), n.Day(), 0, 0, 0, 0, loc)
		if low == "yesterday" {
			day = day.AddDate(0, 0, -1)
		}
		return wholeDay(day), nil
	}
	if d, ok := strings.CutSuffix(low, " ago"); ok {
		dur, err := ParseDuration(d)
		if err != nil {
			return Time{}, fmt.Errorf("%w: %q: give %s before 'ago'", ErrSyntax, in, DurationHelp)
		}
		return Time{Time: now.Add(-dur)}, nil
	}
	// Dates and times: accept a space (or a lowercase t) for the T and a lowercase z.
	norm := s
	if len(norm) > 10 && (norm[10] == ' ' || norm[10] == 't') {
		norm = norm[:10] + "T" + strings.TrimLeft(norm[11:], " ")
	}
	if strings.HasSuffix(norm, "z") {
		norm = norm[:len(norm)-1] + "Z"
	}
	if t, err := time.Parse(time.RFC3339Nano, norm); err == nil {
		return Time{Time: t, Precision: fractionPrecision(norm)}, nil
	}
	if t, err := time.Parse("2006-01-02T15:04Z07:00", norm); err == nil {
		return Time{Time: t, Precision: time.Minute}, nil
	}
	if t, err := time.ParseInLocation("2006-01-02T15:04:05.999999999", norm, loc); err == nil && strings.Contains(norm, ".") {
		return Time{Time: t, Precision: fractionPrecision(norm)}, nil
	}
	for _, l := range localLayouts {
		if t, err := time.ParseInLocation(l.layout, norm, loc); err == nil {
			return Time{Time: t, Precision: l.prec}, nil
		}
	}
	if t, err := time.ParseInLocation("2006-01-02", norm, loc); err == nil {
		return wholeDay(t), nil
	}
	if bare != BareNone {
		if d, err := ParseDuration(s); err == nil {
			if bare == BareFuture {
				return Time{Time: now.Add(d)}, nil
			}
			return Time{Time: now.Add(-d)}, nil
		}
	}
	help := TimeHelp
	switch bare {
	case BarePast:
		help += ", or a duration back from now (90d)"
	case BareFuture:
		help += ", or a duration from now (90d)"
	}
	return Time{}, fmt.Errorf("%w: %q: give %s", ErrSyntax, in, help)
}

// wholeDay is the local day starting at midnight day.
func wholeDay(day time.Time) Time {
	return Time{Time: day, Precision: day.AddDate(0, 0, 1).Sub(day)}
}

// fractionPrecision is the precision of an RFC 3339 text: a second, or as many fractional digits as
// it has (…:44.6 → 100ms).
func fractionPrecision(s string) time.Duration {
	i := strings.IndexByte(s, '.')
	if i < 0 {
		return time.Second
	}
	digits := 0
	for _, c := range s[i+1:] {
		if c < '0' || c > '9' {
			break
		}
		digits++
	}
	p := time.Second
	for ; digits > 0 && p > time.Nanosecond; digits-- {
		p /= 10
	}
	return p
}
