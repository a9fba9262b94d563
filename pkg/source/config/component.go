package config

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/pflag"

	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/source"
)

func init() { source.Register(NewComponent) }

// NewComponent is the config component (pkg/source): the account's Workers configuration and
// resource inventory. It is never applied to the account.
func NewComponent() source.Component { return &component{} }

// component holds the config flags of one command run.
type component struct {
	Scripts []string // --config-script
	Zones   []string // --config-zone
	Diff    bool     // restore --diff
}

func (c *component) Name() string  { return Component }
func (c *component) Title() string { return "Workers configuration" }

// Flags binds the config flags of verb (test-restore's --diff is the CLI's: it reaches every
// component as TestRestoreRequest.Diff).
func (c *component) Flags(verb source.Verb, fs *pflag.FlagSet) {
	switch verb {
	case source.VerbBackup:
		fs.StringSliceVar(&c.Scripts, "config-script", nil, "with --component config: only these Workers scripts (repeatable; default every script)")
		fs.StringSliceVar(&c.Zones, "config-zone", nil, "with --component config: also list the Workers routes of these zone IDs (repeatable; needs Workers Routes Read)")
	case source.VerbRestore:
		fs.BoolVar(&c.Diff, "diff", false, "with --component config: compare the snapshot's configuration with the live account; exit status 9 when they differ")
		fs.StringSliceVar(&c.Scripts, "config-script", nil, "with --component config: only these Workers scripts (repeatable)")
		fs.StringSliceVar(&c.Zones, "config-zone", nil, "with --component config --diff: zone IDs whose routes to read live (default: the zones the snapshot listed)")
	}
}

// api is the account's REST API as this package reads it.
func api(env source.Env) (API, error) {
	cf, err := env.Cloudflare()
	if err != nil {
		return nil, err
	}
	return cf, nil
}

// BackupDetails is the config part of backup --dry-run --json ("details": {"config": …}).
type BackupDetails struct {
	Account string   `json:"account"`
	Scripts []string `json:"scripts"`
	Zones   []string `json:"zones,omitempty"`
}

// PlanBackup lists the account's Workers scripts now (to check --config-script and show the plan);
// the configuration is read when the capture runs.
func (c *component) PlanBackup(ctx context.Context, env source.Env, req source.BackupRequest) (*source.BackupPlan, error) {
	cf, err := api(env)
	if err != nil {
		return nil, err
	}
	all, err := scriptNames(ctx, cf)
	if err != nil {
		return nil, err
	}
	scripts := all
	if len(c.Scripts) > 0 {
		have := map[string]bool{}
		for _, n := range all {
			have[n] = true
		}
		for _, n := range c.Scripts {
			if !have[n] {
				return nil, fmt.Errorf("%w: --config-script %q: %v (scripts in account %s: %s)", errclass.NotFound, n, ErrNoScript, cf.AccountID(), strings.Join(all, ", "))
			}
		}
		scripts = c.Scripts
	}
	d := BackupDetails{Account: cf.AccountID(), Scripts: scripts, Zones: c.Zones}
	plan := &source.BackupPlan{Components: []string{Component}}
	plan.SetDetails(Component, d, d.text)
	plan.AddCapture(c.capture(cf, len(scripts)))
	return plan, nil
}

// scriptNames lists the account's Workers scripts, sorted.
func scriptNames(ctx context.Context, cf API) ([]string, error) {
	raw, err := cf.ListWorkerScripts(ctx)
	if err != nil {
		return nil, err
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
	return all, nil
}

func (d BackupDetails) text(w io.Writer) {
	fmt.Fprintf(w, "Would back up the Workers configuration of account %s: %d script(s) and the D1/R2/Durable Object inventory:\n", d.Account, len(d.Scripts))
	for _, s := range d.Scripts {
		fmt.Fprintf(w, "  script %s\n", s)
	}
	if len(d.Zones) > 0 {
		fmt.Fprintf(w, "  routes of zone(s) %s\n", strings.Join(d.Zones, ", "))
	}
}

// capture reads the configuration and stores it as documents.
func (c *component) capture(cf API, scripts int) source.Capture {
	opts := Options{Scripts: c.Scripts, Zones: c.Zones}
	return source.Capture{Component: Component, Name: cf.AccountID(), Run: func(ctx context.Context, s *source.Session) error {
		opts.Log = s.Log
		s.Log.Info("backing up the Workers configuration", "account", cf.AccountID(), "scripts", scripts)
		st, err := Capture(ctx, cf, opts)
		if err != nil {
			return fmt.Errorf("back up the Workers configuration: %w", err)
		}
		for _, p := range st.Problems {
			s.Log.Warn("configuration part not captured (recorded as \"unavailable\" in the snapshot)", "part", p)
		}
		src, items, err := Backup(ctx, s.Writer, st)
		if err != nil {
			return fmt.Errorf("back up the Workers configuration: %w", err)
		}
		s.Add(src, items...)
		return nil
	}}
}

// LiveDiff reads the live account's configuration — routes of the zones given, else of those the
// snapshot listed; only the given scripts when any, else every live script (a script in the snapshot
// but gone from the account shows up as removed) — and compares the snapshot's with it.
func LiveDiff(ctx context.Context, cf API, old *State, zones, scripts []string, log *slog.Logger) ([]Change, error) {
	if len(zones) == 0 {
		if zr, ok := old.Inventory["zone_routes"].(Doc); ok {
			for z := range zr {
				zones = append(zones, z)
			}
			sort.Strings(zones)
		}
	}
	live, err := Capture(ctx, cf, Options{Zones: zones, Log: log})
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
	return Diff(old, live), nil
}

// TestRestore decrypts and parses every configuration document of the snapshot, compares each with
// the catalogue, writes them into scratch as 'restore --to-dir' does and reads them back; with
// req.Diff it also compares the result with the live account (differences are reported, not
// failures: the account may have changed since the snapshot).
func (c *component) TestRestore(ctx context.Context, env source.Env, req source.TestRestoreRequest) ([]source.TestRestoreCheck, error) {
	var out []source.TestRestoreCheck
	for _, src := range source.SourcesOf(req.Snapshot, Component) {
		chk := source.TestRestoreCheck{Component: Component, Source: src.Name, Checks: []string{}, Problems: []string{}}
		res, err := TestRestore(ctx, Opener(req.Open), req.Catalogue, src, filepath.Join(req.Scratch, src.ID))
		if err != nil {
			return nil, err
		}
		chk.Items, chk.Bytes = res.Items, res.Bytes
		chk.Checks = append(chk.Checks, res.Checks...)
		for _, p := range res.Problems {
			chk.Fail(p.Kind, p.Text)
		}
		if req.Diff && res.State.Inventory != nil {
			if err := compareLive(ctx, env, req.Log, res.State, &chk); err != nil {
				return nil, err
			}
		}
		out = append(out, chk)
	}
	return out, nil
}

// compareLive lists a test-restored configuration's differences from the live account in chk; only
// a cancelled context is returned.
func compareLive(ctx context.Context, env source.Env, log *slog.Logger, st *State, chk *source.TestRestoreCheck) error {
	cf, err := api(env)
	var changes []Change
	if err == nil {
		changes, err = LiveDiff(ctx, cf, st, nil, nil, log)
	}
	switch {
	case err != nil:
		if ctx.Err() != nil {
			return ctx.Err()
		}
		chk.Fail(source.FailureError, fmt.Sprintf("compare with the live account: %v", err))
	case len(changes) == 0:
		chk.Checks = append(chk.Checks, "same as the live account")
	default:
		chk.LiveChanges = changes
		chk.Checks = append(chk.Checks, fmt.Sprintf("%d difference(s) from the live account (listed; not a failure)", len(changes)))
	}
	return nil
}
