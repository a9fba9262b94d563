package cli

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/source/durableobject"
)

// doBackupFlags are backup's flags for the do component.
type doBackupFlags struct {
	Namespaces  []string
	Concurrency int
	WorkerURL   string
}

func (b *doBackupFlags) addFlags(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringSliceVar(&b.Namespaces, "do-namespace", nil, "Durable Object namespace (name, id or class); repeat for several (default: every namespace)")
	fl.IntVar(&b.Concurrency, "do-concurrency", 4, "Durable Objects exported at once")
	fl.StringVar(&b.WorkerURL, "worker-url", "", "URL of the Worker that routes /__cfbackup/ to the Durable Objects (or CFBACKUP_WORKER_URL)")
}

// doNamespacePlan is one namespace of a --component do plan (--dry-run output, "details.do").
type doNamespacePlan struct {
	Namespace cloudflare.Namespace `json:"namespace"`
	Objects   int                  `json:"objects"`
	Empty     int                  `json:"objects_without_data"`
}

// plan resolves the namespaces, lists their objects with stored data and adds one capture per namespace.
func (b *doBackupFlags) plan(ctx context.Context, o *BackupOptions, eng *engine.Engine, plan *engine.BackupPlan) error {
	if b.Concurrency < 1 || b.Concurrency > 64 {
		return usageError{fmt.Errorf("--do-concurrency %d: use 1 to 64", b.Concurrency)}
	}
	cf, err := o.f.Cloudflare()
	if err != nil {
		return err
	}
	client, err := o.f.DurableObjects()
	if err != nil {
		return err
	}
	var nss []cloudflare.Namespace
	if len(b.Namespaces) == 0 {
		if nss, err = cf.ListNamespaces(ctx); err != nil {
			return err
		}
		if len(nss) == 0 {
			return fmt.Errorf("%w: the account has no Durable Object namespace", engine.ErrNotFound)
		}
	} else {
		seen := map[string]bool{}
		for _, ref := range b.Namespaces {
			ns, err := cf.ResolveNamespace(ctx, ref)
			if err != nil {
				return err
			}
			if !seen[ns.ID] {
				seen[ns.ID] = true
				nss = append(nss, ns)
			}
		}
	}
	var details []doNamespacePlan
	var warnMu sync.Mutex
	for _, ns := range nss {
		ns := ns
		ids, empty, err := durableobject.ListStoredObjects(ctx, cf, ns)
		if err != nil {
			return err
		}
		details = append(details, doNamespacePlan{Namespace: ns, Objects: len(ids), Empty: empty})
		plan.AddCapture(engine.Capture{Component: durableobject.Component, Name: ns.Name, Run: func(ctx context.Context, s *engine.Session) error {
			s.Log.Info("backing up Durable Object namespace", "namespace", ns.Name, "class", ns.Class, "objects", len(ids), "concurrency", b.Concurrency)
			src, items, err := durableobject.Backup(ctx, client, s.Writer, ns, ids, durableobject.BackupOptions{Concurrency: b.Concurrency, Log: s.Log, Progress: s.Progress.Add,
				OnUnrestorable: func(id string, end durableobject.End) {
					warnMu.Lock()
					defer warnMu.Unlock()
					fmt.Fprintf(o.f.IO.Err, "Warning: Durable Object %s/%s holds %d value(s) the platform would refuse on restore:\n", ns.Name, id, end.Unrestorable)
					for _, w := range end.Warnings {
						fmt.Fprintf(o.f.IO.Err, "  %s\n", w)
					}
				}})
			if err != nil {
				return doErr(err)
			}
			s.Add(src, items...)
			return nil
		}})
	}
	if plan.Details == nil {
		plan.Details = map[string]any{}
	}
	plan.Details[durableobject.Component] = details
	return nil
}

func (b *doBackupFlags) printPlan(w io.Writer, plan *engine.BackupPlan) {
	details, _ := plan.Details[durableobject.Component].([]doNamespacePlan)
	if len(details) == 0 {
		return
	}
	fmt.Fprintf(w, "Would back up %d Durable Object namespace(s) through the Worker module:\n", len(details))
	for _, d := range details {
		fmt.Fprintf(w, "  %-30s %-20s %6d object(s) with data (%d without)\n", d.Namespace.Name, d.Namespace.Class, d.Objects, d.Empty)
	}
}
