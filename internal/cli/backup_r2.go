package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/source/r2"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// r2BackupFlags are backup's flags for the r2 component.
type r2BackupFlags struct {
	Buckets     []string
	Prefix      string
	Strict      bool
	Concurrency int
}

func (b *r2BackupFlags) addFlags(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringSliceVar(&b.Buckets, "r2-bucket", nil, "R2 bucket to back up; repeat for several (default: every bucket the keys can list)")
	fl.StringVar(&b.Prefix, "r2-prefix", "", "back up only objects whose key starts with this prefix")
	fl.BoolVar(&b.Strict, "strict", false, "fail when an object is deleted between listing and download (default: skip it with a warning)")
	fl.IntVar(&b.Concurrency, "r2-concurrency", 0, "parallel object downloads (env CFBACKUP_R2_CONCURRENCY; default 8)")
}

// r2MemoryLimit is the Go soft memory limit an R2 backup or restore sets when GOMEMLIMIT is not set,
// plus what the repository's store holds for uploads.
const r2MemoryLimit = 100 << 20

// setR2MemoryLimit keeps the heap of an R2 backup or restore near its buffers: a backup's pipeline
// holds ~75 MiB (archive chunks and frames, prefetched objects), a restore's workers a part buffer
// and a frame each, and with the default GOGC the heap would grow to twice that between collections
// (measured: 146 → 97 MiB peak RSS, and faster). The S3 store's part buffers come on top: without
// them in the limit the live heap of a backup into an S3 repository sat above it and GC ran 800
// times in 6 s. A restore uploads to the repository only for a safety snapshot: with the part
// buffers in its limit, its heap grew into them for nothing (peak RSS 88 → 150 MiB). GOMEMLIMIT,
// when set, wins.
func setR2MemoryLimit(eng *engine.Engine, uploads bool) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	limit := int64(r2MemoryLimit)
	if uploads {
		limit += store.UploadBufferBytes(eng.Repo.Store)
	}
	debug.SetMemoryLimit(limit)
}

// r2Client builds the S3 client for the r2 component from the configuration and environment.
func r2Client(f *Factory) (*r2.Client, error) {
	c := f.Config()
	return r2.New(r2.Config{Endpoint: c.R2Endpoint, AccessKeyID: c.R2AccessKeyID, SecretAccessKey: c.R2SecretAccessKey})
}

// plan adds the r2 sources to the backup plan.
func (b *r2BackupFlags) plan(ctx context.Context, o *BackupOptions, eng *engine.Engine, plan *engine.BackupPlan) error {
	cl, err := r2Client(o.f)
	if err != nil {
		return err
	}
	buckets := b.Buckets
	if len(buckets) == 0 {
		if buckets, err = cl.ListBuckets(ctx); err != nil {
			return err
		}
		if len(buckets) == 0 {
			return fmt.Errorf("%w: the R2 keys see no bucket; name one with --r2-bucket", engine.ErrNotFound)
		}
	}
	conc := b.Concurrency
	if conc == 0 {
		conc = o.f.Config().R2Concurrency
	}
	if conc < 0 || conc > 256 {
		return usageError{fmt.Errorf("--r2-concurrency %d: use 1 to 256", conc)}
	}
	if plan.Details == nil {
		plan.Details = map[string]any{}
	}
	plan.Details["r2"] = map[string]any{"buckets": buckets, "prefix_set": b.Prefix != ""}
	if o.DryRun {
		return nil
	}
	setR2MemoryLimit(eng, true)
	secret, serr := repoSecret(eng.Repo)
	if serr != nil {
		o.f.Log().Warn("writer secret unavailable: R2 objects are backed up in full, without an incremental index", "err", serr)
	}
	seen := map[string]bool{}
	for _, bucket := range buckets {
		if seen[bucket] {
			continue
		}
		seen[bucket] = true
		bucket := bucket
		plan.AddCapture(engine.Capture{Component: r2.Component, Name: bucket, Run: func(ctx context.Context, s *engine.Session) error {
			start := time.Now()
			s.Log.Info("backing up R2 bucket", "bucket", bucket)
			st, err := r2.Backup(ctx, cl, s, r2.BackupOptions{Bucket: bucket, Prefix: b.Prefix, Concurrency: conc, Strict: b.Strict,
				WriterSecret: secret, Log: s.Log, Progress: s.Progress.Add})
			if err != nil {
				return fmt.Errorf("back up R2 bucket %s: %w", bucket, err)
			}
			el := time.Since(start)
			s.Log.Info("R2 bucket done", "bucket", bucket, "objects", st.Objects, "reused", st.Reused, "resumed", st.Resumed, "downloaded", st.Fetched,
				"skipped", st.Skipped, "bytes", st.Bytes, "downloaded_bytes", st.FetchedBytes, "gets", st.GETs, "range_gets", st.RangeGETs,
				"objects_per_s", fmt.Sprintf("%.0f", float64(st.Objects)/max(el.Seconds(), 1e-3)), "duration", el.Round(time.Millisecond))
			return nil
		}})
	}
	return nil
}

func (b *r2BackupFlags) printPlan(w io.Writer, plan *engine.BackupPlan) {
	d, ok := plan.Details["r2"].(map[string]any)
	if !ok {
		return
	}
	buckets, _ := d["buckets"].([]string)
	fmt.Fprintf(w, "Would back up %d R2 bucket(s)", len(buckets))
	if b.Prefix != "" {
		fmt.Fprintf(w, " (keys under %q)", b.Prefix)
	}
	fmt.Fprintln(w, ":")
	for _, n := range buckets {
		fmt.Fprintf(w, "  %s\n", n)
	}
}
