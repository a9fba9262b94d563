package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/pkg/engine"
)

// UnlockOptions are the flags of 'unlock'.
type UnlockOptions struct {
	f         *Factory
	StaleOnly bool
	DryRun    bool
}

// NewCmdUnlock removes repository locks left behind, so a lock never blocks backups for ever.
func NewCmdUnlock(f *Factory, runF func(*UnlockOptions) error) *cobra.Command {
	o := &UnlockOptions{f: f}
	cmd := &cobra.Command{
		Use:   "unlock [--stale-only] [--dry-run]",
		Short: "Remove repository locks (all, or only stale ones)",
		Long: `Remove the lock objects under locks/. Backups, restores, verifies and copies hold shared locks and
prune an exclusive one; each refreshes its lock every few minutes, so a lock whose holder died expires
by itself within 5 minutes, and one that claims more than an hour is treated as stale.

--stale-only removes only stale locks (expired, claiming more than an hour, or held by a process of
this host that no longer runs): safe at any time, e.g. before a scheduled prune. Without it every lock
is removed: use that only when you know the holders are gone. Removing a running backup's lock does
not endanger its data (prune deletes only what has been unreferenced for its grace period), but lets a
prune run beside it. Every unlock is recorded in the audit trail.`,
		Example: `  cfbackup unlock --stale-only
  cfbackup unlock --dry-run --json
  cfbackup unlock                  # every lock: the holders are known to be gone`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{annotationMutating: "true"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(o)
			}
			return unlockRun(cmd, o)
		},
	}
	cmd.Flags().BoolVar(&o.StaleOnly, "stale-only", false, "remove only stale locks (expired, over-long, or of a dead process on this host)")
	cmd.Flags().BoolVar(&o.DryRun, "dry-run", false, "list what would be removed, remove nothing")
	return cmd
}

func unlockRun(cmd *cobra.Command, o *UnlockOptions) error {
	ctx := cmd.Context()
	r, err := o.f.Repo(ctx)
	if err != nil {
		return err
	}
	res, err := o.f.Engine(r).Unlock(ctx, o.StaleOnly, o.DryRun)
	if err != nil {
		return err
	}
	var failed int
	for _, x := range res {
		if x.Error != "" {
			failed++
		}
	}
	if o.f.jsonOut {
		if err := writeJSON(o.f.IO.Out, &UnlockMessage{MessageType: msgSummary, DryRun: o.DryRun, StaleOnly: o.StaleOnly, Locks: append([]engine.UnlockResult{}, res...)}); err != nil {
			return err
		}
	} else {
		if len(res) == 0 {
			fmt.Fprintln(o.f.IO.Out, "No locks.")
		}
		for _, x := range res {
			state := "kept (live)"
			switch {
			case x.Error != "":
				state = "NOT removed: " + x.Error
			case x.Removed:
				state = "removed"
			case o.DryRun && (x.Stale || !o.StaleOnly):
				state = "would remove"
			}
			stale := ""
			if x.Stale {
				stale = " stale"
			}
			fmt.Fprintf(o.f.IO.Out, "%s %s%s lock of %q on %s (pid %d), since %s, expires %s: %s\n", x.Lock.ID, x.Lock.Kind, stale, x.Lock.Command, x.Lock.Host, x.Lock.PID,
				x.Lock.Time.UTC().Format(time.RFC3339), x.Lock.Expires.UTC().Format(time.RFC3339), state)
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d lock(s) could not be removed", failed)
	}
	return nil
}
