package cli

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/manifest"
)

// snapshotFilter is list's parsed --component/--label/--since/--source/--latest: checked before the
// repository is read, so a bad value is a usage error (exit 2) that names the flag.
type snapshotFilter struct {
	component string
	labels    map[string]string
	since     time.Time
	// sourceComp is set when --source was given as component:NAME.
	sourceComp, source string
	latest             int
}

func newSnapshotFilter(o *ListOptions, now time.Time) (*snapshotFilter, error) {
	sf := &snapshotFilter{component: o.Component, labels: map[string]string{}, latest: o.Latest}
	if o.Component != "" {
		if err := engine.ValidateComponents([]string{o.Component}); err != nil {
			return nil, usageError{fmt.Errorf("--component: %w", err)}
		}
	}
	for _, l := range o.Labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, usageError{fmt.Errorf("--label %q: give key=value, like --label env=prod", l)}
		}
		if old, dup := sf.labels[k]; dup && old != v {
			return nil, usageError{fmt.Errorf("--label %s is given twice with different values (%q, %q): a snapshot has one value per label", k, old, v)}
		}
		sf.labels[k] = v
	}
	since, err := parseSince(o.Since, now)
	if err != nil {
		return nil, err
	}
	sf.since = since
	if o.Source != "" {
		sf.source = o.Source
		if c, n, ok := strings.Cut(o.Source, ":"); ok && engine.ValidateComponents([]string{c}) == nil {
			sf.sourceComp, sf.source = c, n
		}
		if sf.source == "" {
			return nil, usageError{errors.New("--source: give a source name (a database, bucket or namespace), or component:NAME")}
		}
	}
	if o.Latest < 0 {
		return nil, usageError{fmt.Errorf("--latest %d: give a positive number of snapshots per component and source, like --latest 3", o.Latest)}
	}
	return sf, nil
}

// match applies every filter but --latest.
func (sf *snapshotFilter) match(m *manifest.Manifest) bool {
	if sf.component != "" && !containsStr(m.Components, sf.component) {
		return false
	}
	for k, v := range sf.labels {
		if got, ok := m.Labels[k]; !ok || got != v {
			return false
		}
	}
	if !sf.since.IsZero() && m.Time.Before(sf.since) {
		return false
	}
	if sf.source != "" && len(sf.sources(m)) == 0 {
		return false
	}
	return true
}

// sources are the snapshot's sources the filter concerns: those named by --source (and of
// --component), or all of them.
func (sf *snapshotFilter) sources(m *manifest.Manifest) []manifest.Source {
	var out []manifest.Source
	for _, s := range m.Sources {
		if sf.component != "" && s.Component != sf.component {
			continue
		}
		if sf.sourceComp != "" && s.Component != sf.sourceComp {
			continue
		}
		if sf.source != "" && s.Name != sf.source {
			continue
		}
		out = append(out, s)
	}
	return out
}

// apply filters snaps (newest first) and keeps their order. With --latest N a snapshot stays when it
// is among the N newest of any component+source it captured (like restic's --latest per host and
// paths); a snapshot that names no source counts under its components.
func (sf *snapshotFilter) apply(snaps []*manifest.Manifest) []*manifest.Manifest {
	seen := map[string]int{}
	out := []*manifest.Manifest{}
	for _, m := range snaps {
		if !sf.match(m) {
			continue
		}
		if sf.latest == 0 {
			out = append(out, m)
			continue
		}
		var groups []string
		for _, s := range sf.sources(m) {
			groups = append(groups, s.Component+"\x00"+s.Name)
		}
		if len(groups) == 0 {
			for _, c := range m.Components {
				groups = append(groups, c+"\x00")
			}
		}
		keep := false
		for _, g := range groups {
			if seen[g] < sf.latest {
				seen[g]++
				keep = true
			}
		}
		if keep {
			out = append(out, m)
		}
	}
	return out
}
