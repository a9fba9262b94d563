package cli

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	configsrc "github.com/cfbackup/cfbackup/pkg/source/config"
)

// configRestoreFlags are restore's flags for the config component.
type configRestoreFlags struct {
	ToDir   string
	Diff    bool
	Scripts []string
	Zones   []string
}

func (b *configRestoreFlags) addFlags(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.BoolVar(&b.Diff, "diff", false, "with --component config: compare the snapshot's configuration with the live account; exit status 9 when they differ")
	fl.StringSliceVar(&b.Scripts, "config-script", nil, "with --component config: only these Workers scripts (repeatable)")
	fl.StringSliceVar(&b.Zones, "config-zone", nil, "with --component config --diff: zone IDs whose routes to read live (default: the zones the snapshot listed)")
}

// configRestorePlan is what --dry-run prints for --to-dir.
type configRestorePlan struct {
	Snapshot string   `json:"snapshot"`
	Account  string   `json:"account"`
	Target   string   `json:"target"`
	Files    []string `json:"files"`
}

// run writes a snapshot's configuration out (--to-dir) and/or compares it with the account (--diff).
// It never changes anything in the Cloudflare account.
func (b *configRestoreFlags) run(cmd *cobra.Command, o *RestoreOptions) error {
	b.ToDir = o.ToDir
	ctx := cmd.Context()
	if b.ToDir == "" && !b.Diff {
		return usageError{errors.New("--component config needs --to-dir DIR (write the configuration as files) and/or --diff (compare it with the live account); it is never applied to the account")}
	}
	if o.ToFile != "" || o.ToDatabase != "" || o.InPlace || o.Create || len(o.Tables) > 0 {
		return usageError{errors.New("--to-file, --to-database, --in-place, --create and --table are D1 options; with --component config use --to-dir or --diff")}
	}
	r, err := o.f.Repo(ctx)
	if err != nil {
		return err
	}
	m, err := r.FindSnapshot(ctx, o.Snapshot, configsrc.Component)
	if err != nil {
		return err
	}
	srcs := engine.SourcesOf(m, configsrc.Component)
	if len(srcs) == 0 {
		return fmt.Errorf("%w: snapshot %s has no Workers configuration (back it up with 'cfbackup backup --component config')", engine.ErrNotFound, m.ID)
	}
	if len(srcs) > 1 {
		return fmt.Errorf("snapshot %s holds the configuration of %d accounts; this version restores one", m.ID, len(srcs))
	}
	src := srcs[0]
	ids, err := o.f.Identities(true)
	if err != nil {
		return err
	}
	cat, err := engine.OpenCatalogue(m, ids)
	if err != nil {
		return err
	}
	eng := o.f.Engine(r)
	st, err := configsrc.Load(ctx, configsrc.Opener(eng.Opener(m, ids)), cat, src, b.Scripts)
	if err != nil {
		if errors.Is(err, configsrc.ErrNoScript) {
			return fmt.Errorf("%w: %v", engine.ErrNotFound, err)
		}
		return err
	}
	if b.ToDir != "" {
		if err := b.writeDir(o, m, src, st); err != nil {
			return err
		}
	}
	if !b.Diff {
		return nil
	}
	return b.diff(cmd, o, m, st)
}

func (b *configRestoreFlags) writeDir(o *RestoreOptions, m *manifest.Manifest, src manifest.Source, st *configsrc.State) error {
	out := o.f.IO.Out
	files := []string{filepath.Join(b.ToDir, "inventory.json")}
	for _, n := range st.ScriptNames() {
		files = append(files, filepath.Join(b.ToDir, "scripts", configsrc.FileName(n)))
	}
	if o.DryRun {
		p := configRestorePlan{Snapshot: m.ID, Account: src.ID, Target: "dir:" + b.ToDir, Files: files}
		if o.f.jsonOut {
			return writeJSON(out, map[string]any{"message_type": "plan", "dry_run": true, "plan": p})
		}
		fmt.Fprintf(out, "Would write the Workers configuration of account %s from snapshot %s (%s) into %s:\n", src.ID, m.ID, m.Time.Local().Format("2006-01-02 15:04:05"), b.ToDir)
		for _, f := range files {
			fmt.Fprintf(out, "  %s\n", f)
		}
		return nil
	}
	written, err := configsrc.WriteDir(b.ToDir, st, o.Yes)
	if err != nil {
		if errors.Is(err, configsrc.ErrExists) {
			return fmt.Errorf("%w: %v; nothing was written", engine.ErrRefused, err)
		}
		return fmt.Errorf("write the configuration into %s: %w (files written by this run were removed)", b.ToDir, err)
	}
	if o.f.jsonOut {
		return writeJSON(out, map[string]any{"message_type": "summary", "snapshot": m.ID, "account": src.ID, "target": "dir:" + b.ToDir, "files": written, "scripts": st.ScriptNames()})
	}
	fmt.Fprintf(out, "Wrote the Workers configuration of account %s from snapshot %s into %s: inventory.json and %d script file(s). Nothing was applied to the account.\n",
		src.ID, m.ID, b.ToDir, len(st.Scripts))
	return nil
}

func (b *configRestoreFlags) diff(cmd *cobra.Command, o *RestoreOptions, m *manifest.Manifest, old *configsrc.State) error {
	ctx := cmd.Context()
	cf, err := o.f.Cloudflare()
	if err != nil {
		return err
	}
	if cf.AccountID() != old.AccountID {
		fmt.Fprintf(o.f.IO.Err, "cfbackup: note: snapshot %s is of account %s; comparing with account %s\n", m.ID, old.AccountID, cf.AccountID())
	}
	changes, err := liveConfigDiff(ctx, o.f, cf, old, b.Zones, b.Scripts)
	if err != nil {
		return err
	}
	out := o.f.IO.Out
	if o.f.jsonOut {
		if changes == nil {
			changes = []configsrc.Change{}
		}
		if err := writeJSON(out, map[string]any{"message_type": "diff", "snapshot": m.ID, "time": m.Time, "account": cf.AccountID(), "same": len(changes) == 0, "changes": changes}); err != nil {
			return err
		}
	} else if len(changes) == 0 {
		fmt.Fprintf(out, "The Workers configuration of account %s matches snapshot %s (%s).\n", cf.AccountID(), m.ID, m.Time.Local().Format("2006-01-02 15:04:05"))
	} else {
		fmt.Fprintf(out, "The Workers configuration of account %s differs from snapshot %s (%s) in %d place(s)\n(- only in the snapshot, + only in the account, ~ changed: snapshot → account):\n",
			cf.AccountID(), m.ID, m.Time.Local().Format("2006-01-02 15:04:05"), len(changes))
		configsrc.WriteText(out, changes)
	}
	if len(changes) > 0 {
		scopes := map[string]bool{}
		for _, c := range changes {
			scopes[c.Scope] = true
		}
		list := make([]string, 0, len(scopes))
		for s := range scopes {
			list = append(list, s)
		}
		sort.Strings(list)
		return fmt.Errorf("%w: %d difference(s) in %s", configsrc.ErrDiffers, len(changes), strings.Join(list, ", "))
	}
	return nil
}

// liveConfigDiff reads the live account's configuration — routes of the zones given, else of those the
// snapshot listed; only the given scripts when any, else every live script (a script in the snapshot
// but gone from the account shows up as removed) — and compares the snapshot's with it.
func liveConfigDiff(ctx context.Context, f *Factory, cf configsrc.API, old *configsrc.State, zones, scripts []string) ([]configsrc.Change, error) {
	if len(zones) == 0 {
		if zr, ok := old.Inventory["zone_routes"].(configsrc.Doc); ok {
			for z := range zr {
				zones = append(zones, z)
			}
			sort.Strings(zones)
		}
	}
	live, err := configsrc.Capture(ctx, cf, configsrc.Options{Zones: zones, Log: f.Log()})
	if err != nil {
		return nil, err
	}
	if len(scripts) > 0 {
		keep := map[string]bool{}
		for _, s := range scripts {
			keep[s] = true
		}
		for n := range live.Scripts {
			if !keep[n] {
				delete(live.Scripts, n)
			}
		}
	}
	return configsrc.Diff(old, live), nil
}
