package durableobject

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source"
)

// RestorePlanJSON is a Durable Object restore's plan (restore --dry-run --json, "plan").
type RestorePlanJSON struct {
	Snapshot   string             `json:"snapshot"`
	Namespaces []NamespaceRestore `json:"namespaces"`
	Objects    int                `json:"objects"`
	Bytes      int64              `json:"bytes"`
	Live       int                `json:"live_objects_overwritten"`
}

// NamespaceRestore is one namespace of a restore plan: the objects restored into it, and which of
// them hold data now (they are overwritten).
type NamespaceRestore struct {
	Namespace manifest.Source `json:"namespace"`
	Objects   int             `json:"objects"`
	Bytes     int64           `json:"bytes"`
	Live      []string        `json:"live_object_ids"`
	// Placement is set when the objects go into another namespace (--to-do-namespace).
	Placement *Placement `json:"placement,omitempty"`

	items   []manifest.Item
	target  cloudflare.Namespace
	address map[string]string // source object ID → ID or NameRef in the target (Placement set)
}

// PlanRestore decides what restoring the snapshot's Durable Objects does: the namespaces chosen
// (--do-namespace), the objects (--object-id, --object-ids-from, default all), and which of them hold data
// now. Objects go back into the namespace they came from (their IDs are bound to it).
func (c *component) PlanRestore(ctx context.Context, env source.Env, req source.RestoreRequest) (source.RestorePlan, error) {
	if c.want == nil { // CheckFlags was not called (a caller other than the CLI)
		if err := c.CheckFlags(source.VerbRestore, nil); err != nil {
			return nil, err
		}
	}
	srcs, err := c.pickNamespaces(req.Snapshot)
	if err != nil {
		return nil, err
	}
	if c.toNamespace != "" && len(srcs) != 1 {
		return nil, usage(fmt.Errorf("--to-do-namespace restores one namespace: snapshot %s has %d, choose one with --do-namespace", req.Snapshot.ID, len(srcs)))
	}
	nsPlans, err := c.selectObjects(req.Snapshot, req.Catalogue, srcs)
	if err != nil {
		return nil, err
	}
	api, err := c.cloudflareAPI(env)
	if err != nil {
		return nil, err
	}
	p := &restorePlan{c: c, env: env, snapshot: req.Snapshot, open: Opener(req.Open), plan: RestorePlanJSON{Snapshot: req.Snapshot.ID, Namespaces: []NamespaceRestore{}}}
	for i := range nsPlans {
		if nsPlans[i].Objects == 0 {
			continue
		}
		if c.toNamespace != "" {
			if err := findTargetLive(ctx, api, &nsPlans[i], c.toNamespace); err != nil {
				return nil, err
			}
			placeObjects(&nsPlans[i], c.idMap, c.skipUnplaceable)
		} else if err := findLive(ctx, api, &nsPlans[i]); err != nil {
			return nil, err
		}
		p.add(nsPlans[i])
	}
	if !req.DryRun {
		if err := unplaceable(p.plan.Namespaces); err != nil {
			return nil, err
		}
	}
	if p.plan.Objects == 0 {
		return nil, fmt.Errorf("%w: snapshot %s holds no Durable Object to restore here", errclass.NotFound, req.Snapshot.ID)
	}
	if !req.DryRun {
		if p.client, err = WorkerClient(env); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// pickNamespaces is the snapshot's namespaces --do-namespace names (by id, name or class), or all.
func (c *component) pickNamespaces(m *manifest.Manifest) ([]manifest.Source, error) {
	var srcs, pick []manifest.Source
	for _, s := range m.Sources {
		if s.Component != Component {
			continue
		}
		srcs = append(srcs, s)
		if s.ID == c.namespace || s.Name == c.namespace || s.Class == c.namespace {
			pick = append(pick, s)
		}
	}
	if c.namespace == "" {
		return srcs, nil
	}
	if len(pick) == 0 {
		names := make([]string, 0, len(srcs))
		for _, s := range srcs {
			names = append(names, s.Name)
		}
		return nil, fmt.Errorf("%w: Durable Object namespace %q is not in snapshot %s (it has: %s)", errclass.NotFound, c.namespace, m.ID, strings.Join(names, ", "))
	}
	return pick, nil
}

// selectObjects takes the catalogue's objects of the namespaces srcs that were asked for; an object
// ID asked for but not there is an error.
func (c *component) selectObjects(m *manifest.Manifest, cat *manifest.Catalogue, srcs []manifest.Source) ([]NamespaceRestore, error) {
	inNS := map[string]int{}
	nsPlans := make([]NamespaceRestore, len(srcs))
	for i, s := range srcs {
		inNS[s.ID] = i
		nsPlans[i].Namespace = s
	}
	found := map[string]bool{}
	err := cat.Each(func(it manifest.Item) error {
		i, ok := inNS[it.Source]
		if it.Component != Component || !ok || (len(c.want) > 0 && !c.want[it.ObjectID]) {
			return nil
		}
		found[it.ObjectID] = true
		nsPlans[i].items = append(nsPlans[i].items, it)
		nsPlans[i].Objects++
		nsPlans[i].Bytes += it.Size
		return nil
	})
	if err != nil {
		return nil, err
	}
	var missing []string
	for id := range c.want {
		if !found[id] {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, fmt.Errorf("%w: %d object ID(s) are not in snapshot %s (in the namespaces chosen): %s", errclass.NotFound, len(missing), m.ID, strings.Join(missing, ", "))
	}
	return nsPlans, nil
}

// findLive resolves the namespace the objects came from in the account and notes which of them hold
// data now.
func findLive(ctx context.Context, api NamespaceAPI, p *NamespaceRestore) error {
	var err error
	p.target, err = api.ResolveNamespace(ctx, p.Namespace.ID)
	if err != nil {
		return fmt.Errorf("%w\nDurable Object IDs are bound to their namespace: restoring needs the namespace the snapshot came from (%s, id %s). Into another account or namespace, objects must be recreated from their original names (idFromName)", err, p.Namespace.Name, p.Namespace.ID)
	}
	live, _, err := ListStoredObjects(ctx, api, p.target)
	if err != nil {
		return err
	}
	liveSet := make(map[string]bool, len(live))
	for _, id := range live {
		liveSet[id] = true
	}
	p.Live = []string{}
	for _, it := range p.items {
		if liveSet[it.ObjectID] {
			p.Live = append(p.Live, it.ObjectID)
		}
	}
	return nil
}
