// Package kv backs up and restores Workers KV namespaces (docs/KV.md): keys listed with cursors,
// values read in bulk (binary values key by key), batches of pairs stored as encrypted "entries"
// items with their metadata and expirations, unchanged batches reused from the parent snapshot
// (--kv-incremental), restores by bulk writes with confirmation, a safety snapshot of exactly the
// keys overwritten and an undo command, and test-restores into a scratch directory.
package kv

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"

	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/source"
)

// Component is the --component value and the manifest's component name.
const Component = "kv"

// Catalogue kinds: a batch of pairs; the keys a restore of the snapshot deletes (safety snapshots).
const (
	KindEntries = "entries"
	KindAbsent  = "absent"
)

func init() { source.Register(func() source.Component { return &kvComponent{} }) }

// kvComponent holds one command run's KV flags.
type kvComponent struct {
	namespaces  []string        // --kv-namespace (backup: which to capture; restore, test-restore: which to read)
	incremental bool            // --kv-incremental
	toNamespace string          // --to-namespace
	keys        func() []string // --key (shared with r2)
	concurrency int             // --kv-concurrency
}

func (*kvComponent) Name() string  { return Component }
func (*kvComponent) Title() string { return "KV namespace" }

func (k *kvComponent) Flags(verb source.Verb, fs *pflag.FlagSet) {
	switch verb {
	case source.VerbBackup:
		fs.StringArrayVar(&k.namespaces, "kv-namespace", nil, "kv: namespace to back up (title or id; repeatable; default: every namespace)")
		fs.BoolVar(&k.incremental, "kv-incremental", false, "kv: reuse batches whose keys, metadata and expirations are unchanged since the parent snapshot without reading their values (a value rewritten with identical metadata is then missed; docs/KV.md)")
		fs.IntVar(&k.concurrency, "kv-concurrency", DefaultConcurrency, "kv: bulk reads in flight")
	case source.VerbRestore:
		fs.StringArrayVar(&k.namespaces, "kv-namespace", nil, "kv: namespace in the snapshot (title or id; default: every one)")
		fs.StringVar(&k.toNamespace, "to-namespace", "", "kv: restore into this namespace (title or id) instead of the original")
		k.keys = source.SharedStringArray(fs, "key", source.KeyUsage)
	case source.VerbTestRestore:
		fs.StringArrayVar(&k.namespaces, "kv-namespace", nil, "kv: only these namespaces of the snapshot (title or id)")
	}
}

// BackupPlanJSON is backup --dry-run --json's "kv" detail.
type BackupPlanJSON struct {
	Namespaces  []cloudflare.KVNamespace `json:"namespaces"`
	Incremental bool                     `json:"incremental"`
}

func (k *kvComponent) PlanBackup(ctx context.Context, env source.Env, req source.BackupRequest) (*source.BackupPlan, error) {
	c, err := env.Cloudflare()
	if err != nil {
		return nil, err
	}
	all, err := c.ListKVNamespaces(ctx)
	if err != nil {
		return nil, err
	}
	var pick []cloudflare.KVNamespace
	if len(k.namespaces) == 0 {
		pick = all
	} else {
		for _, ref := range k.namespaces {
			n, err := c.ResolveKVNamespace(ctx, ref)
			if err != nil {
				return nil, err
			}
			pick = append(pick, n)
		}
	}
	if len(pick) == 0 {
		return nil, fmt.Errorf("%w: no KV namespaces in this account", cloudflare.ErrNotFound)
	}
	if k.incremental && len(req.WriterSecret) == 0 {
		env.Log().Warn("--kv-incremental needs the writer secret: every value is read", "err", req.SecretErr)
	}
	plan := &source.BackupPlan{Components: []string{Component}}
	for _, n := range pick {
		plan.AddCapture(source.Capture{Component: Component, Name: n.Title, Run: func(ctx context.Context, s *source.Session) error {
			st, err := Backup(ctx, c, s, BackupOptions{Namespace: n, WriterSecret: req.WriterSecret, Incremental: k.incremental,
				Concurrency: k.concurrency, Log: env.Log(), Progress: progressOf(s)})
			if err != nil {
				return err
			}
			env.Log().Info("KV namespace backed up", "namespace", n.Title, "keys", st.Keys, "reused", st.Reused, "skipped", st.Skipped,
				"batches", st.Batches, "bulk_reads", st.BulkGets, "single_reads", st.SingleGets)
			if st.Skipped > 0 {
				fmt.Fprintf(env.Stderr(), "KV namespace %s: %d key(s) deleted or expired between listing and reading were left out.\n", n.Title, st.Skipped)
			}
			return nil
		}})
	}
	plan.SetDetails(Component, BackupPlanJSON{Namespaces: pick, Incremental: k.incremental}, func(w io.Writer) {
		fmt.Fprintf(w, "KV namespaces (%d):\n", len(pick))
		for _, n := range pick {
			fmt.Fprintf(w, "  %s (%s)\n", n.Title, n.ID)
		}
		if k.incremental {
			fmt.Fprintln(w, "  incremental: batches with an unchanged listing are reused from the parent snapshot")
		}
	})
	return plan, nil
}

// sources picks the snapshot's KV sources named by --kv-namespace (all when none is named).
func (k *kvComponent) sources(req source.RestoreRequest) ([]sourceRef, error) {
	var out []sourceRef
	for _, s := range req.Snapshot.Sources {
		if s.Component != Component {
			continue
		}
		if len(k.namespaces) > 0 {
			ok := false
			for _, n := range k.namespaces {
				ok = ok || n == s.ID || n == s.Name
			}
			if !ok {
				continue
			}
		}
		out = append(out, sourceRef{ID: s.ID, Title: s.Name})
	}
	if len(out) == 0 {
		var have []string
		for _, s := range req.Snapshot.Sources {
			if s.Component == Component {
				have = append(have, s.Name)
			}
		}
		return nil, fmt.Errorf("%w: snapshot %s holds no KV namespace %s (it holds: %s)", errclass.NotFound, req.Snapshot.ID,
			strings.Join(k.namespaces, ", "), strings.Join(have, ", "))
	}
	return out, nil
}

type sourceRef struct {
	ID    string `json:"id"`
	Title string `json:"title"`
}

// CheckFlags refuses a bad restore before anything is read: other components' targets, and
// --to-dir with --to-namespace.
func (k *kvComponent) CheckFlags(verb source.Verb, fs *pflag.FlagSet) error {
	if verb != source.VerbRestore {
		return nil
	}
	for _, f := range []string{"to-file", "to-database", "in-place", "table"} {
		if fs.Changed(f) {
			return fmt.Errorf("%w: --%s is a D1 option; KV restores go to a namespace (--to-namespace) or a directory (--to-dir)", errclass.Usage, f)
		}
	}
	if k.toNamespace != "" && fs.Changed("to-dir") {
		return fmt.Errorf("%w: --to-dir and --to-namespace exclude each other", errclass.Usage)
	}
	return nil
}

var _ source.FlagChecker = (*kvComponent)(nil)
