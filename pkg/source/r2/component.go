package r2

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/source"
	"github.com/cfbackup/cfbackup/pkg/store"
)

func init() { source.Register(NewComponent) }

// NewComponent is the r2 component (pkg/source): R2 buckets over the S3 API.
func NewComponent() source.Component { return &component{} }

// component holds the r2 flags of one command run.
type component struct {
	backup  backupFlags
	restore restoreFlags
}

// backupFlags are backup's flags for the r2 component.
type backupFlags struct {
	Buckets     []string
	Prefix      string
	Strict      bool
	Concurrency int
}

// restoreFlags are restore's flags for the r2 component (--prefix and --to-dir are shared).
type restoreFlags struct {
	Bucket      string
	Objects     func() []string // --key (shared with kv)
	ObjectsFrom string
	ToBucket    string
	ToPrefix    string
	Overwrite   string

	// checked says CheckFlags has read the keys of --key and --keys-from into keyList.
	checked bool
	keyList []string
}

func (c *component) Name() string  { return Component }
func (c *component) Title() string { return "R2 bucket" }

// Flags binds the r2 flags of verb.
func (c *component) Flags(verb source.Verb, fs *pflag.FlagSet) {
	switch verb {
	case source.VerbBackup:
		b := &c.backup
		fs.StringSliceVar(&b.Buckets, "r2-bucket", nil, "R2 bucket to back up; repeat for several (default: every bucket the keys can list)")
		fs.StringVar(&b.Prefix, "prefix", "", "r2: back up only objects whose key starts with this prefix")
		fs.BoolVar(&b.Strict, "strict", false, "fail when an object is deleted between listing and download (default: skip it with a warning)")
		fs.IntVar(&b.Concurrency, "r2-concurrency", 0, "parallel object downloads (env CFBACKUP_R2_CONCURRENCY; default 8)")
	case source.VerbRestore:
		r := &c.restore
		fs.StringVar(&r.Bucket, "r2-bucket", "", "R2 bucket in the snapshot; optional when the snapshot has one")
		r.Objects = source.SharedStringArray(fs, "key", source.KeyUsage)
		fs.StringVar(&r.ObjectsFrom, "keys-from", "", "r2: restore the object keys listed in this file, one per line")
		fs.StringVar(&r.ToBucket, "to-bucket", "", "R2: restore into this bucket instead of the original one")
		fs.StringVar(&r.ToPrefix, "to-prefix", "", "R2: put restored keys under this prefix (replacing --prefix when given)")
		fs.StringVar(&r.Overwrite, "overwrite", OverwriteFail, "R2: when the target holds different data under a key: fail (write nothing), skip or overwrite")
	}
}

// newClient builds the S3 client from the settings (r2_endpoint and the R2 keys).
func newClient(env source.Env) (*Client, error) {
	return New(Config{Endpoint: env.Setting("r2_endpoint"), AccessKeyID: env.Setting("r2_access_key_id"), SecretAccessKey: env.Setting("r2_secret_access_key")})
}

// concurrencySetting is r2_concurrency (0 when unset).
func concurrencySetting(env source.Env) int {
	n, _ := strconv.Atoi(env.Setting("r2_concurrency"))
	return n
}

// memoryLimit is the Go soft memory limit an R2 backup or restore sets when GOMEMLIMIT is not set,
// plus what the repository's store holds for uploads.
const memoryLimit = 100 << 20

// setMemoryLimit keeps the heap of an R2 backup or restore near its buffers: a backup's pipeline
// holds ~75 MiB (archive chunks and frames, prefetched objects), a restore's workers a part buffer
// and a frame each, and with the default GOGC the heap would grow to twice that between collections
// (measured: 146 → 97 MiB peak RSS, and faster). The S3 store's part buffers come on top: without
// them in the limit the live heap of a backup into an S3 repository sat above it and GC ran 800
// times in 6 s. A restore uploads to the repository only for a safety snapshot: with the part
// buffers in its limit, its heap grew into them for nothing (peak RSS 88 → 150 MiB). GOMEMLIMIT,
// when set, wins. extra is memory on top (a restore's shared budget of part buffers beyond one per
// worker, which the 100 MiB were measured without).
func setMemoryLimit(r *repo.Repo, uploads bool, extra int64) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	limit := int64(memoryLimit) + extra
	if uploads && r != nil {
		limit += store.UploadBufferBytes(r.Store)
	}
	debug.SetMemoryLimit(limit)
}

// BackupDetails is the r2 part of backup --dry-run --json ("details": {"r2": …}).
type BackupDetails struct {
	Buckets   []string `json:"buckets"`
	PrefixSet bool     `json:"prefix_set"`
}

// PlanBackup resolves the buckets (--r2-bucket, or every bucket the keys can list) and adds one
// capture per bucket.
func (c *component) PlanBackup(ctx context.Context, env source.Env, req source.BackupRequest) (*source.BackupPlan, error) {
	b := c.backup
	cl, err := newClient(env)
	if err != nil {
		return nil, err
	}
	buckets := b.Buckets
	if len(buckets) == 0 {
		if buckets, err = cl.ListBuckets(ctx); err != nil {
			return nil, err
		}
		if len(buckets) == 0 {
			return nil, fmt.Errorf("%w: the R2 keys see no bucket; name one with --r2-bucket", errclass.NotFound)
		}
	}
	conc := b.Concurrency
	if conc == 0 {
		conc = concurrencySetting(env)
	}
	if conc < 0 || conc > 256 {
		return nil, errclass.Wrap(errclass.Usage, fmt.Errorf("--r2-concurrency %d: use 1 to 256", conc))
	}
	plan := &source.BackupPlan{Components: []string{Component}}
	plan.SetDetails(Component, BackupDetails{Buckets: buckets, PrefixSet: b.Prefix != ""}, func(w io.Writer) { b.printPlan(w, buckets) })
	if req.DryRun {
		return plan, nil
	}
	// The 100 MiB base was measured with a prefetch budget of PrefetchBudget; more workers bring
	// more, and the range buffers kept for large objects (rangeKeepBytes) are held too.
	setMemoryLimit(req.Repo, true, prefetchBudget(cmp.Or(conc, DefaultConcurrency))-PrefetchBudget+rangeKeepBytes)
	if req.SecretErr != nil {
		env.Log().Warn("writer secret unavailable: R2 objects are backed up in full, without an incremental index", "err", req.SecretErr)
	}
	seen := map[string]bool{}
	for _, bucket := range buckets {
		if !seen[bucket] {
			seen[bucket] = true
			plan.AddCapture(b.capture(cl, bucket, conc, req.WriterSecret))
		}
	}
	return plan, nil
}

func (b backupFlags) printPlan(w io.Writer, buckets []string) {
	fmt.Fprintf(w, "Would back up %d R2 bucket(s)", len(buckets))
	if b.Prefix != "" {
		fmt.Fprintf(w, " (keys under %q)", b.Prefix)
	}
	fmt.Fprintln(w, ":")
	for _, n := range buckets {
		fmt.Fprintf(w, "  %s\n", n)
	}
}

// capture backs up one bucket and logs what it read and reused.
func (b backupFlags) capture(cl *Client, bucket string, conc int, secret []byte) source.Capture {
	return source.Capture{Component: Component, Name: bucket, Run: func(ctx context.Context, s *source.Session) error {
		start := time.Now()
		s.Log.Info("backing up R2 bucket", "bucket", bucket)
		st, err := Backup(ctx, cl, s, BackupOptions{Bucket: bucket, Prefix: b.Prefix, Concurrency: conc, Strict: b.Strict,
			WriterSecret: secret, Log: s.Log, Progress: s.Progress.Add})
		if err != nil {
			return fmt.Errorf("back up R2 bucket %s: %w", bucket, err)
		}
		el := time.Since(start)
		s.Log.Info("R2 bucket done", "bucket", bucket, "objects", st.Objects, "reused", st.Reused, "resumed", st.Resumed, "downloaded", st.Fetched,
			"skipped", st.Skipped, "bytes", st.Bytes, "downloaded_bytes", st.FetchedBytes, "gets", st.GETs, "range_gets", st.RangeGETs,
			"objects_per_s", fmt.Sprintf("%.0f", float64(st.Objects)/max(el.Seconds(), 1e-3)), "duration", el.Round(time.Millisecond))
		return nil
	}}
}
