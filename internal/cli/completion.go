package cli

import (
	"context"
	"encoding/json"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/internal/config"
	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/layout"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// Dynamic shell completion (cobra's completion command and its hidden __complete): snapshot ids from
// the repository's listing, the values of enumerated flags. Completion runs on every TAB, so it is
// best-effort: bounded in time, silent on every error, and it never decrypts anything.

// completionTimeout bounds the repository listing behind a TAB.
const completionTimeout = 2 * time.Second

// flagValues are the fixed values of enumerated flags, wherever a command has them.
var flagValues = map[string]func() []string{
	"component":  source.Names,
	"log-format": func() []string { return []string{"text", "json"} },
	"log-level":  func() []string { return []string{"debug", "info", "warn", "error"} },
}

// commandFlagValues are enumerated flags whose values depend on the command.
var commandFlagValues = map[string]map[string][]string{
	"report": {"format": {"text", "json", "csv", "html"}},
}

// accountValues list a flag's values from the Cloudflare account (names as the flags take them):
// one API call each, bounded like the snapshot listing.
var accountValues = map[string]func(ctx context.Context, c *cloudflare.Client) ([]string, error){
	"d1-database": func(ctx context.Context, c *cloudflare.Client) ([]string, error) {
		dbs, err := c.ListDatabases(ctx)
		out := make([]string, 0, len(dbs))
		for _, d := range dbs {
			out = append(out, d.Name)
		}
		return out, err
	},
	"kv-namespace": func(ctx context.Context, c *cloudflare.Client) ([]string, error) {
		nss, err := c.ListKVNamespaces(ctx)
		out := make([]string, 0, len(nss))
		for _, n := range nss {
			out = append(out, n.Title)
		}
		return out, err
	},
}

// completeFromAccount completes a flag from the account (CLOUDFLARE_API_TOKEN and the account id
// from the environment or config), silently offering nothing when that is not possible.
func (f *Factory) completeFromAccount(list func(context.Context, *cloudflare.Client) ([]string, error)) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		const directive = cobra.ShellCompDirectiveNoFileComp
		cfg, err := config.Load(f.configFile, cmd.Flags(), f.Getenv)
		if err != nil {
			return nil, directive
		}
		f.cfg = cfg
		cf, err := f.Cloudflare()
		if err != nil {
			return nil, directive
		}
		ctx, cancel := context.WithTimeout(context.Background(), completionTimeout)
		defer cancel()
		names, err := list(ctx, cf)
		if err != nil {
			return nil, directive
		}
		var out []string
		for _, n := range names {
			if strings.HasPrefix(n, toComplete) {
				out = append(out, n)
			}
		}
		return out, directive
	}
}

// registerCompletions walks the tree once: commands that take a SNAPSHOT get snapshot ids, and
// enumerated flags their values (commands added later get both from their Use line and flag names).
func registerCompletions(root *cobra.Command, f *Factory) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.ValidArgsFunction == nil && strings.Contains(c.Use, "SNAPSHOT") {
			c.ValidArgsFunction = f.completeSnapshots
		}
		for name, values := range flagValues {
			registerValues(c, name, values())
		}
		for name, values := range commandFlagValues[commandName(c)] {
			registerValues(c, name, values)
		}
		for name, list := range accountValues {
			if c.LocalFlags().Lookup(name) != nil {
				_ = c.RegisterFlagCompletionFunc(name, f.completeFromAccount(list))
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

func registerValues(c *cobra.Command, name string, values []string) {
	if c.LocalFlags().Lookup(name) == nil && c.PersistentFlags().Lookup(name) == nil {
		return
	}
	_ = c.RegisterFlagCompletionFunc(name, func(_ *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
		return values, cobra.ShellCompDirectiveNoFileComp
	})
}

// completeSnapshots offers "latest" and the repository's snapshot ids, newest first, each described
// by its time. Only the listing is read (no manifest, no key needed).
func (f *Factory) completeSnapshots(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	const directive = cobra.ShellCompDirectiveNoFileComp
	if len(args) > 0 && !strings.Contains(cmd.Use, "...") {
		return nil, directive
	}
	cfg, err := config.Load(f.configFile, cmd.Flags(), f.Getenv)
	if err != nil || cfg.RequireRepository() != nil {
		return nil, directive
	}
	f.cfg = cfg
	ctx, cancel := context.WithTimeout(context.Background(), completionTimeout)
	defer cancel()
	st, err := f.Store(ctx)
	if err != nil {
		return nil, directive
	}
	var names []string
	_ = st.List(ctx, layout.Snapshots, func(oi store.ObjectInfo) error {
		if name, ok := layout.ManifestName(oi.Key); ok && layout.IsManifestKey(oi.Key) {
			names = append(names, name)
		}
		return nil
	})
	newestFirst(ctx, st, names)
	var out []string
	if strings.HasPrefix("latest", toComplete) {
		out = append(out, "latest\tthe newest snapshot")
	}
	for _, n := range names {
		id := manifest.IDFromKey(layout.Snapshots + n + layout.JSONSuffix)
		if id == "" || !strings.HasPrefix(id, toComplete) {
			continue
		}
		when := strings.TrimSuffix(n, "-"+id)
		out = append(out, id+"\t"+when)
	}
	return out, directive
}

// newestFirst orders manifest names (<time to the second>-<id>) as list does: by full time, newest
// first, ties by id. The key orders snapshots of different seconds; only snapshots sharing a second
// need their manifest's time, read from its first bytes (manifestTime), so a TAB reads one manifest
// head per snapshot that shares its second with another, and none otherwise.
func newestFirst(ctx context.Context, st store.Store, names []string) {
	sort.Sort(sort.Reverse(sort.StringSlice(names)))
	full := map[string]time.Time{}
	for i := 0; i < len(names); {
		j := i + 1
		sec := nameSecond(names[i])
		for j < len(names) && nameSecond(names[j]) == sec {
			j++
		}
		if j-i > 1 {
			for _, n := range names[i:j] {
				full[n] = manifestTime(ctx, st, layout.Snapshots+n+layout.JSONSuffix)
			}
			group := names[i:j]
			sort.SliceStable(group, func(a, b int) bool {
				ta, tb := full[group[a]], full[group[b]]
				if !ta.Equal(tb) {
					return ta.After(tb)
				}
				return group[a] > group[b]
			})
		}
		i = j
	}
}

// nameSecond is the time part of a manifest name.
func nameSecond(name string) string {
	s, _, _ := strings.Cut(name, "-")
	return s
}

// manifestHead bounds what completion reads of a manifest to find its time: "format", "id" and
// "time" are its first members.
const manifestHead = 4 << 10

// manifestTime is the "time" of the manifest at key, read from its first bytes (unauthenticated: it
// only orders the offers); zero when it can't be read, which sorts the snapshot last of its second.
func manifestTime(ctx context.Context, st store.Store, key string) time.Time {
	rc, err := st.Open(ctx, key, 0, manifestHead)
	if err != nil {
		return time.Time{}
	}
	defer rc.Close()
	dec := json.NewDecoder(io.LimitReader(rc, manifestHead))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return time.Time{}
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return time.Time{}
		}
		if k == "time" {
			var t time.Time
			if dec.Decode(&t) != nil {
				return time.Time{}
			}
			return t
		}
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return time.Time{}
		}
	}
	return time.Time{}
}
