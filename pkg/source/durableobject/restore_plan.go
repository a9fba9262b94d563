package durableobject

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source"
)

// restorePlan is a decided Durable Object restore (source.RestorePlan).
type restorePlan struct {
	c        *component
	env      source.Env
	snapshot *manifest.Manifest
	open     Opener
	client   *Client // nil for a dry run
	plan     RestorePlanJSON
}

func (p *restorePlan) add(ns NamespaceRestore) {
	p.plan.Namespaces = append(p.plan.Namespaces, ns)
	p.plan.Objects += ns.Objects
	p.plan.Bytes += ns.Bytes
	p.plan.Live += len(ns.Live)
}

// JSON is the plan as restore --dry-run --json shows it.
func (p *restorePlan) JSON() any { return p.plan }

// Text writes the plan as restore --dry-run prints it.
func (p *restorePlan) Text(w io.Writer) {
	where := "into their own namespaces"
	if len(p.plan.Namespaces) > 0 && p.plan.Namespaces[0].Placement != nil {
		where = "into another namespace"
	}
	fmt.Fprintf(w, "Would restore %d Durable Object(s) (%s) from snapshot %s (%s) %s:\n",
		p.plan.Objects, humanBytes(p.plan.Bytes), p.snapshot.ID, p.snapshot.Time.Local().Format("2006-01-02 15:04:05"), where)
	for _, ns := range p.plan.Namespaces {
		if ns.Placement != nil {
			placementText(w, ns)
			continue
		}
		fmt.Fprintf(w, "  %-30s %-20s %6d object(s) %10s, %d live object(s) overwritten\n", ns.Namespace.Name, ns.Namespace.Class, ns.Objects, humanBytes(ns.Bytes), len(ns.Live))
	}
	if p.plan.Live > 0 {
		fmt.Fprintln(w, "Overwriting live objects needs --yes; a safety snapshot of them is taken first.")
	}
}

// liveNamespaces names the namespaces whose live objects the restore overwrites.
func (p *restorePlan) liveNamespaces() []string {
	var names []string
	for _, ns := range p.plan.Namespaces {
		if len(ns.Live) > 0 {
			names = append(names, ns.target.Name) // the namespace written: the snapshot's, or --to-do-namespace
		}
	}
	return names
}

// Confirm asks for the namespace name when live objects are overwritten.
func (p *restorePlan) Confirm() *source.Confirmation {
	names := p.liveNamespaces()
	if len(names) == 0 {
		return nil
	}
	where := fmt.Sprintf("namespace %q", names[0])
	if len(names) > 1 {
		where = fmt.Sprintf("%d namespaces (%s)", len(names), strings.Join(names, ", "))
	}
	return &source.Confirmation{Prompt: fmt.Sprintf("the storage of %d live Durable Object(s) in %s", p.plan.Live, where), Name: names[0]}
}

// Safety backs up exactly the live objects the restore overwrites.
func (p *restorePlan) Safety() *source.Safety {
	names := p.liveNamespaces()
	if len(names) == 0 {
		return nil
	}
	sf := &source.Safety{
		Target: strings.Join(names, ","),
		What:   fmt.Sprintf("the %d live object(s) this restore overwrites", p.plan.Live),
		Undo:   func(id string) string { return fmt.Sprintf("cfbackup restore %s --component do --yes", id) },
	}
	for _, ns := range p.plan.Namespaces {
		if len(ns.Live) > 0 {
			sf.Captures = append(sf.Captures, p.c.capture(p.client, ns.target, ns.Live, nil))
		}
	}
	return sf
}

// RestoreSummary is restore --json's summary of a Durable Object restore.
type RestoreSummary struct {
	MessageType string `json:"message_type"` // "summary"
	Snapshot    string `json:"snapshot"`
	Objects     int    `json:"objects"`
	KV          int64  `json:"kv"`
	Rows        int64  `json:"rows"`
	Atomic      int64  `json:"atomic_objects"`
	Bytes       int64  `json:"bytes"`
	Live        int    `json:"live_overwritten"`
	Undo        string `json:"undo"`
	// SafetySnapshot holds the live objects overwritten ("" when none were, or it was skipped).
	SafetySnapshot string `json:"safety_snapshot,omitempty"`
}

// Execute imports the objects, namespace by namespace. An object that fails does not stop the others;
// the error names every failed object and says how many were restored.
func (p *restorePlan) Execute(ctx context.Context, x source.Execution) (*source.RestoreResult, error) {
	if p.client == nil {
		return nil, errors.New("durableobject: Execute of a dry-run plan")
	}
	pr := x.Progress
	if pr == nil {
		pr = source.NoProgress{}
	}
	pr.Start("restore", p.plan.Bytes) // the opener reports the bytes read
	results, failed, err := p.importAll(ctx)
	pr.Finish()
	if err != nil {
		return nil, fmt.Errorf("%w\n%d of %d object(s) were restored before the failure; the failed object may be partly restored. Running the same restore again is safe (each object is wiped first).", err, len(results), p.plan.Objects)
	}
	if len(failed) > 0 {
		re := &RestoreErrors{Failures: failed, Attempted: len(failed) + len(results)}
		return nil, fmt.Errorf("%w\n%d of %d object(s) were restored; each failed object is named above (a refused one was not changed, another may be partly restored). Restore a single object again with --object-id.", re, len(results), p.plan.Objects)
	}
	sum := RestoreSummary{MessageType: "summary", Snapshot: p.snapshot.ID, Objects: len(results), Bytes: p.plan.Bytes, Live: p.plan.Live, Undo: x.Undo, SafetySnapshot: x.SafetySnapshot}
	for _, r := range results {
		sum.KV += r.KV
		sum.Rows += r.Rows
		if r.Atomic {
			sum.Atomic++
		}
	}
	text := fmt.Sprintf("Restored %d Durable Object(s) from snapshot %s: %d KV key(s), %d SQL row(s), alarms re-set; %d object(s) written in one transaction, counts match the backup.\n",
		sum.Objects, sum.Snapshot, sum.KV, sum.Rows, sum.Atomic)
	return &source.RestoreResult{JSON: sum, Text: text}, nil
}

// importAll restores every namespace's objects. Objects that failed are returned (the others of
// their namespace were restored); err is a failure every object would meet (authentication,
// configuration, cancellation), which stops the restore.
func (p *restorePlan) importAll(ctx context.Context) ([]ObjectResult, []ObjectFailure, error) {
	var results []ObjectResult
	var failed []ObjectFailure
	for _, ns := range p.plan.Namespaces {
		o := RestoreOptions{Concurrency: p.c.concurrency, ChunkBytes: p.c.chunkBytes, Log: p.env.Log()}
		if ns.address != nil {
			o.Address = func(it manifest.Item) string { return ns.address[it.ObjectID] }
		}
		res, err := Restore(ctx, p.client, ns.target.Class, ns.items, p.open, o)
		results = append(results, res...)
		var re *RestoreErrors
		if errors.As(err, &re) {
			failed = append(failed, re.Failures...)
			continue
		}
		if err != nil {
			return results, failed, err
		}
	}
	return results, failed, nil
}

func humanBytes(n int64) string { return source.HumanBytes(n) }

// Overwrites names the namespaces a restore writes into: their own (source.Overwriter).
func (p *restorePlan) Overwrites() *source.Overwrite {
	o := &source.Overwrite{Items: int64(p.plan.Objects), Bytes: p.plan.Bytes, Live: int64(p.plan.Live)}
	for _, ns := range p.plan.Namespaces {
		o.Sources = append(o.Sources, ns.Namespace.Name)
		o.Targets = append(o.Targets, ns.Namespace.Name)
	}
	return o
}
