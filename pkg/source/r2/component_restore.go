package r2

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source"
)

// usage is a usage error with an unchanged message.
func usage(format string, a ...any) error {
	return errclass.Wrap(errclass.Usage, fmt.Errorf(format, a...))
}

// CheckFlags checks restore's r2 flags before anything is read and reads --keys-from.
func (c *component) CheckFlags(verb source.Verb, fs *pflag.FlagSet) error {
	if verb != source.VerbRestore {
		return nil
	}
	value := func(name string) string {
		if f := fs.Lookup(name); f != nil {
			return f.Value.String()
		}
		return ""
	}
	keys, err := c.restore.keys(value("to-dir"), value("prefix"))
	c.restore.checked, c.restore.keyList = err == nil, keys
	return err
}

// keys checks the restore flags and returns the object keys asked for (--key, --keys-from).
func (r restoreFlags) keys(toDir, prefix string) ([]string, error) {
	switch r.Overwrite {
	case OverwriteFail, OverwriteSkip, OverwriteOverwrite:
	default:
		return nil, usage("--overwrite %q: use fail, skip or overwrite", r.Overwrite)
	}
	if toDir != "" && (r.ToBucket != "" || r.ToPrefix != "") {
		return nil, usage("--to-dir cannot be combined with --to-bucket or --to-prefix")
	}
	var keys []string
	if r.Objects != nil {
		keys = append(keys, r.Objects()...)
	}
	if r.ObjectsFrom != "" {
		more, err := readKeys(r.ObjectsFrom)
		if err != nil {
			return nil, usage("--keys-from: %w", err)
		}
		keys = append(keys, more...)
	}
	if len(keys) > 0 && prefix != "" {
		return nil, usage("choose --prefix or --key/--keys-from, not both")
	}
	return keys, nil
}

// readKeys reads one object key per line (empty lines skipped).
func readKeys(path string) ([]string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	var keys []string
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if l := strings.TrimRight(sc.Text(), "\r"); l != "" {
			keys = append(keys, l)
		}
	}
	return keys, sc.Err()
}

// target is where the restore writes: the bucket the objects came from, --to-bucket [--to-prefix],
// or --to-dir.
func (r restoreFlags) target(bucket string, req source.RestoreRequest) Target {
	t := Target{Bucket: bucket, Dir: req.ToDir, Overwrite: r.Overwrite}
	if r.ToBucket != "" {
		t.Bucket = r.ToBucket
	}
	if r.ToPrefix != "" {
		t.Prefix, t.StripPrefix = r.ToPrefix, req.Prefix
	}
	return t
}

// PlanRestore selects the objects (all of a bucket, --prefix, --key/--keys-from) and decides
// for each what the restore does at the target; it reads the target and writes nothing.
func (c *component) PlanRestore(ctx context.Context, env source.Env, req source.RestoreRequest) (source.RestorePlan, error) {
	keys := c.restore.keyList
	if !c.restore.checked {
		var err error
		if keys, err = c.restore.keys(req.ToDir, req.Prefix); err != nil {
			return nil, err
		}
	}
	m := req.Snapshot
	src, err := source.PickSource(m, Component, "R2 bucket", "R2 buckets", "--r2-bucket", c.restore.Bucket)
	if err != nil {
		return nil, err
	}
	items, err := Select(req.Catalogue, src.Name, req.Prefix, keys)
	if err != nil {
		return nil, err
	}
	t := c.restore.target(src.Name, req)
	var cl *Client
	if t.Dir == "" {
		if cl, err = newClient(env); err != nil {
			return nil, err
		}
	}
	plan, err := PlanRestore(ctx, cl, items, t)
	if err != nil {
		return nil, err
	}
	conc := concurrencySetting(env)
	if conc == 0 {
		conc = DefaultConcurrency
	}
	if !req.DryRun {
		var extra int64 // the part buffers beyond one per worker (RestorePartStreams), the streams' readers
		if cl != nil {
			extra = cl.PartBufferBytes(0) + plan.streamingBytes(conc)
		}
		setMemoryLimit(req.Repo, false, extra)
	}
	return &restorePlan{env: env, req: req, snapshot: m, bucket: src.Name, target: t, plan: plan, cl: cl, conc: conc}, nil
}

// restorePlan is a decided r2 restore (source.RestorePlan).
type restorePlan struct {
	env      source.Env
	req      source.RestoreRequest
	snapshot *manifest.Manifest
	bucket   string // the bucket in the snapshot
	target   Target
	plan     *Plan
	cl       *Client // nil for a directory target
	conc     int
}

// RestorePlanJSON is restore --dry-run --json's "plan" for r2.
type RestorePlanJSON struct {
	Snapshot string `json:"snapshot"`
	Bucket   string `json:"bucket"`
	*Plan
}

// RestoreSummary is restore --json's summary for r2.
type RestoreSummary struct {
	MessageType    string `json:"message_type"` // "summary"
	Snapshot       string `json:"snapshot"`
	Bucket         string `json:"bucket"`
	Target         string `json:"target"`
	Restored       int    `json:"restored"`
	Bytes          int64  `json:"bytes"`
	Same           int    `json:"same"`
	Skipped        int    `json:"skipped"`
	Duration       string `json:"duration"`
	SafetySnapshot string `json:"safety_snapshot,omitempty"`
	Undo           string `json:"undo,omitempty"`
}

func (p *restorePlan) JSON() any {
	return RestorePlanJSON{Snapshot: p.snapshot.ID, Bucket: p.bucket, Plan: p.plan}
}

func (p *restorePlan) Text(w io.Writer) {
	pl := p.plan
	fmt.Fprintf(w, "Would restore %d object(s) of R2 bucket %s from snapshot %s (%s) into %s: %d to write (%s), %d already identical, %d conflict(s) (--overwrite %s).\n",
		pl.Objects, p.bucket, p.snapshot.ID, p.snapshot.Time.Local().Format("2006-01-02 15:04:05"), pl.Target, pl.Puts, source.HumanBytes(pl.Bytes), pl.Same,
		pl.Conflicts+p.count("skip")+p.count("overwrite"), p.target.Overwrite)
	for _, e := range pl.Entries {
		fmt.Fprintf(w, "  %-9s %10s  %q\n", e.Action, source.HumanBytes(e.Size), e.Target)
	}
}

// count is the number of the plan's objects with action.
func (p *restorePlan) count(action string) int {
	n := 0
	for _, e := range p.plan.Entries {
		if e.Action == action {
			n++
		}
	}
	return n
}

// overwritten lists the keys at the target the restore replaces.
func (p *restorePlan) overwritten() []string {
	var keys []string
	for _, e := range p.plan.Entries {
		if e.Action == "overwrite" {
			keys = append(keys, e.Target)
		}
	}
	return keys
}

// Confirm: replacing objects that hold different data (--overwrite overwrite) needs --yes.
func (p *restorePlan) Confirm() *source.Confirmation {
	n := p.count("overwrite")
	if n == 0 {
		return nil
	}
	name := p.target.Bucket
	if p.target.Dir != "" {
		name = p.target.Dir
	}
	return &source.Confirmation{Prompt: fmt.Sprintf("the %d object(s) at %s that hold different data", n, p.plan.Target), Name: name}
}

// Safety backs up exactly the bucket's objects the restore overwrites; nothing for a directory, and
// nothing with --no-safety-snapshot (Execute says what that gives up).
func (p *restorePlan) Safety() *source.Safety {
	keys := p.overwritten()
	if len(keys) == 0 || p.cl == nil || p.req.NoSafety {
		return nil
	}
	var secret []byte
	if k := p.req.Repo.Key(); k != nil {
		secret = k.Secret()
	} else {
		p.env.Log().Warn("writer secret unavailable: the safety snapshot downloads every object it holds", "err", p.req.Repo.RequireKey("the R2 incremental index"))
	}
	bucket, cl, prefix := p.target.Bucket, p.cl, CommonPrefix(keys)
	return &source.Safety{
		Target: bucket,
		What:   fmt.Sprintf("the %d object(s) of bucket %s this restore overwrites", len(keys), bucket),
		Captures: []source.Capture{{Component: Component, Name: bucket, Run: func(ctx context.Context, s *source.Session) error {
			_, err := Backup(ctx, cl, s, BackupOptions{Bucket: bucket, Prefix: prefix, Keys: keys, WriterSecret: secret, Log: s.Log, Progress: s.Progress.Add})
			return err
		}}},
		Undo: func(id string) string {
			return fmt.Sprintf("cfbackup restore %s --component r2 --r2-bucket %s --overwrite overwrite --yes", id, bucket)
		},
	}
}

// Execute restores the objects (each checked against its SHA-256 before it is committed).
func (p *restorePlan) Execute(ctx context.Context, x source.Execution) (*source.RestoreResult, error) {
	p.notes(x)
	start := time.Now()
	x.Progress.Start("restore", p.plan.Bytes)
	res, err := Restore(ctx, p.cl, Opener(p.req.Open), p.plan, p.conc)
	x.Progress.Finish()
	if err != nil {
		return nil, err
	}
	el := time.Since(start)
	sum := RestoreSummary{MessageType: "summary", Snapshot: p.snapshot.ID, Bucket: p.bucket, Target: p.plan.Target,
		Restored: res.Restored, Bytes: res.Bytes, Same: res.Same, Skipped: res.Skipped, Duration: el.String(),
		SafetySnapshot: x.SafetySnapshot, Undo: x.Undo}
	text := fmt.Sprintf("Restored %d object(s) (%s) of R2 bucket %s from snapshot %s into %s in %s; %d already identical, %d skipped. Every object matched its SHA-256.\n",
		res.Restored, source.HumanBytes(res.Bytes), p.bucket, p.snapshot.ID, p.plan.Target, el.Round(time.Millisecond), res.Same, res.Skipped)
	return &source.RestoreResult{JSON: sum, Text: text}, nil
}

// notes tells the operator, before anything is written, what the undo does not cover: the objects
// this restore adds, or (--no-safety-snapshot) the objects it overwrites.
func (p *restorePlan) notes(x source.Execution) {
	w := p.env.Stderr()
	if n := len(p.overwritten()); n > 0 && p.cl != nil && p.req.NoSafety {
		fmt.Fprintf(w, "No safety snapshot (--no-safety-snapshot): the %d object(s) this restore overwrites in bucket %s cannot be put back by cfbackup.\n", n, p.target.Bucket)
	}
	if n := p.count("put"); n > 0 && x.Undo != "" {
		fmt.Fprintf(w, "(The undo puts back what was overwritten; it does not delete the %d object(s) this restore adds.)\n", n)
	}
}

// Overwrites names the bucket a restore into the account writes (source.Overwriter); nothing for
// --to-dir.
func (p *restorePlan) Overwrites() *source.Overwrite {
	if p.target.Dir != "" || p.target.Bucket == "" {
		return nil
	}
	return &source.Overwrite{Sources: []string{p.bucket}, Targets: []string{p.target.Bucket}, Items: int64(p.plan.Puts), Bytes: p.plan.Bytes, Live: int64(p.count("overwrite"))}
}
