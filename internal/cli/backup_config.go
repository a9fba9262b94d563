package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/pkg/engine"
	configsrc "github.com/cfbackup/cfbackup/pkg/source/config"
)

// configBackupFlags are backup's flags for the config component.
type configBackupFlags struct {
	Scripts []string
	Zones   []string
}

func (b *configBackupFlags) addFlags(cmd *cobra.Command) {
	cmd.Flags().StringSliceVar(&b.Scripts, "config-script", nil, "with --component config: only these Workers scripts (repeatable; default every script)")
	cmd.Flags().StringSliceVar(&b.Zones, "config-zone", nil, "with --component config: also list the Workers routes of these zone IDs (repeatable; needs Workers Routes Read)")
}

// configPlan is what --dry-run shows for the config component.
type configPlan struct {
	Account string   `json:"account"`
	Scripts []string `json:"scripts"`
	Zones   []string `json:"zones,omitempty"`
}

// plan adds the config sources to the backup plan: the account's Workers scripts are listed now (to
// check --config-script and show the plan); the configuration is read when the capture runs.
func (b *configBackupFlags) plan(ctx context.Context, o *BackupOptions, eng *engine.Engine, plan *engine.BackupPlan) error {
	cf, err := o.f.Cloudflare()
	if err != nil {
		return err
	}
	raw, err := cf.ListWorkerScripts(ctx)
	if err != nil {
		return err
	}
	var all []string
	for _, r := range raw {
		var e struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(r, &e) == nil && e.ID != "" {
			all = append(all, e.ID)
		}
	}
	sort.Strings(all)
	scripts := all
	if len(b.Scripts) > 0 {
		have := map[string]bool{}
		for _, n := range all {
			have[n] = true
		}
		for _, n := range b.Scripts {
			if !have[n] {
				return fmt.Errorf("%w: --config-script %q: %v (scripts in account %s: %s)", engine.ErrNotFound, n, configsrc.ErrNoScript, cf.AccountID(), strings.Join(all, ", "))
			}
		}
		scripts = b.Scripts
	}
	if plan.Details == nil {
		plan.Details = map[string]any{}
	}
	plan.Details[configsrc.Component] = configPlan{Account: cf.AccountID(), Scripts: scripts, Zones: b.Zones}
	opts := configsrc.Options{Scripts: b.Scripts, Zones: b.Zones}
	plan.AddCapture(engine.Capture{Component: configsrc.Component, Name: cf.AccountID(), Run: func(ctx context.Context, s *engine.Session) error {
		opts.Log = s.Log
		s.Log.Info("backing up the Workers configuration", "account", cf.AccountID(), "scripts", len(scripts))
		st, err := configsrc.Capture(ctx, cf, opts)
		if err != nil {
			return fmt.Errorf("back up the Workers configuration: %w", err)
		}
		for _, p := range st.Problems {
			s.Log.Warn("configuration part not captured (recorded as \"unavailable\" in the snapshot)", "part", p)
		}
		src, items, err := configsrc.Backup(ctx, s.Writer, st)
		if err != nil {
			return fmt.Errorf("back up the Workers configuration: %w", err)
		}
		s.Add(src, items...)
		return nil
	}})
	return nil
}

func (b *configBackupFlags) printPlan(w io.Writer, plan *engine.BackupPlan) {
	p, ok := plan.Details[configsrc.Component].(configPlan)
	if !ok {
		return
	}
	fmt.Fprintf(w, "Would back up the Workers configuration of account %s: %d script(s) and the D1/R2/Durable Object inventory:\n", p.Account, len(p.Scripts))
	for _, s := range p.Scripts {
		fmt.Fprintf(w, "  script %s\n", s)
	}
	if len(p.Zones) > 0 {
		fmt.Fprintf(w, "  routes of zone(s) %s\n", strings.Join(p.Zones, ", "))
	}
}
