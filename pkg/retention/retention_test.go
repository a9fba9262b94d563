package retention

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func snaps(times ...string) []Snapshot {
	var out []Snapshot
	for i, t := range times {
		out = append(out, Snapshot{ID: string(rune('a' + i)), Time: ts(t), Groups: []Group{{"d1", "app"}}})
	}
	return out
}

func kept(r Result) map[string][]string {
	out := map[string][]string{}
	for _, k := range r.Keep {
		out[k.ID] = k.Reasons
	}
	return out
}

func TestEvaluate(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	kolkata, err := time.LoadLocation("Asia/Kolkata")
	if err != nil {
		t.Fatal(err)
	}
	now := ts("2026-03-10T12:00:00Z")
	cases := []struct {
		name  string
		snaps []Snapshot
		ps    Policies
		want  map[string][]string
	}{
		{"last 2", snaps("2026-03-10T10:00:00Z", "2026-03-10T09:00:00Z", "2026-03-09T10:00:00Z"),
			Policies{Default: Policy{Last: 2}}, map[string][]string{"a": {"last"}, "b": {"last"}}},
		{"daily keeps newest per day", snaps("2026-03-10T10:00:00Z", "2026-03-10T09:00:00Z", "2026-03-09T10:00:00Z", "2026-03-08T23:59:59Z", "2026-03-08T00:00:00Z"),
			Policies{Default: Policy{Daily: 2}}, map[string][]string{"a": {"daily"}, "c": {"daily"}}},
		{"daily counts days with snapshots, not calendar days", snaps("2026-03-10T10:00:00Z", "2026-03-01T10:00:00Z", "2026-02-01T10:00:00Z"),
			Policies{Default: Policy{Daily: 2}}, map[string][]string{"a": {"daily"}, "b": {"daily"}}},
		{"day boundary in UTC", snaps("2026-03-10T00:30:00Z", "2026-03-09T23:30:00Z"),
			Policies{Default: Policy{Daily: 2}}, map[string][]string{"a": {"daily"}, "b": {"daily"}}},
		{"same two snapshots are one day in New York", snaps("2026-03-10T00:30:00Z", "2026-03-09T23:30:00Z"),
			Policies{Default: Policy{Daily: 2}, Location: ny}, map[string][]string{"a": {"daily"}}},
		{"hourly in a half-hour zone", snaps("2026-03-10T10:45:00Z", "2026-03-10T10:15:00Z"),
			// 16:15 and 15:45 in Kolkata: different hours there, the same hour in UTC
			Policies{Default: Policy{Hourly: 5}, Location: kolkata}, map[string][]string{"a": {"hourly"}, "b": {"hourly"}}},
		{"hourly in UTC", snaps("2026-03-10T10:45:00Z", "2026-03-10T10:15:00Z"),
			Policies{Default: Policy{Hourly: 5}}, map[string][]string{"a": {"hourly"}}},
		{"DST day in New York is one day of 23 hours", snaps("2026-03-09T03:30:00Z", "2026-03-08T05:30:00Z", "2026-03-08T04:30:00Z"),
			// 23:30 EDT and 00:30 EST on 2026-03-08 (spring forward), then 23:30 EST on the 7th
			Policies{Default: Policy{Daily: 3}, Location: ny}, map[string][]string{"a": {"daily"}, "c": {"daily"}}},
		{"the same snapshots in UTC", snaps("2026-03-09T03:30:00Z", "2026-03-08T05:30:00Z", "2026-03-08T04:30:00Z"),
			Policies{Default: Policy{Daily: 3}}, map[string][]string{"a": {"daily"}, "b": {"daily"}}},
		{"weekly uses ISO weeks (Sunday and Monday differ)", snaps("2026-03-09T10:00:00Z", "2026-03-08T10:00:00Z", "2026-03-07T10:00:00Z"),
			Policies{Default: Policy{Weekly: 2}}, map[string][]string{"a": {"weekly"}, "b": {"weekly"}}},
		{"weekly across the year boundary", snaps("2027-01-01T10:00:00Z", "2026-12-28T10:00:00Z", "2026-12-27T10:00:00Z"),
			// 2027-01-01 is in ISO week 2026-W53, as is 2026-12-28
			Policies{Default: Policy{Weekly: 5}}, map[string][]string{"a": {"weekly"}, "c": {"weekly"}}},
		{"monthly and yearly", snaps("2026-03-10T10:00:00Z", "2026-03-01T10:00:00Z", "2026-02-28T10:00:00Z", "2025-12-31T23:00:00Z", "2025-06-01T00:00:00Z"),
			Policies{Default: Policy{Monthly: 2, Yearly: 2}}, map[string][]string{"a": {"monthly", "yearly"}, "c": {"monthly"}, "d": {"yearly"}}},
		{"within is measured from the newest snapshot", snaps("2026-01-10T10:00:00Z", "2026-01-09T11:00:00Z", "2026-01-09T10:00:00Z"),
			Policies{Default: Policy{Within: 24 * time.Hour}}, map[string][]string{"a": {"within"}, "b": {"within"}}},
		{"label", []Snapshot{{ID: "a", Time: ts("2026-03-10T10:00:00Z")}, {ID: "b", Time: ts("2026-03-09T10:00:00Z"), Labels: map[string]string{"ticket": "OPS-1"}}, {ID: "c", Time: ts("2026-03-08T10:00:00Z"), Labels: map[string]string{"ticket": "OPS-2"}}},
			Policies{Default: Policy{Last: 1, Labels: map[string]string{"ticket": "OPS-1"}}}, map[string][]string{"a": {"last"}, "b": {"label"}}},
		{"several reasons", snaps("2026-03-10T10:00:00Z", "2026-03-09T10:00:00Z"),
			Policies{Default: Policy{Last: 1, Daily: 1, Monthly: 1}}, map[string][]string{"a": {"last", "daily", "monthly"}}},
		{"empty policy keeps everything", snaps("2026-03-10T10:00:00Z"), Policies{}, map[string][]string{"a": {"no-policy"}}},
		{"empty policy with AllowRemoveAll keeps nothing", snaps("2026-03-10T10:00:00Z"), Policies{AllowRemoveAll: true}, map[string][]string{}},
		{"a component without a policy keeps its snapshots", []Snapshot{
			{ID: "a", Time: ts("2026-03-10T10:00:00Z"), Groups: []Group{{"d1", "app"}}},
			{ID: "b", Time: ts("2026-03-09T10:00:00Z"), Groups: []Group{{"d1", "app"}}},
			{ID: "c", Time: ts("2026-03-08T10:00:00Z"), Groups: []Group{{"r2", "media"}}},
		}, Policies{Components: map[string]Policy{"d1": {Last: 1}}}, map[string][]string{"a": {"last"}, "c": {"no-policy"}}},
		{"per component and per source", []Snapshot{
			{ID: "a", Time: ts("2026-03-10T10:00:00Z"), Groups: []Group{{"d1", "app"}, {"r2", "media"}}},
			{ID: "b", Time: ts("2026-03-09T10:00:00Z"), Groups: []Group{{"d1", "app"}}},
			{ID: "c", Time: ts("2026-03-08T10:00:00Z"), Groups: []Group{{"r2", "media"}}},
			{ID: "d", Time: ts("2026-03-07T10:00:00Z"), Groups: []Group{{"d1", "other"}}},
			{ID: "e", Time: ts("2026-03-06T10:00:00Z"), Groups: []Group{{"d1", "other"}}},
		}, Policies{Components: map[string]Policy{"d1": {Last: 1}, "r2": {Last: 2}}, Sources: map[string]Policy{"d1/app": {Last: 2}}},
			map[string][]string{"a": {"last"}, "b": {"last"}, "c": {"last"}, "d": {"last"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := Evaluate(c.snaps, c.ps, now)
			got := kept(r)
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("kept %v, want %v", got, c.want)
			}
			if len(r.Keep)+len(r.Remove) != len(c.snaps) {
				t.Fatalf("keep %d + remove %d != %d", len(r.Keep), len(r.Remove), len(c.snaps))
			}
			for _, s := range r.Remove {
				if _, ok := c.want[s.ID]; ok {
					t.Fatalf("%s both kept and removed", s.ID)
				}
			}
		})
	}
}

func TestRequireWithin(t *testing.T) {
	now := ts("2026-03-10T12:00:00Z")
	ps := Policies{Components: map[string]Policy{"d1": {Last: 5, RequireWithin: 26 * time.Hour}}}
	r := Evaluate(snaps("2026-03-09T11:00:00Z"), ps, now)
	if len(r.Violations) != 0 {
		t.Fatalf("25h-old snapshot violates 26h: %v", r.Violations)
	}
	r = Evaluate(snaps("2026-03-09T09:00:00Z"), ps, now)
	if len(r.Violations) != 1 || !strings.Contains(r.Violations[0].Message, "d1/app") || !strings.Contains(r.Violations[0].Message, "27h") {
		t.Fatalf("violations %v", r.Violations)
	}
}

func TestParseConfig(t *testing.T) {
	ps, err := ParseConfig(map[string]any{
		"timezone": "Europe/Berlin",
		"default":  map[string]any{"keep_daily": 7},
		"d1":       map[string]any{"keep_last": "3", "keep_within": "30d", "require_within": "26h", "keep_label": []any{"ticket=OPS-1"}},
		"sources":  map[string]any{"r2/media": map[string]any{"keep_monthly": 12}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if ps.Location.String() != "Europe/Berlin" || ps.Default.Daily != 7 || ps.Components["d1"].Last != 3 ||
		ps.Components["d1"].Within != 30*24*time.Hour || ps.Components["d1"].RequireWithin != 26*time.Hour ||
		ps.Components["d1"].Labels["ticket"] != "OPS-1" || ps.Sources["r2/media"].Monthly != 12 {
		t.Fatalf("parsed %+v", ps)
	}
	if p := ps.For(Group{"r2", "media"}); p.Monthly != 12 {
		t.Fatalf("For r2/media = %+v", p)
	}
	if p := ps.For(Group{"do", "x"}); p.Daily != 7 {
		t.Fatalf("For do/x = %+v", p)
	}
	for _, bad := range []struct {
		block map[string]any
		want  string
	}{
		{map[string]any{"d1": map[string]any{"keep_dayly": 3}}, "unknown key retention.d1.keep_dayly"},
		{map[string]any{"d2": map[string]any{"keep_daily": 3}}, "unknown key retention.d2"},
		{map[string]any{"d1": map[string]any{"keep_daily": -1}}, "keep_daily is -1"},
		{map[string]any{"d1": map[string]any{"keep_within": "soon"}}, "keep_within"},
		{map[string]any{"timezone": "Mars/Olympus"}, "timezone"},
		{map[string]any{"sources": map[string]any{"app": map[string]any{}}}, "component/source"},
	} {
		_, err := ParseConfig(bad.block)
		if !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%v: err %v, want %q", bad.block, err, bad.want)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"26h": 26 * time.Hour, "30d": 720 * time.Hour, "2w": 336 * time.Hour, "1d12h": 36 * time.Hour, "90m": 90 * time.Minute, "1.5d": 36 * time.Hour, "0": 0} {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("%s: %v %v, want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1d", "5", "d", "3x"} {
		if _, err := ParseDuration(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
	if FormatDuration(720*time.Hour) != "30d" || FormatDuration(26*time.Hour) != "26h0m0s" {
		t.Error("FormatDuration")
	}
}
