package durableobject

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/source"
)

// NamespacePlan is one namespace of a backup plan (backup --dry-run --json, "details.do").
type NamespacePlan struct {
	Namespace cloudflare.Namespace `json:"namespace"`
	Objects   int                  `json:"objects"`
	Empty     int                  `json:"objects_without_data"`
}

// PlanBackup resolves the namespaces (--do-namespace, default every one), lists their objects with
// stored data and adds one capture per namespace; the objects are exported through the Worker module.
func (c *component) PlanBackup(ctx context.Context, env source.Env, req source.BackupRequest) (*source.BackupPlan, error) {
	if err := checkConcurrency(c.concurrency); err != nil {
		return nil, err
	}
	api, err := c.cloudflareAPI(env)
	if err != nil {
		return nil, err
	}
	client, err := WorkerClient(env)
	if err != nil {
		return nil, err
	}
	nss, err := resolveNamespaces(ctx, api, c.namespaces)
	if err != nil {
		return nil, err
	}
	plan := &source.BackupPlan{}
	details := []NamespacePlan{}
	warn := unrestorableWarner(env.Stderr())
	for _, ns := range nss {
		ids, empty, err := ListStoredObjects(ctx, api, ns)
		if err != nil {
			return nil, err
		}
		details = append(details, NamespacePlan{Namespace: ns, Objects: len(ids), Empty: empty})
		plan.AddCapture(c.capture(client, ns, ids, warn))
	}
	plan.SetDetails(Component, details, func(w io.Writer) { printBackupPlan(w, details) })
	return plan, nil
}

// resolveNamespaces finds the namespaces named (once each), or lists every namespace of the account.
func resolveNamespaces(ctx context.Context, api NamespaceAPI, refs []string) ([]cloudflare.Namespace, error) {
	if len(refs) == 0 {
		nss, err := api.ListNamespaces(ctx)
		if err == nil && len(nss) == 0 {
			err = fmt.Errorf("%w: the account has no Durable Object namespace", errclass.NotFound)
		}
		return nss, err
	}
	var nss []cloudflare.Namespace
	seen := map[string]bool{}
	for _, ref := range refs {
		ns, err := api.ResolveNamespace(ctx, ref)
		if err != nil {
			return nil, err
		}
		if !seen[ns.ID] {
			seen[ns.ID] = true
			nss = append(nss, ns)
		}
	}
	return nss, nil
}

// capture backs up the objects ids of ns (a backup, or a safety snapshot of the objects a restore
// overwrites); onUnrestorable (may be nil) hears of values the platform would refuse on restore.
func (c *component) capture(client *Client, ns cloudflare.Namespace, ids []string, onUnrestorable func(ns, id string, end End)) source.Capture {
	return source.Capture{Component: Component, Name: ns.Name, Run: func(ctx context.Context, s *source.Session) error {
		s.Log.Info("backing up Durable Object namespace", "namespace", ns.Name, "class", ns.Class, "objects", len(ids), "concurrency", c.concurrency)
		o := BackupOptions{Concurrency: c.concurrency, Log: s.Log, Progress: s.Progress.Add}
		if onUnrestorable != nil {
			o.OnUnrestorable = func(id string, end End) { onUnrestorable(ns.Name, id, end) }
		}
		src, items, err := Backup(ctx, client, s.Writer, ns, ids, o)
		if err != nil {
			return err
		}
		s.Add(src, items...)
		return nil
	}}
}

// unrestorableWarner tells the operator, when the backup is taken, of every value the platform would
// refuse on restore (the export's end line names them).
func unrestorableWarner(w io.Writer) func(ns, id string, end End) {
	var mu sync.Mutex
	return func(ns, id string, end End) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, "Warning: Durable Object %s/%s holds %d value(s) the platform would refuse on restore:\n", ns, id, end.Unrestorable)
		for _, x := range end.Warnings {
			fmt.Fprintf(w, "  %s\n", x)
		}
	}
}

func printBackupPlan(w io.Writer, details []NamespacePlan) {
	if len(details) == 0 {
		return
	}
	fmt.Fprintf(w, "Would back up %d Durable Object namespace(s) through the Worker module:\n", len(details))
	for _, d := range details {
		fmt.Fprintf(w, "  %-30s %-20s %6d object(s) with data (%d without)\n", d.Namespace.Name, d.Namespace.Class, d.Objects, d.Empty)
	}
}
