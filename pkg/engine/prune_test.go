package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/keys"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/retention"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/faulty"
	"github.com/cfbackup/cfbackup/pkg/store/mem"
)

// clock is a settable fake clock for the engine.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time)     { c.mu.Lock(); c.t = t; c.mu.Unlock() }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type pruneFixture struct {
	st  store.Store
	eng *engine.Engine
	clk *clock
	ids []age.Identity
}

func newPruneFixture(t *testing.T, st store.Store) *pruneFixture {
	t.Helper()
	return newPruneFixtureWith(t, st, nil)
}

func testRecipient(t *testing.T) string {
	t.Helper()
	_, rcp, err := keys.Generate(false)
	if err != nil {
		t.Fatal(err)
	}
	return rcp
}

func newPruneFixtureWith(t *testing.T, st store.Store, ol *repo.ObjectLock) *pruneFixture {
	t.Helper()
	if st == nil {
		st = mem.New()
	}
	idStr, rcp, err := keys.Generate(false)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "key.txt")
	if err := keys.WriteIdentityFile(p, idStr, rcp); err != nil {
		t.Fatal(err)
	}
	ids, err := keys.ReadIdentityFile(p)
	if err != nil {
		t.Fatal(err)
	}
	r, _, err := repo.Init(context.Background(), st, repo.InitOptions{Recipients: []string{rcp}, SegmentSize: 1 << 20, ObjectLock: ol})
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Now().UTC().Truncate(time.Second)}
	return &pruneFixture{st: st, eng: &engine.Engine{Repo: r, Now: clk.Now}, clk: clk, ids: ids}
}

// snapshot writes a one-source snapshot at the clock's time; with parent set, it also re-uses the
// parent's items (an incremental backup) and references the parent's segments.
func (f *pruneFixture) snapshot(t *testing.T, source string, labels map[string]string, parent *manifest.Manifest) *manifest.Manifest {
	t.Helper()
	ctx := context.Background()
	plan := &engine.BackupPlan{Components: []string{"r2"}}
	plan.AddCapture(engine.Capture{Component: "r2", Name: source, Run: func(ctx context.Context, s *engine.Session) error {
		var items []manifest.Item
		ref, err := s.Writer.WriteItem("obj-"+f.clk.Now().Format("150405"), strings.NewReader(strings.Repeat("payload ", 500)+f.clk.Now().String()))
		if err != nil {
			return err
		}
		items = append(items, manifest.Item{Component: "r2", Source: source, Kind: "object", ItemRef: ref})
		if parent != nil {
			cat, err := parent.OpenCatalogue(f.ids)
			if err != nil {
				return err
			}
			items = append(items, cat.Items...)
			s.Reference(parent.Segments...)
		}
		s.Add(manifest.Source{Component: "r2", ID: source, Name: source, Items: int64(len(items))}, items...)
		return nil
	}})
	m, err := f.eng.Backup(ctx, plan, engine.BackupOptions{Labels: labels})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (f *pruneFixture) keys(t *testing.T, prefix string) []string {
	t.Helper()
	var out []string
	if err := f.st.List(context.Background(), prefix, func(oi store.ObjectInfo) error { out = append(out, oi.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func (f *pruneFixture) verifyAll(t *testing.T) {
	t.Helper()
	snaps, bad, err := f.eng.Repo.ListSnapshots(context.Background())
	if err != nil || len(bad) > 0 {
		t.Fatalf("list: %v %v", err, bad)
	}
	for _, m := range snaps {
		if _, err := f.eng.Verify(context.Background(), m, engine.VerifyOptions{ReadData: true, Identities: f.ids}); err != nil {
			t.Fatalf("kept snapshot %s does not verify after prune: %v", m.ID, err)
		}
	}
}

func ids(ms ...*manifest.Manifest) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

func keptIDs(r *engine.PruneResult) map[string][]string {
	out := map[string][]string{}
	for _, k := range r.Kept {
		out[k.Snapshot] = k.Reasons
	}
	return out
}

func TestPruneKeepsPolicyAndHoldsAndWritesRecord(t *testing.T) {
	ctx := context.Background()
	f := newPruneFixture(t, nil)
	var ms []*manifest.Manifest
	for i := 0; i < 5; i++ {
		ms = append(ms, f.snapshot(t, "media", nil, nil))
		f.clk.Add(24 * time.Hour)
	}
	// ms[0] oldest … ms[4] newest. Hold the oldest.
	if _, err := f.eng.AddHold(ctx, ms[0], engine.HoldOptions{Reason: "litigation", Case: "C-1", Actor: "alice"}); err != nil {
		t.Fatal(err)
	}
	segsBefore := f.keys(t, "segments/")
	pol := retention.Policies{Default: retention.Policy{Last: 2}}

	dry, err := f.eng.Prune(ctx, engine.PruneOptions{Policies: pol, DryRun: true, Grace: -1})
	if err != nil {
		t.Fatal(err)
	}
	// What is freed: the snapshots' segments and their catalogue objects.
	if len(dry.Removed) != 2 || dry.SegmentsDeleted != 2 || dry.BytesFreed != ms[1].StoredSize+ms[2].StoredSize+catSize(ms[1])+catSize(ms[2]) {
		t.Fatalf("dry run plan: removed %v, segments %d, bytes %d", dry.Removed, dry.SegmentsDeleted, dry.BytesFreed)
	}
	if got := f.keys(t, "segments/"); len(got) != len(segsBefore) || len(f.keys(t, "prune/")) != 0 || len(f.keys(t, "marks/")) != 0 {
		t.Fatal("dry run changed the repository")
	}

	res, err := f.eng.Prune(ctx, engine.PruneOptions{Policies: pol, Grace: -1, Actor: "cron", Policy: map[string]any{"keep_last": 2}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{ms[4].ID: {"last"}, ms[3].ID: {"last"}, ms[0].ID: {"hold"}}
	if got := keptIDs(res); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("kept %v, want %v", got, want)
	}
	if len(res.Removed) != 2 || res.Removed[0].Snapshot != ms[2].ID || res.Removed[1].Snapshot != ms[1].ID {
		t.Fatalf("removed %v", res.Removed)
	}
	if res.SegmentsDeleted != 2 || len(f.keys(t, "segments/")) != 3 || len(f.keys(t, "snapshots/")) != 3 {
		t.Fatalf("deleted %d segments; left %v", res.SegmentsDeleted, f.keys(t, "segments/"))
	}
	f.verifyAll(t)
	// The prune record follows docs/FORMAT.md.
	recs := f.keys(t, "prune/")
	if len(recs) != 1 || recs[0] != res.RecordKey {
		t.Fatalf("records %v", recs)
	}
	rc, err := f.st.Open(ctx, recs[0], 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	var rec map[string]any
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"time", "actor", "policy", "dry_run", "kept", "removed", "segments_deleted", "bytes_freed", "errors"} {
		if _, ok := rec[k]; !ok {
			t.Errorf("prune record lacks %q: %s", k, b)
		}
	}
	if rec["actor"] != "cron" || rec["dry_run"] != false {
		t.Errorf("record %s", b)
	}
	if len(f.keys(t, "marks/")) != 0 {
		t.Errorf("finished marks left: %v", f.keys(t, "marks/"))
	}
	// Releasing the hold lets the next prune remove it.
	if _, err := f.eng.ReleaseHold(ctx, ms[0].ID, engine.HoldOptions{Reason: "case closed"}); err != nil {
		t.Fatal(err)
	}
	res, err = f.eng.Prune(ctx, engine.PruneOptions{Policies: pol, Grace: -1})
	if err != nil || len(res.Removed) != 1 || res.Removed[0].Snapshot != ms[0].ID {
		t.Fatalf("after release: %v %+v", err, res)
	}
	f.verifyAll(t)
}

func TestPruneKeepsSegmentsThatIncrementalsReference(t *testing.T) {
	ctx := context.Background()
	f := newPruneFixture(t, nil)
	base := f.snapshot(t, "media", nil, nil)
	f.clk.Add(time.Hour)
	inc := f.snapshot(t, "media", nil, base)
	if len(inc.Segments) != 2 {
		t.Fatalf("incremental lists %d segments, want its own and the base's", len(inc.Segments))
	}
	res, err := f.eng.Prune(ctx, engine.PruneOptions{Policies: retention.Policies{Default: retention.Policy{Last: 1}}, Grace: -1})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Removed) != 1 || res.Removed[0].Snapshot != base.ID || res.SegmentsDeleted != 0 {
		t.Fatalf("removed %v, segments deleted %d", res.Removed, res.SegmentsDeleted)
	}
	if _, err := f.st.Stat(ctx, base.Segments[0].Key); err != nil {
		t.Fatalf("base segment referenced by the incremental was deleted: %v", err)
	}
	f.verifyAll(t)
}

func TestPruneGracePeriodAndCrashedBackupOrphans(t *testing.T) {
	ctx := context.Background()
	f := newPruneFixture(t, nil)
	old := f.snapshot(t, "media", nil, nil)
	f.clk.Add(time.Hour)
	f.snapshot(t, "media", nil, nil)
	// A crashed backup left a segment no manifest names.
	orphan := archive.SegmentKey("deadbeefdeadbeefdeadbeefdeadbeef")
	if err := f.st.Put(ctx, orphan, bytes.NewReader([]byte("half a segment")), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	pol := retention.Policies{Default: retention.Policy{Last: 1}}
	f.clk.Add(time.Hour)
	res, err := f.eng.Prune(ctx, engine.PruneOptions{Policies: pol}) // default grace: 24h
	if err != nil {
		t.Fatal(err)
	}
	// Marked: the orphan, the old snapshot's segment and its catalogue object.
	if len(res.Removed) != 1 || res.SegmentsDeleted != 0 || res.Marked != 3 || res.PendingBytes == 0 {
		t.Fatalf("first run: removed %d, deleted %d, marked %d, pending %d", len(res.Removed), res.SegmentsDeleted, res.Marked, res.PendingBytes)
	}
	for _, k := range []string{orphan, old.Segments[0].Key} {
		if _, err := f.st.Stat(ctx, k); err != nil {
			t.Fatalf("%s deleted inside the grace period: %v", k, err)
		}
	}
	if len(f.keys(t, "marks/")) != 1 {
		t.Fatalf("marks %v", f.keys(t, "marks/"))
	}
	// 23h later: still inside the grace period.
	f.clk.Add(23 * time.Hour)
	if res, err = f.eng.Prune(ctx, engine.PruneOptions{Policies: pol}); err != nil || res.SegmentsDeleted != 0 || res.Marked != 0 {
		t.Fatalf("second run: %v deleted %d marked %d", err, res.SegmentsDeleted, res.Marked)
	}
	// Past it: the old snapshot's segment and the orphan go; the finished mark is removed.
	f.clk.Add(2 * time.Hour)
	res, err = f.eng.Prune(ctx, engine.PruneOptions{Policies: pol})
	if err != nil || res.SegmentsDeleted != 2 {
		t.Fatalf("third run: %v deleted %d", err, res.SegmentsDeleted)
	}
	for _, k := range []string{orphan, old.Segments[0].Key} {
		if _, err := f.st.Stat(ctx, k); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("%s still there: %v", k, err)
		}
	}
	if len(f.keys(t, "marks/")) != 0 || len(f.keys(t, "prune/")) != 3 {
		t.Fatalf("marks %v records %v", f.keys(t, "marks/"), f.keys(t, "prune/"))
	}
	f.verifyAll(t)
}

func TestPruneRefusesEmptyPolicyAndEnforces(t *testing.T) {
	ctx := context.Background()
	f := newPruneFixture(t, nil)
	f.snapshot(t, "media", nil, nil)
	if _, err := f.eng.Prune(ctx, engine.PruneOptions{}); !errors.Is(err, engine.ErrUsage) || !strings.Contains(err.Error(), "--unsafe-allow-remove-all") {
		t.Fatalf("empty policy: %v", err)
	}
	if _, err := f.eng.Prune(ctx, engine.PruneOptions{Policies: retention.Policies{Default: retention.Policy{Daily: -1}}}); !errors.Is(err, engine.ErrUsage) {
		t.Fatalf("negative count: %v", err)
	}
	f.clk.Add(30 * time.Hour)
	pol := retention.Policies{Components: map[string]retention.Policy{"r2": {Last: 5, RequireWithin: 26 * time.Hour}}}
	res, err := f.eng.Prune(ctx, engine.PruneOptions{Policies: pol, Enforce: true, DryRun: true})
	if !errors.Is(err, engine.ErrPolicyViolation) || len(res.Violations) != 1 || !strings.Contains(res.Violations[0], "r2/media") {
		t.Fatalf("enforce: %v %+v", err, res)
	}
	f.snapshot(t, "media", nil, nil)
	f.snapshot(t, "media", nil, nil)
	pol = retention.Policies{Default: retention.Policy{Last: 1}}
	if _, err := f.eng.Prune(ctx, engine.PruneOptions{Policies: pol, Enforce: true, DryRun: true}); !errors.Is(err, engine.ErrPolicyViolation) || !strings.Contains(err.Error(), "outlives") {
		t.Fatalf("outlived: %v", err)
	}
	if _, err := f.eng.Prune(ctx, engine.PruneOptions{Policies: pol, Enforce: true, Grace: -1}); err != nil {
		t.Fatalf("enforced prune that removes them: %v", err)
	}
	// --unsafe-allow-remove-all with an empty policy removes everything that is not held.
	res, err = f.eng.Prune(ctx, engine.PruneOptions{UnsafeAllowRemoveAll: true, Grace: -1})
	if err != nil || len(res.Removed) != 1 || len(f.keys(t, "snapshots/")) != 0 || len(f.keys(t, "segments/")) != 0 {
		t.Fatalf("remove all: %v %+v", err, res)
	}
}

func TestPruneWaitsForBackupLock(t *testing.T) {
	ctx := context.Background()
	f := newPruneFixture(t, nil)
	f.snapshot(t, "media", nil, nil)
	backup, _, err := f.eng.Lock(ctx, engine.LockOptions{Kind: engine.LockShared, Command: "backup"})
	if err != nil {
		t.Fatal(err)
	}
	// A second shared lock (verify) is fine alongside.
	verify, _, err := f.eng.Lock(ctx, engine.LockOptions{Kind: engine.LockShared, Command: "verify"})
	if err != nil {
		t.Fatal(err)
	}
	verify.Release(ctx)
	pol := retention.Policies{Default: retention.Policy{Last: 1}}
	_, err = f.eng.Prune(ctx, engine.PruneOptions{Policies: pol})
	var le *engine.LockedError
	if !errors.Is(err, engine.ErrLocked) || !errors.As(err, &le) || le.Holder.Command != "backup" || le.Holder.PID == 0 || le.Holder.Host == "" {
		t.Fatalf("prune under a backup lock: %v", err)
	}
	for _, want := range []string{"backup", "pid", "since", "--retry-lock"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("lock message %q lacks %q", err, want)
		}
	}
	if n := len(f.keys(t, "locks/")); n != 1 {
		t.Fatalf("the refused prune left its lock: %d lock objects", n)
	}
	// With --retry-lock, prune waits for the backup to finish.
	go func() { time.Sleep(300 * time.Millisecond); backup.Release(context.Background()) }()
	if _, err := f.eng.Prune(ctx, engine.PruneOptions{Policies: pol, Lock: engine.LockOptions{Retry: 10 * time.Second, Poll: 50 * time.Millisecond}}); err != nil {
		t.Fatalf("prune with retry: %v", err)
	}
	if n := len(f.keys(t, "locks/")); n != 0 {
		t.Fatalf("locks left: %v", f.keys(t, "locks/"))
	}
	// And a backup cannot start while prune holds the exclusive lock.
	pl, _, err := f.eng.Lock(ctx, engine.LockOptions{Kind: engine.LockExclusive, Command: "prune"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.eng.Lock(ctx, engine.LockOptions{Kind: engine.LockShared, Command: "backup"}); !errors.Is(err, engine.ErrLocked) || !strings.Contains(err.Error(), "exclusive lock held by \"prune\"") {
		t.Fatalf("backup under prune: %v", err)
	}
	pl.Release(ctx)
}

func TestLockStaleTakeoverAndRefresh(t *testing.T) {
	ctx := context.Background()
	f := newPruneFixture(t, nil)
	// A lock from a host that died an hour ago.
	dead := engine.LockInfo{ID: "0123456789abcdef", Kind: engine.LockShared, Command: "backup", Host: "gone-host", PID: 4242, Actor: "cron@gone-host",
		Time: f.clk.Now().Add(-2 * time.Hour), Expires: f.clk.Now().Add(-time.Hour)}
	b, _ := json.Marshal(dead)
	if err := f.st.Put(ctx, "locks/0123456789abcdef.json", bytes.NewReader(b), store.PutOptions{IfNotExists: true}); err != nil {
		t.Fatal(err)
	}
	l, _, err := f.eng.Lock(ctx, engine.LockOptions{Kind: engine.LockExclusive, Command: "prune"})
	if err != nil {
		t.Fatalf("stale lock not taken over: %v", err)
	}
	if _, err := f.st.Stat(ctx, "locks/0123456789abcdef.json"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("stale lock not removed: %v", err)
	}
	l.Release(ctx)

	// The holder refreshes its lock: a new object with a later expiry replaces the old one.
	l, _, err = f.eng.Lock(ctx, engine.LockOptions{Kind: engine.LockShared, Command: "backup", TTL: 150 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	first := l.Info()
	deadline := time.Now().Add(5 * time.Second)
	for l.Info().ID == first.ID && time.Now().Before(deadline) {
		f.clk.Add(10 * time.Millisecond)
		time.Sleep(10 * time.Millisecond)
	}
	if l.Info().ID == first.ID || !l.Info().Expires.After(first.Expires) || !l.Info().Time.Equal(first.Time) {
		t.Fatalf("lock not refreshed: %+v → %+v", first, l.Info())
	}
	if got := f.keys(t, "locks/"); len(got) != 1 || got[0] != "locks/"+l.Info().ID+".json" {
		t.Fatalf("lock objects %v", got)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.keys(t, "locks/"); len(got) != 0 {
		t.Fatalf("left %v", got)
	}
}

func TestHoldBadInput(t *testing.T) {
	ctx := context.Background()
	f := newPruneFixture(t, nil)
	m := f.snapshot(t, "media", nil, nil)
	if _, err := f.eng.AddHold(ctx, m, engine.HoldOptions{}); !errors.Is(err, engine.ErrUsage) {
		t.Fatalf("no reason: %v", err)
	}
	if _, err := f.eng.AddHold(ctx, m, engine.HoldOptions{Reason: "x", Until: f.clk.Now().Add(-time.Hour)}); !errors.Is(err, engine.ErrUsage) {
		t.Fatalf("until in the past: %v", err)
	}
	if _, err := f.eng.ReleaseHold(ctx, m.ID, engine.HoldOptions{Reason: "x"}); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("release without hold: %v", err)
	}
	res, err := f.eng.AddHold(ctx, m, engine.HoldOptions{Reason: "audit", Until: f.clk.Now().Add(48 * time.Hour)})
	if err != nil || !strings.Contains(res.Protection, "recorded hold only") {
		t.Fatalf("add: %v %+v", err, res)
	}
	held, _ := f.eng.HeldSnapshots(ctx)
	if !held[m.ID] {
		t.Fatal("not held")
	}
	f.clk.Add(49 * time.Hour) // the hold expired by itself
	held, _ = f.eng.HeldSnapshots(ctx)
	if held[m.ID] {
		t.Fatal("expired hold still active")
	}
	if _, err := f.eng.ReleaseHold(ctx, m.ID, engine.HoldOptions{Reason: "x"}); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("release of an expired hold: %v", err)
	}
	hs, err := f.eng.ListHolds(ctx)
	if err != nil || len(hs) != 1 || hs[0].Active || hs[0].Reason != "audit" {
		t.Fatalf("holds %+v %v", hs, err)
	}
	_ = ids
}

// Every delete's result is checked: a failed delete is reported (and the snapshot stays whole), a
// delete whose answer was lost but which happened is not an error.
func TestPruneChecksEveryDelete(t *testing.T) {
	ctx := context.Background()
	fs := faulty.New(mem.New())
	f := newPruneFixture(t, fs)
	a := f.snapshot(t, "media", nil, nil)
	f.clk.Add(time.Hour)
	b := f.snapshot(t, "media", nil, nil)
	f.clk.Add(time.Hour)
	f.snapshot(t, "media", nil, nil)
	pol := retention.Policies{Default: retention.Policy{Last: 1}}
	n := fs.Calls(faulty.OpDelete)
	fs.FailDelete(n+1, errors.New("disk on fire"))                     // the first manifest delete fails
	fs.FailAfter(faulty.OpDelete, n+2, errors.New("connection reset")) // the second happens, its answer is lost
	res, err := f.eng.Prune(ctx, engine.PruneOptions{Policies: pol, Grace: -1})
	if err == nil || !strings.Contains(err.Error(), "disk on fire") || len(res.Errors) != 1 {
		t.Fatalf("err %v, errors %v", err, res.Errors)
	}
	if len(res.Removed) != 1 || res.Removed[0].Snapshot != a.ID {
		t.Fatalf("removed %v (want only %s; %s's delete failed)", res.Removed, a.ID, b.ID)
	}
	f.verifyAll(t) // b is still whole: its segment was not collected
	if len(f.keys(t, "prune/")) != 1 {
		t.Fatal("no prune record for a run with errors")
	}
}

// A holder that cannot refresh its lock stops (its context is cancelled) before the lock expires.
func TestLockLostCancelsHolder(t *testing.T) {
	fs := faulty.New(mem.New())
	f := newPruneFixture(t, fs)
	l, lctx, err := f.eng.Lock(context.Background(), engine.LockOptions{Kind: engine.LockShared, Command: "backup", TTL: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(context.Background())
	n := fs.Calls(faulty.OpPut)
	for i := 1; i <= 1000; i++ {
		fs.FailPut(n+i, errors.New("store unreachable"))
	}
	deadline := time.Now().Add(5 * time.Second)
	for lctx.Err() == nil && time.Now().Before(deadline) {
		f.clk.Add(20 * time.Millisecond)
		time.Sleep(10 * time.Millisecond)
	}
	if lctx.Err() == nil {
		t.Fatal("lost lock did not cancel its holder")
	}
}

// catSize is the bytes of a snapshot's catalogue objects (prune frees them with the snapshot).
func catSize(m *manifest.Manifest) int64 {
	var n int64
	for _, c := range m.CatalogueObjects {
		n += c.Size
	}
	return n
}
