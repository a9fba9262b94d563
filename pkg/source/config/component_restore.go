package config

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source"
)

// d1Targets are restore's D1 target flags, which mean nothing for the configuration.
var d1Targets = []string{"to-file", "to-database", "in-place", "create", "table"}

// CheckFlags refuses a restore without a target (--to-dir or --diff) and D1's target options before
// anything is read.
func (c *component) CheckFlags(verb source.Verb, fs *pflag.FlagSet) error {
	if verb != source.VerbRestore {
		return nil
	}
	toDir := ""
	if f := fs.Lookup("to-dir"); f != nil {
		toDir = f.Value.String()
	}
	if err := c.checkTarget(toDir); err != nil {
		return err
	}
	for _, f := range d1Targets {
		if fs.Changed(f) {
			return errclass.Wrap(errclass.Usage, errors.New("--to-file, --to-database, --in-place, --create and --table are D1 options; with --component config use --to-dir or --diff"))
		}
	}
	return nil
}

func (c *component) checkTarget(toDir string) error {
	if toDir == "" && !c.Diff {
		return errclass.Wrap(errclass.Usage, errors.New("--component config needs --to-dir DIR (write the configuration as files) and/or --diff (compare it with the live account); it is never applied to the account"))
	}
	return nil
}

// PlanRestore loads the snapshot's configuration (--config-script limits it) and, with --diff,
// compares it with the live account right away: a comparison writes nothing, so --dry-run shows it
// too. The configuration is never applied to the account: the plan has no Confirm and no Safety.
func (c *component) PlanRestore(ctx context.Context, env source.Env, req source.RestoreRequest) (source.RestorePlan, error) {
	if err := c.checkTarget(req.ToDir); err != nil {
		return nil, err
	}
	m := req.Snapshot
	srcs := source.SourcesOf(m, Component)
	if len(srcs) == 0 {
		return nil, fmt.Errorf("%w: snapshot %s has no Workers configuration (back it up with 'cfbackup backup --component config')", errclass.NotFound, m.ID)
	}
	if len(srcs) > 1 {
		return nil, fmt.Errorf("snapshot %s holds the configuration of %d accounts; this version restores one", m.ID, len(srcs))
	}
	src := srcs[0]
	st, err := Load(ctx, Opener(req.Open), req.Catalogue, src, c.Scripts)
	if err != nil {
		if errors.Is(err, ErrNoScript) {
			return nil, fmt.Errorf("%w: %v", errclass.NotFound, err)
		}
		return nil, err
	}
	p := &restorePlan{snapshot: m, src: src, st: st, dir: req.ToDir, overwrite: req.Yes}
	if c.Diff {
		if p.diff, err = c.compare(ctx, env, m, st); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// compare reads the live account and lists its differences from the snapshot's configuration.
func (c *component) compare(ctx context.Context, env source.Env, m *manifest.Manifest, old *State) (*DiffMessage, error) {
	cf, err := env.Cloudflare()
	if err != nil {
		return nil, err
	}
	if cf.AccountID() != old.AccountID {
		fmt.Fprintf(env.Stderr(), "cfbackup: note: snapshot %s is of account %s; comparing with account %s\n", m.ID, old.AccountID, cf.AccountID())
	}
	changes, err := LiveDiff(ctx, cf, old, c.Zones, c.Scripts, env.Log())
	if err != nil {
		return nil, err
	}
	if changes == nil {
		changes = []Change{}
	}
	return &DiffMessage{MessageType: "diff", Snapshot: m.ID, Time: m.Time, Account: cf.AccountID(), Same: len(changes) == 0, Changes: changes}, nil
}

// DiffMessage is restore --component config --diff --json.
type DiffMessage struct {
	MessageType string    `json:"message_type"` // "diff"
	Snapshot    string    `json:"snapshot"`
	Time        time.Time `json:"time"`
	Account     string    `json:"account"`
	Same        bool      `json:"same"`
	Changes     []Change  `json:"changes"`
}

// RestorePlanJSON is restore --component config --to-dir --dry-run --json's "plan"; with --diff it
// also holds the comparison.
type RestorePlanJSON struct {
	Snapshot string       `json:"snapshot"`
	Account  string       `json:"account"`
	Target   string       `json:"target,omitempty"`
	Files    []string     `json:"files,omitempty"`
	Diff     *DiffMessage `json:"diff,omitempty"`
}

// RestoreSummary is restore --component config --to-dir --json; with --diff it also holds the
// comparison.
type RestoreSummary struct {
	MessageType string       `json:"message_type"` // "summary"
	Snapshot    string       `json:"snapshot"`
	Account     string       `json:"account"`
	Target      string       `json:"target"`
	Files       []string     `json:"files"`
	Scripts     []string     `json:"scripts"`
	Diff        *DiffMessage `json:"diff,omitempty"`
}

// restorePlan writes the configuration into a directory and/or reports its differences from the
// live account (source.RestorePlan).
type restorePlan struct {
	snapshot  *manifest.Manifest
	src       manifest.Source
	st        *State
	dir       string // --to-dir ("": none)
	overwrite bool   // --yes: replace files already there
	diff      *DiffMessage
}

func (p *restorePlan) files() []string {
	files := []string{filepath.Join(p.dir, "inventory.json")}
	for _, n := range p.st.ScriptNames() {
		files = append(files, filepath.Join(p.dir, "scripts", FileName(n)))
	}
	return files
}

func (p *restorePlan) JSON() any {
	j := RestorePlanJSON{Snapshot: p.snapshot.ID, Account: p.src.ID, Diff: p.diff}
	if p.dir != "" {
		j.Target, j.Files = "dir:"+p.dir, p.files()
	}
	return j
}

func (p *restorePlan) Text(w io.Writer) {
	if p.dir != "" {
		fmt.Fprintf(w, "Would write the Workers configuration of account %s from snapshot %s (%s) into %s:\n", p.src.ID, p.snapshot.ID, p.snapshot.Time.Local().Format("2006-01-02 15:04:05"), p.dir)
		for _, f := range p.files() {
			fmt.Fprintf(w, "  %s\n", f)
		}
	}
	p.diffText(w)
}

// Confirm is nil: nothing in the account is changed.
func (p *restorePlan) Confirm() *source.Confirmation { return nil }

// Safety is nil: nothing in the account is changed.
func (p *restorePlan) Safety() *source.Safety { return nil }

// DryRunErr is the outcome of a dry run: with --diff, ErrDiffers when the account differs.
func (p *restorePlan) DryRunErr() error { return p.differs() }

// Execute writes the files (--to-dir) and reports the comparison (--diff); the error wraps
// ErrDiffers (exit status 9) when the live account differs, with the result still to print.
func (p *restorePlan) Execute(ctx context.Context, x source.Execution) (*source.RestoreResult, error) {
	var text strings.Builder
	var j any = p.diff
	if p.dir != "" {
		written, err := WriteDir(p.dir, p.st, p.overwrite)
		if err != nil {
			if errors.Is(err, ErrExists) {
				return nil, fmt.Errorf("%w: %v; nothing was written", errclass.Refused, err)
			}
			return nil, fmt.Errorf("write the configuration into %s: %w (files written by this run were removed)", p.dir, err)
		}
		j = RestoreSummary{MessageType: "summary", Snapshot: p.snapshot.ID, Account: p.src.ID, Target: "dir:" + p.dir, Files: written, Scripts: p.st.ScriptNames(), Diff: p.diff}
		fmt.Fprintf(&text, "Wrote the Workers configuration of account %s from snapshot %s into %s: inventory.json and %d script file(s). Nothing was applied to the account.\n",
			p.src.ID, p.snapshot.ID, p.dir, len(p.st.Scripts))
	}
	p.diffText(&text)
	return &source.RestoreResult{JSON: j, Text: text.String()}, p.differs()
}

// diffText writes the comparison for people (nothing without --diff).
func (p *restorePlan) diffText(w io.Writer) {
	d := p.diff
	if d == nil {
		return
	}
	when := p.snapshot.Time.Local().Format("2006-01-02 15:04:05")
	if d.Same {
		fmt.Fprintf(w, "The Workers configuration of account %s matches snapshot %s (%s).\n", d.Account, p.snapshot.ID, when)
		return
	}
	fmt.Fprintf(w, "The Workers configuration of account %s differs from snapshot %s (%s) in %d place(s)\n(- only in the snapshot, + only in the account, ~ changed: snapshot → account):\n",
		d.Account, p.snapshot.ID, when, len(d.Changes))
	WriteText(w, d.Changes)
}

// differs is ErrDiffers naming the scopes that differ, or nil.
func (p *restorePlan) differs() error {
	if p.diff == nil || p.diff.Same {
		return nil
	}
	scopes := map[string]bool{}
	for _, c := range p.diff.Changes {
		scopes[c.Scope] = true
	}
	list := make([]string, 0, len(scopes))
	for s := range scopes {
		list = append(list, s)
	}
	sort.Strings(list)
	return fmt.Errorf("%w: %d difference(s) in %s", ErrDiffers, len(p.diff.Changes), strings.Join(list, ", "))
}
