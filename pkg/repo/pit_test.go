package repo_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/store/mem"
)

func TestFindSnapshotAt(t *testing.T) {
	ctx := context.Background()
	_, rcp := newKey(t)
	r, _, err := repo.Init(ctx, mem.New(), repo.InitOptions{Recipients: []string{rcp}})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	for i, s := range []struct {
		id    string
		at    time.Duration
		comps []string
	}{{"aaaa0001", 0, []string{"d1"}}, {"aaaa0002", time.Hour, []string{"r2"}}, {"aaaa0003", 2 * time.Hour, []string{"d1", "r2"}}} {
		m := &manifest.Manifest{Format: manifest.FormatVersion, ID: s.id, Time: base.Add(s.at), Components: s.comps}
		if err := r.SaveManifest(ctx, m); err != nil {
			t.Fatalf("%d: %v", i, err)
		}
	}
	for _, c := range []struct {
		at        time.Duration
		component string
		want      string
	}{
		{0, "d1", "aaaa0001"},                // exactly at a snapshot's time
		{90 * time.Minute, "d1", "aaaa0001"}, // the r2-only snapshot in between does not count for d1
		{90 * time.Minute, "r2", "aaaa0002"}, //
		{90 * time.Minute, "", "aaaa0002"},   // any component
		{3 * time.Hour, "d1", "aaaa0003"},    // after the newest
		{2*time.Hour - time.Nanosecond, "r2", "aaaa0002"},
	} {
		m, err := r.FindSnapshotAt(ctx, base.Add(c.at), c.component)
		if err != nil || m.ID != c.want {
			t.Errorf("at +%s %q: got %v, %v; want %s", c.at, c.component, m, err, c.want)
		}
	}
	_, err = r.FindSnapshotAt(ctx, base.Add(-time.Second), "d1")
	if !errors.Is(err, repo.ErrSnapshotNotFound) || !strings.Contains(err.Error(), "before the oldest d1 snapshot (aaaa0001") {
		t.Errorf("before the first: %v", err)
	}
	_, err = r.FindSnapshotAt(ctx, base.Add(5*time.Hour), "do")
	if !errors.Is(err, repo.ErrSnapshotNotFound) || !strings.Contains(err.Error(), "no do snapshot") {
		t.Errorf("a component never backed up: %v", err)
	}
}

func TestLatestAndPointInTimePreferBackupsOverSafetySnapshots(t *testing.T) {
	ctx := context.Background()
	_, rcp := newKey(t)
	r, _, err := repo.Init(ctx, mem.New(), repo.InitOptions{Recipients: []string{rcp}})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	save := func(id string, at time.Duration, comps []string, labels map[string]string) {
		m := &manifest.Manifest{Format: manifest.FormatVersion, ID: id, Time: base.Add(at), Components: comps, Labels: labels}
		if err := r.SaveManifest(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	save("bbbb0001", 0, []string{"d1"}, nil)
	save("bbbb0002", time.Hour, []string{"d1"}, map[string]string{repo.SafetyLabel: "app"})
	save("bbbb0003", 2*time.Hour, []string{"do"}, map[string]string{repo.SafetyLabel: "do"})
	for _, c := range []struct{ comp, want string }{{"d1", "bbbb0001"}, {"", "bbbb0001"}, {"do", "bbbb0003"}} {
		m, err := r.FindSnapshot(ctx, "latest", c.comp)
		if err != nil || m.ID != c.want {
			t.Errorf("latest %q: %v %v, want %s", c.comp, m, err, c.want)
		}
	}
	if m, err := r.FindSnapshotAt(ctx, base.Add(90*time.Minute), "d1"); err != nil || m.ID != "bbbb0001" {
		t.Errorf("at +90m: %v %v, want the backup, not the safety snapshot", m, err)
	}
	if m, err := r.FindSnapshot(ctx, "bbbb0002", "d1"); err != nil || m.ID != "bbbb0002" {
		t.Errorf("a safety snapshot by id: %v %v", m, err)
	}
}
