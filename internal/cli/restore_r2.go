package cli

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source/r2"
)

// r2RestoreFlags are restore's flags for the r2 component.
type r2RestoreFlags struct {
	Bucket      string
	Prefix      string
	Objects     []string
	ObjectsFrom string
	ToBucket    string
	ToPrefix    string
	ToDir       string
	Overwrite   string
}

func (b *r2RestoreFlags) addFlags(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&b.Bucket, "r2-bucket", "", "R2 bucket in the snapshot; optional when the snapshot has one")
	fl.StringArrayVar(&b.Objects, "object", nil, "R2: restore only this object key (repeatable)")
	fl.StringVar(&b.ObjectsFrom, "objects-from", "", "R2: restore the object keys listed in this file, one per line")
	fl.StringVar(&b.ToBucket, "to-bucket", "", "R2: restore into this bucket instead of the original one")
	fl.StringVar(&b.ToPrefix, "to-prefix", "", "R2: put restored keys under this prefix (replacing --prefix when given)")
	fl.StringVar(&b.Overwrite, "overwrite", "fail", "R2: when the target holds different data under a key: fail (write nothing), skip or overwrite")
}

// r2RestorePlanJSON is the --dry-run --json plan.
type r2RestorePlanJSON struct {
	Snapshot string `json:"snapshot"`
	Bucket   string `json:"bucket"`
	*r2.Plan
}

// run restores r2 sources from a snapshot.
func (b *r2RestoreFlags) run(cmd *cobra.Command, o *RestoreOptions) error {
	b.ToDir, b.Prefix = o.ToDir, o.Prefix
	ctx := cmd.Context()
	switch b.Overwrite {
	case r2.OverwriteFail, r2.OverwriteSkip, r2.OverwriteOverwrite:
	default:
		return usageError{fmt.Errorf("--overwrite %q: use fail, skip or overwrite", b.Overwrite)}
	}
	if b.ToDir != "" && (b.ToBucket != "" || b.ToPrefix != "") {
		return usageError{errors.New("--to-dir cannot be combined with --to-bucket or --to-prefix")}
	}
	keys := append([]string(nil), b.Objects...)
	if b.ObjectsFrom != "" {
		fh, err := os.Open(b.ObjectsFrom)
		if err != nil {
			return usageError{fmt.Errorf("--objects-from: %w", err)}
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if l := strings.TrimRight(sc.Text(), "\r"); l != "" {
				keys = append(keys, l)
			}
		}
		fh.Close()
		if err := sc.Err(); err != nil {
			return usageError{fmt.Errorf("--objects-from: %w", err)}
		}
	}
	if len(keys) > 0 && b.Prefix != "" {
		return usageError{errors.New("choose --prefix or --object/--objects-from, not both")}
	}
	r, err := o.f.Repo(ctx)
	if err != nil {
		return err
	}
	m, err := findR2Snapshot(ctx, r, o.Snapshot)
	if err != nil {
		return err
	}
	src, err := pickR2Source(m, b.Bucket)
	if err != nil {
		return err
	}
	ids, err := o.f.Identities(true)
	if err != nil {
		return err
	}
	cat, err := engine.OpenCatalogue(m, ids)
	if err != nil {
		return err
	}
	items, err := r2.Select(cat, src.Name, b.Prefix, keys)
	if err != nil {
		return err
	}
	t := r2.Target{Bucket: src.Name, Dir: b.ToDir, Overwrite: b.Overwrite}
	if b.ToBucket != "" {
		t.Bucket = b.ToBucket
	}
	if b.ToPrefix != "" {
		t.Prefix, t.StripPrefix = b.ToPrefix, b.Prefix
	}
	var cl *r2.Client
	if t.Dir == "" {
		if cl, err = r2Client(o.f); err != nil {
			return err
		}
	}
	plan, err := r2.PlanRestore(ctx, cl, items, t)
	if err != nil {
		return err
	}
	out := o.f.IO.Out
	if o.DryRun {
		if o.f.jsonOut {
			return writeJSON(out, map[string]any{"message_type": "plan", "dry_run": true, "plan": r2RestorePlanJSON{m.ID, src.Name, plan}})
		}
		fmt.Fprintf(out, "Would restore %d object(s) of R2 bucket %s from snapshot %s (%s) into %s: %d to write (%s), %d already identical, %d conflict(s) (--overwrite %s).\n",
			plan.Objects, src.Name, m.ID, m.Time.Local().Format("2006-01-02 15:04:05"), plan.Target, plan.Puts, humanBytes(plan.Bytes), plan.Same, plan.Conflicts+countAction(plan, "skip")+countAction(plan, "overwrite"), b.Overwrite)
		for _, e := range plan.Entries {
			fmt.Fprintf(out, "  %-9s %10s  %q\n", e.Action, humanBytes(e.Size), e.Target)
		}
		return nil
	}
	if n := countAction(plan, "overwrite"); n > 0 && !o.Yes {
		return fmt.Errorf("%w: %d object(s) at %s hold different data and --overwrite overwrite would replace them; add --yes to confirm (try --dry-run first)", engine.ErrRefused, n, plan.Target)
	}
	eng := o.f.Engine(r)
	setR2MemoryLimit(eng, false)
	conc := o.f.Config().R2Concurrency
	if conc == 0 {
		conc = 8
	}
	safe, undo, err := r2SafetySnapshot(cmd, o, eng, cl, plan, t.Bucket, m.ID)
	if err != nil {
		return err
	}
	start := time.Now()
	finish := eng.StartProgress("restore", plan.Bytes)
	res, err := r2.Restore(ctx, cl, r2.Opener(eng.Opener(m, ids)), plan, conc)
	finish()
	if err != nil {
		if undo != "" {
			return fmt.Errorf("%w\nTo roll back what was overwritten: %s", err, undo)
		}
		return err
	}
	el := time.Since(start)
	if o.f.jsonOut {
		j := map[string]any{"message_type": "summary", "snapshot": m.ID, "bucket": src.Name, "target": plan.Target,
			"restored": res.Restored, "bytes": res.Bytes, "same": res.Same, "skipped": res.Skipped, "duration": el.String()}
		if safe != nil {
			j["safety_snapshot"], j["undo"] = safe.ID, undo
		}
		return writeJSON(out, j)
	}
	fmt.Fprintf(out, "Restored %d object(s) (%s) of R2 bucket %s from snapshot %s into %s in %s; %d already identical, %d skipped. Every object matched its SHA-256.\n",
		res.Restored, humanBytes(res.Bytes), src.Name, m.ID, plan.Target, el.Round(time.Millisecond), res.Same, res.Skipped)
	if undo != "" {
		fmt.Fprintf(out, "To undo: %s\n", undo)
	}
	return nil
}

func countAction(p *r2.Plan, action string) int {
	n := 0
	for _, e := range p.Entries {
		if e.Action == action {
			n++
		}
	}
	return n
}

func pickR2Source(m *manifest.Manifest, name string) (manifest.Source, error) {
	return pickComponentSource(m, r2.Component, "R2 bucket", "R2 buckets", "--r2-bucket", name)
}
