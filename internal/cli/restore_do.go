package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source/durableobject"
)

// doRestoreFlags are restore's flags for the do component.
type doRestoreFlags struct {
	Namespace   string
	ObjectIDs   []string
	IDsFrom     string
	Concurrency int
	WorkerURL   string
	ChunkBytes  int
}

func (b *doRestoreFlags) addFlags(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&b.Namespace, "do-namespace", "", "with --component do: the namespace in the snapshot (name, id or class; default: all)")
	fl.StringSliceVar(&b.ObjectIDs, "object-id", nil, "with --component do: restore only these object IDs (repeatable)")
	fl.StringVar(&b.IDsFrom, "ids-from", "", "with --component do: restore the object IDs listed in FILE (one per line, # comments)")
	fl.IntVar(&b.Concurrency, "do-concurrency", 4, "with --component do: objects restored at once")
	fl.IntVar(&b.ChunkBytes, "do-chunk-bytes", durableobject.DefaultChunkBytes, "largest import request body")
	_ = fl.MarkHidden("do-chunk-bytes")
	if cmd.Flags().Lookup("worker-url") == nil {
		fl.StringVar(&b.WorkerURL, "worker-url", "", "URL of the Worker that routes /__cfbackup/ to the Durable Objects (or CFBACKUP_WORKER_URL)")
	}
}

// doRestorePlan is what --dry-run prints for --component do.
type doRestorePlan struct {
	Snapshot   string        `json:"snapshot"`
	Namespaces []doNsRestore `json:"namespaces"`
	Objects    int           `json:"objects"`
	Bytes      int64         `json:"bytes"`
	Live       int           `json:"live_objects_overwritten"`
}

type doNsRestore struct {
	Namespace manifest.Source `json:"namespace"`
	Objects   int             `json:"objects"`
	Bytes     int64           `json:"bytes"`
	Live      []string        `json:"live_object_ids"`
	items     []manifest.Item
	target    cloudflare.Namespace
}

func readIDs(path string) ([]string, error) {
	return readListFile(path, "--ids-from")
}

// run restores Durable Objects from a snapshot into the namespaces they came from.
func (b *doRestoreFlags) run(cmd *cobra.Command, o *RestoreOptions) error {
	ctx := cmd.Context()
	if o.ToFile != "" || o.ToDatabase != "" || o.InPlace || len(o.Tables) > 0 {
		return usageError{errors.New("--to-file, --to-database, --in-place and --table are D1 options; a Durable Object is restored into the object it came from (IDs are bound to their namespace)")}
	}
	if len(b.ObjectIDs) > 0 && b.IDsFrom != "" {
		return usageError{errors.New("use --object-id or --ids-from, not both")}
	}
	if b.Concurrency < 1 || b.Concurrency > 64 {
		return usageError{fmt.Errorf("--do-concurrency %d: use 1 to 64", b.Concurrency)}
	}
	ids := b.ObjectIDs
	if b.IDsFrom != "" {
		var err error
		if ids, err = readIDs(b.IDsFrom); err != nil {
			return err
		}
		if len(ids) == 0 {
			return usageError{fmt.Errorf("--ids-from %s lists no object ID", b.IDsFrom)}
		}
	}
	want := map[string]bool{}
	for _, id := range ids {
		id = strings.ToLower(strings.TrimSpace(id))
		if !durableobject.ValidObjectID(id) {
			return usageError{fmt.Errorf("object ID %q: a Durable Object ID is 64 hex digits (as listed by 'cfbackup list' or the Cloudflare dashboard)", id)}
		}
		want[id] = true
	}
	r, err := o.f.Repo(ctx)
	if err != nil {
		return err
	}
	m, err := r.FindSnapshot(ctx, o.Snapshot, durableobject.Component)
	if err != nil {
		return err
	}
	if err := snapshotHas(m, durableobject.Component); err != nil {
		return err
	}
	srcs := engine.SourcesOf(m, durableobject.Component)
	if b.Namespace != "" {
		var pick []manifest.Source
		for _, s := range srcs {
			if s.ID == b.Namespace || s.Name == b.Namespace || s.Class == b.Namespace {
				pick = append(pick, s)
			}
		}
		if len(pick) == 0 {
			names := make([]string, 0, len(srcs))
			for _, s := range srcs {
				names = append(names, s.Name)
			}
			return fmt.Errorf("%w: Durable Object namespace %q is not in snapshot %s (it has: %s)", engine.ErrNotFound, b.Namespace, m.ID, strings.Join(names, ", "))
		}
		srcs = pick
	}
	idents, err := o.f.Identities(true)
	if err != nil {
		return err
	}
	cat, err := engine.OpenCatalogue(m, idents)
	if err != nil {
		return err
	}
	inNS := map[string]int{}
	for i, s := range srcs {
		inNS[s.ID] = i
	}
	plan := doRestorePlan{Snapshot: m.ID}
	nsPlans := make([]doNsRestore, len(srcs))
	for i, s := range srcs {
		nsPlans[i].Namespace = s
	}
	found := map[string]bool{}
	for _, it := range cat.Items {
		i, ok := inNS[it.Source]
		if it.Component != durableobject.Component || !ok || (len(want) > 0 && !want[it.ObjectID]) {
			continue
		}
		found[it.ObjectID] = true
		nsPlans[i].items = append(nsPlans[i].items, it)
		nsPlans[i].Objects++
		nsPlans[i].Bytes += it.Size
	}
	var missing []string
	for id := range want {
		if !found[id] {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("%w: %d object ID(s) are not in snapshot %s (in the namespaces chosen): %s", engine.ErrNotFound, len(missing), m.ID, strings.Join(missing, ", "))
	}
	cf, err := o.f.Cloudflare()
	if err != nil {
		return err
	}
	for i := range nsPlans {
		p := &nsPlans[i]
		if p.Objects == 0 {
			continue
		}
		p.target, err = cf.ResolveNamespace(ctx, p.Namespace.ID)
		if err != nil {
			return fmt.Errorf("%w\nDurable Object IDs are bound to their namespace: restoring needs the namespace the snapshot came from (%s, id %s). Into another account or namespace, objects must be recreated from their original names (idFromName)", err, p.Namespace.Name, p.Namespace.ID)
		}
		live, _, err := durableobject.ListStoredObjects(ctx, cf, p.target)
		if err != nil {
			return err
		}
		liveSet := map[string]bool{}
		for _, id := range live {
			liveSet[id] = true
		}
		for _, it := range p.items {
			if liveSet[it.ObjectID] {
				p.Live = append(p.Live, it.ObjectID)
			}
		}
		plan.Namespaces = append(plan.Namespaces, *p)
		plan.Objects += p.Objects
		plan.Bytes += p.Bytes
		plan.Live += len(p.Live)
	}
	if plan.Objects == 0 {
		return fmt.Errorf("%w: snapshot %s holds no Durable Object to restore here", engine.ErrNotFound, m.ID)
	}
	out := o.f.IO.Out
	if o.DryRun {
		if o.f.jsonOut {
			return writeJSON(out, map[string]any{"message_type": "plan", "dry_run": true, "plan": plan})
		}
		fmt.Fprintf(out, "Would restore %d Durable Object(s) (%s) from snapshot %s (%s) into their own namespaces:\n", plan.Objects, humanBytes(plan.Bytes), m.ID, m.Time.Local().Format("2006-01-02 15:04:05"))
		for _, p := range plan.Namespaces {
			fmt.Fprintf(out, "  %-30s %-20s %6d object(s) %10s, %d live object(s) overwritten\n", p.Namespace.Name, p.Namespace.Class, p.Objects, humanBytes(p.Bytes), len(p.Live))
		}
		if plan.Live > 0 {
			fmt.Fprintln(out, "Overwriting live objects needs --yes; a safety snapshot of them is taken first.")
		}
		return nil
	}
	if plan.Live > 0 && !o.Yes {
		if err := confirmDO(o.f, plan); err != nil {
			return err
		}
	}
	client, err := o.f.DurableObjects()
	if err != nil {
		return err
	}
	eng := o.f.Engine(r)
	undo := ""
	if plan.Live > 0 && !o.NoSafety {
		sp := &engine.BackupPlan{Components: []string{durableobject.Component}}
		for _, p := range plan.Namespaces {
			if len(p.Live) == 0 {
				continue
			}
			p := p
			sp.AddCapture(engine.Capture{Component: durableobject.Component, Name: p.target.Name, Run: func(ctx context.Context, s *engine.Session) error {
				src, items, err := durableobject.Backup(ctx, client, s.Writer, p.target, p.Live, durableobject.BackupOptions{Concurrency: b.Concurrency, Log: s.Log, Progress: s.Progress.Add})
				if err != nil {
					return doErr(err)
				}
				s.Add(src, items...)
				return nil
			}})
		}
		sm, err := eng.Backup(ctx, sp, engine.BackupOptions{Components: sp.Components, Labels: map[string]string{"pre-restore": "do", "restoring": m.ID}})
		if err != nil {
			return fmt.Errorf("safety snapshot of the %d live object(s) before restoring: %w (nothing was restored; --no-safety-snapshot skips it)", plan.Live, err)
		}
		if err := holdSafetySnapshot(ctx, eng, sm); err != nil {
			o.f.Log().Warn("could not hold the safety snapshot", "snapshot", sm.ID, "err", err)
		}
		undo = fmt.Sprintf("cfbackup restore %s --component do --yes", sm.ID)
		fmt.Fprintf(o.f.IO.Err, "Safety snapshot %s holds the %d live object(s) this restore overwrites.\nTo undo this restore: %s\n", sm.ID, plan.Live, undo)
	}
	open := durableobject.Opener(eng.Opener(m, idents))
	finish := eng.StartProgress("restore", plan.Bytes)
	var results []durableobject.ObjectResult
	var rerr error
	var failed []durableobject.ObjectFailure
	for _, p := range plan.Namespaces {
		res, err := durableobject.Restore(ctx, client, p.target.Class, p.items, open, durableobject.RestoreOptions{
			Concurrency: b.Concurrency, ChunkBytes: b.ChunkBytes, Log: o.f.Log(), // the opener reports progress
		})
		results = append(results, res...)
		var re *durableobject.RestoreErrors
		if errors.As(err, &re) {
			// Some objects failed, the others of the namespace were restored: go on with the next one.
			failed = append(failed, re.Failures...)
			continue
		}
		if err != nil {
			rerr = err // every object would meet it (authentication, configuration, cancellation)
			break
		}
	}
	finish()
	if rerr != nil {
		msg := fmt.Sprintf("%d of %d object(s) were restored before the failure; the failed object may be partly restored. Running the same restore again is safe (each object is wiped first).", len(results), plan.Objects)
		if undo != "" {
			msg += "\nTo roll back: " + undo
		}
		return fmt.Errorf("%w\n%s", doErr(rerr), msg)
	}
	if len(failed) > 0 {
		re := &durableobject.RestoreErrors{Failures: failed, Attempted: len(failed) + len(results)}
		msg := fmt.Sprintf("%d of %d object(s) were restored; each failed object is named above (a refused one was not changed, another may be partly restored). Restore a single object again with --object-id.", len(results), plan.Objects)
		if undo != "" {
			msg += "\nTo roll back: " + undo
		}
		return fmt.Errorf("%w\n%s", doErr(re), msg)
	}
	var kv, rows, atomic int64
	for _, x := range results {
		kv += x.KV
		rows += x.Rows
		if x.Atomic {
			atomic++
		}
	}
	if o.f.jsonOut {
		return writeJSON(out, map[string]any{"message_type": "summary", "snapshot": m.ID, "objects": len(results), "kv": kv, "rows": rows, "atomic_objects": atomic, "bytes": plan.Bytes, "live_overwritten": plan.Live, "undo": undo})
	}
	fmt.Fprintf(out, "Restored %d Durable Object(s) from snapshot %s: %d KV key(s), %d SQL row(s), alarms re-set; %d object(s) written in one transaction, counts match the backup.\n",
		len(results), m.ID, kv, rows, atomic)
	if undo != "" {
		fmt.Fprintf(out, "To undo: %s\n", undo)
	}
	return nil
}

// confirmDO asks for the namespace name on a terminal before live objects are overwritten.
func confirmDO(f *Factory, plan doRestorePlan) error {
	name := plan.Namespaces[0].Namespace.Name
	for _, p := range plan.Namespaces {
		if len(p.Live) > 0 {
			name = p.Namespace.Name
			break
		}
	}
	if !isTerminal(f.IO.In) || !isTerminal(f.IO.Err) {
		return fmt.Errorf("%w: the restore would overwrite %d live Durable Object(s); add --yes to confirm (try --dry-run first)", engine.ErrRefused, plan.Live)
	}
	fmt.Fprintf(f.IO.Err, "This replaces the storage of %d live Durable Object(s) in namespace %q.\nType the namespace name to continue: ", plan.Live, name)
	line, _ := bufio.NewReader(f.IO.In).ReadString('\n')
	if strings.TrimSpace(line) != name {
		return fmt.Errorf("%w: confirmation did not match %q; nothing was changed", engine.ErrRefused, name)
	}
	return nil
}
