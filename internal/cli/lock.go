package cli

import (
	"context"
	"errors"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/timespec"
)

// lockRepo takes a repository lock for cmd (shared for backup, restore, verify, copy; prune takes its
// exclusive lock inside the engine) and makes cmd's context the lock's, so the command stops if the
// lock is lost. With dryRun nothing is locked. unlock releases it; call it when the command ends.
func lockRepo(cmd *cobra.Command, f *Factory, kind string, dryRun bool) (unlock func(), err error) {
	if dryRun {
		return func() {}, nil
	}
	ctx := cmd.Context()
	r, err := f.Repo(ctx)
	if err != nil {
		return nil, err
	}
	eng := f.Engine(r)
	l, lctx, err := eng.Lock(ctx, engine.LockOptions{Kind: kind, Command: cmd.Name(), Retry: retryLock(cmd)})
	if err != nil {
		// verify only reads: with read-only credentials it cannot write a lock object, and that must
		// not stop it. A conflicting lock (prune running) still does.
		if cmd.Name() == "verify" && !errors.Is(err, engine.ErrLocked) && ctx.Err() == nil {
			f.Log().Warn("could not take a shared lock (read-only credentials?); verifying without one", "err", err)
			return func() {}, nil
		}
		return nil, err
	}
	cmd.SetContext(lctx)
	return func() {
		if err := l.Release(context.WithoutCancel(ctx)); err != nil {
			f.Log().Warn("could not remove the repository lock (it expires by itself)", "err", err)
		}
	}, nil
}

// retryLock is the --retry-lock duration (0 when not given).
func retryLock(cmd *cobra.Command) time.Duration {
	if fl := cmd.Flags().Lookup("retry-lock"); fl != nil {
		if d, ok := fl.Value.(*durationFlag); ok {
			return time.Duration(*d)
		}
	}
	return 0
}

// durationFlag is a duration flag in the one grammar of pkg/timespec (1d12h, 1.5d, 90m), not Go's.
type durationFlag time.Duration

func (d *durationFlag) Set(s string) error {
	v, err := timespec.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = durationFlag(v)
	return nil
}

func (d *durationFlag) String() string { return time.Duration(*d).String() }

func (d *durationFlag) Type() string { return "duration" }

type pflagFlag = pflag.Flag

// flagValue is a flag's value as given: a list for slice flags, else its string.
func flagValue(fl *pflag.Flag) any {
	if sv, ok := fl.Value.(pflag.SliceValue); ok {
		return sv.GetSlice()
	}
	return fl.Value.String()
}

// lockedRepo takes the repository lock of kind (none for a dry run) and opens the repository: how
// every command that reads snapshots under a lock starts. ctx is the lock's context (cancelled if
// the lock is lost); unlock is never nil on success.
func lockedRepo(cmd *cobra.Command, f *Factory, kind string, dryRun bool) (ctx context.Context, r *repo.Repo, unlock func(), err error) {
	unlock, err = lockRepo(cmd, f, kind, dryRun)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx = cmd.Context()
	if r, err = f.Repo(ctx); err != nil {
		unlock()
		return nil, nil, nil, err
	}
	return ctx, r, unlock, nil
}
