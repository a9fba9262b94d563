package source

import (
	"fmt"
	"sort"
	"strings"

	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/manifest"
)

// SourcesOf lists a snapshot's sources of one component, by name.
func SourcesOf(m *manifest.Manifest, component string) []manifest.Source {
	var out []manifest.Source
	for _, s := range m.Sources {
		if s.Component == component {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// PickSource finds the source a restore reads: the one named (by name or id), or the only one of its
// component; otherwise the error lists what the snapshot has (a usage error when none was named,
// errclass.NotFound when the named one is not there). what and whats name one and several sources
// ("R2 bucket", "R2 buckets"); flag is the option that picks one ("--r2-bucket").
func PickSource(m *manifest.Manifest, component, what, whats, flag, name string) (manifest.Source, error) {
	srcs := SourcesOf(m, component)
	if name != "" {
		if s, ok := m.SourceByName(component, name); ok {
			return s, nil
		}
	} else if len(srcs) == 1 {
		return srcs[0], nil
	}
	names := make([]string, 0, len(srcs))
	for _, s := range srcs {
		names = append(names, s.Name)
	}
	sort.Strings(names)
	if name == "" {
		return manifest.Source{}, errclass.Wrap(errclass.Usage, fmt.Errorf("snapshot %s has %d %s; pick one with %s (%s)", m.ID, len(srcs), whats, flag, strings.Join(names, ", ")))
	}
	return manifest.Source{}, fmt.Errorf("%w: %s %q is not in snapshot %s (it has: %s)", errclass.NotFound, what, name, m.ID, strings.Join(names, ", "))
}

// HumanBytes writes a size for people: "512 B", "1.5 MiB".
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
