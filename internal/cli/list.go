package cli

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/report"
)

// ListOptions are the flags of 'list'.
type ListOptions struct {
	f         *Factory
	Component string
	// Labels (k=v, all must match), Since (a duration back or a time), Source (a source name,
	// optionally component:name) and Latest (the N newest per component and source) narrow the list.
	Labels []string
	Since  string
	Source string
	Latest int
}

// NewCmdList lists snapshots.
func NewCmdList(f *Factory, runF func(*ListOptions) error) *cobra.Command {
	o := &ListOptions{f: f}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List snapshots, newest first",
		Long: `List the repository's snapshots, newest first: id, time, components, databases, original and stored
sizes, labels. It reads only plaintext manifest metadata and needs no identity.

On a terminal it prints a table; piped, one snapshot per line with tab-separated fields
(id, RFC 3339 time, components, databases, size and stored size in bytes, labels); --json for everything.

Filters combine (AND): --component, --label k=v (repeatable: every label must match), --since
(a duration back from now like 7d, or a time like 2026-01-31), --source NAME (a database, bucket or
namespace the snapshot captured; component:NAME to pick one component's), and --latest N (the N
newest snapshots of each component and source, applied after the other filters).`,
		Example: `  cfbackup list
  cfbackup list --json | jq -r '.[0].id'
  cfbackup list --component d1 --source app --latest 3
  cfbackup list --label env=prod --since 7d`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(o)
			}
			return listRun(cmd, o)
		},
	}
	cmd.Flags().StringVar(&o.Component, "component", "", "only snapshots that contain this component")
	cmd.Flags().StringArrayVar(&o.Labels, "label", nil, "only snapshots with this label, k=v (repeatable; all must match)")
	cmd.Flags().StringVar(&o.Since, "since", "", "only snapshots taken since: a duration back (7d, 12h) or a time (2026-01-31); docs/CONFIG.md \"Times and durations\"")
	cmd.Flags().StringVar(&o.Source, "source", "", "only snapshots that captured this source (database, bucket, namespace), or component:NAME")
	cmd.Flags().IntVar(&o.Latest, "latest", 0, "only the N newest snapshots of each component and source")
	return cmd
}

// listEntry is the JSON contract of one snapshot in 'list --json' (docs/CLI_JSON_OUTPUT.md).
// ListEntry is one snapshot in `list --json` (an array of them, newest first): the manifest's
// plaintext summary, readable without an identity.
type ListEntry struct {
	// ID is the snapshot id (any unique prefix names it on the command line); Time when it was taken (UTC).
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
	// Duration is how long the backup took (a Go duration string, "1m2.5s").
	Duration   string   `json:"duration"`
	Components []string `json:"components"`
	// Databases are the names of the snapshot's sources (every component's, despite the name).
	Databases []string `json:"databases"`
	// Items, Size (bytes before compression) and StoredSize (bytes stored) are the snapshot's totals;
	// Segments counts the segments it references (its own and reused older ones).
	Items      int64 `json:"items"`
	Size       int64 `json:"size"`
	StoredSize int64 `json:"stored_size"`
	Segments   int   `json:"segments"`
	// Labels (backup --label) and Host (where the backup ran) are omitted when empty.
	Labels map[string]string `json:"labels,omitempty"`
	Host   string            `json:"host,omitempty"`
	// Sources are the snapshot's sources: a D1 database, an R2 bucket, a DO namespace, the account.
	Sources []manifest.Source `json:"sources"`
	// Authenticity is "authenticated", "unchecked" (this host holds no key) or "legacy" (format 1).
	Authenticity string `json:"authenticity"`
	// Sharded, for a snapshot merged from the shards of one run (docs/SHARDING.md), is the run id,
	// the shard count and each shard's index, partial, host, start and end, objects and bytes; omitted
	// for other snapshots.
	Sharded *report.ShardedRun `json:"sharded,omitempty"`
}

func listRun(cmd *cobra.Command, o *ListOptions) error {
	ctx := cmd.Context()
	r, err := o.f.Repo(ctx)
	if err != nil {
		return err
	}
	filter, err := newSnapshotFilter(o, time.Now())
	if err != nil {
		return err
	}
	snaps, bad, err := r.ListSnapshots(ctx)
	if err != nil {
		return err
	}
	for k, e := range bad {
		o.f.Log().Warn("unreadable or unauthenticated manifest (not listed, never chosen)", "key", k, "err", e)
	}
	entries := []ListEntry{}
	for _, m := range filter.apply(snaps) {
		e := ListEntry{ID: m.ID, Time: m.Time, Duration: time.Duration(m.Duration).String(), Components: m.Components, Items: m.Items,
			Size: m.Size, StoredSize: m.StoredSize, Segments: len(m.Segments), Labels: m.Labels, Host: m.Host, Sources: m.Sources, Databases: []string{}, Authenticity: string(m.Auth), Sharded: report.Sharded(m)}
		for _, s := range m.Sources {
			e.Databases = append(e.Databases, s.Name)
		}
		entries = append(entries, e)
	}
	if o.f.jsonOut {
		return writeJSON(o.f.IO.Out, entries)
	}
	if len(entries) == 0 && len(snaps) > 0 {
		fmt.Fprintf(o.f.IO.Out, "No snapshot in %s matches the filters (%d snapshot(s) in all).\n", r.Store.Location(), len(snaps))
		return nil
	}
	if len(entries) == 0 {
		fmt.Fprintf(o.f.IO.Out, "No snapshots in %s yet. Take one with 'cfbackup backup'.\n", r.Store.Location())
		return nil
	}
	// A table for people on a terminal; plain tab-separated fields (exact bytes, RFC 3339) for pipes.
	if !isTerminal(o.f.IO.Out) {
		for _, e := range entries {
			fmt.Fprintf(o.f.IO.Out, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", e.ID, e.Time.Format(time.RFC3339), strings.Join(e.Components, ","),
				strings.Join(e.Databases, ","), e.Size, e.StoredSize, labelString(e.Labels))
		}
		return nil
	}
	switch {
	case r.Key() != nil && !r.Legacy():
		fmt.Fprintf(o.f.IO.Err, "Repository %s, format %d, key id %s: every snapshot listed is authenticated.\n", r.Config.ID, r.Config.Format, r.Key().ID())
	case r.Legacy():
		fmt.Fprintf(o.f.IO.Err, "Repository %s is format 1: snapshots are NOT authenticated (run 'cfbackup migrate').\n", r.Config.ID)
	default:
		fmt.Fprintf(o.f.IO.Err, "Repository %s: this host has no key, so the snapshots below are NOT checked (set CFBACKUP_WRITER_KEY_FILE or --identity-file).\n", r.Config.ID)
	}
	return writeListTable(o.f.IO.Out, entries)
}

// writeListTable is list's table for a terminal. A merged sharded snapshot is marked "(3 shards)"
// after its components, and its labels leave out the shard-* bookkeeping (list --json and report
// have the run in full).
func writeListTable(w io.Writer, entries []ListEntry) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	// Sources are databases, buckets, namespaces or an account: name them with their component.
	fmt.Fprintln(tw, "ID\tTIME\tCOMPONENTS\tSOURCES\tSIZE\tSTORED\tLABELS")
	for _, e := range entries {
		srcs := make([]string, 0, len(e.Sources))
		for _, s := range e.Sources {
			srcs = append(srcs, s.Component+":"+s.Name)
		}
		comps, labels := strings.Join(e.Components, ","), e.Labels
		if e.Sharded != nil {
			comps += " (" + e.Sharded.Marker() + ")"
			labels = map[string]string{}
			for k, v := range e.Labels {
				if !strings.HasPrefix(k, "shard-") {
					labels[k] = v
				}
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.Time.Local().Format("2006-01-02 15:04:05"), comps,
			strings.Join(srcs, ","), humanBytes(e.Size), humanBytes(e.StoredSize), labelString(labels))
	}
	return tw.Flush()
}

func labelString(m map[string]string) string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	for i, k := range ks {
		ks[i] = k + "=" + m[k]
	}
	return strings.Join(ks, ",")
}

func containsStr(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
