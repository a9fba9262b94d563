package r2_test

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/retention"
	"github.com/cfbackup/cfbackup/pkg/source/r2"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// journaled is what interrupted runs left: every journaled key with the segments its chunks are in.
type journaled struct {
	keys map[string][]string // object key → segment ids
	objs []string            // journal object keys
}

func readJournals(t *testing.T, st store.Store, secret []byte) journaled {
	t.Helper()
	ctx := context.Background()
	out := journaled{keys: map[string][]string{}}
	if err := st.List(ctx, r2.JournalPrefix, func(oi store.ObjectInfo) error {
		out.objs = append(out.objs, oi.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, k := range out.objs {
		rc, err := st.Open(ctx, k, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		j, err := r2.OpenJournal(secret, b)
		if err != nil {
			t.Fatalf("journal %s: %v", k, err)
		}
		for _, it := range j.Entries {
			var segs []string
			for _, c := range it.Chunks {
				if _, ok := j.Segments[c.Segment]; !ok {
					t.Fatalf("journal %s: %q points into segment %s it does not describe", k, it.Object.Key, c.Segment)
				}
				segs = append(segs, c.Segment)
			}
			out.keys[it.Object.Key] = segs
		}
	}
	return out
}

// interruptAfterJournals runs a backup of bucket src and cancels it once the run has written at
// least n journal objects.
func interruptAfterJournals(t *testing.T, e *env, secret []byte, n int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	_, _, err := e.backup(ctx, r2.BackupOptions{Bucket: "src", WriterSecret: secret, PrefetchBudget: 64 << 10, Concurrency: 2,
		BeforeGet: func(string) {
			mu.Lock()
			defer mu.Unlock()
			c := 0
			_ = e.st.List(context.Background(), r2.JournalPrefix, func(store.ObjectInfo) error { c++; return nil })
			if c >= n {
				cancel()
			}
		}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted backup: %v", err)
	}
	if snaps, _, err := e.rp.ListSnapshots(context.Background()); err != nil || len(snaps) != 0 {
		t.Fatalf("snapshots after the interruption: %d %v", len(snaps), err)
	}
}

// backupRecording backs up src and returns the keys it fetched (GETs).
func backupRecording(t *testing.T, e *env, secret []byte) (*manifest.Manifest, r2.Stats, map[string]int) {
	t.Helper()
	var mu sync.Mutex
	got := map[string]int{}
	m, st, err := e.backup(context.Background(), r2.BackupOptions{Bucket: "src", WriterSecret: secret, BeforeGet: func(k string) {
		mu.Lock()
		got[k]++
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	return m, st, got
}

func restoreAndCompare(t *testing.T, e *env, m *manifest.Manifest, model map[string]obj) {
	t.Helper()
	ctx := context.Background()
	if _, err := e.eng.Verify(ctx, m, engine.VerifyOptions{ReadData: true, Identities: e.ids}); err != nil {
		t.Fatal(err)
	}
	cat, err := m.OpenCatalogue(e.ids)
	if err != nil {
		t.Fatal(err)
	}
	items, err := r2.Select(cat, "src", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := r2.PlanRestore(ctx, e.cl, items, r2.Target{Bucket: "out", Overwrite: r2.OverwriteOverwrite})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r2.Restore(ctx, e.cl, r2.Opener(e.eng.Opener(m, e.ids)), plan, 4); err != nil {
		t.Fatal(err)
	}
	e.compareBucket(t, "out", "", model)
}

func resumeEnv(t *testing.T, n int) (*env, map[string]obj) {
	e := newEnv(t, "src", "out")
	e.rp.Config.SegmentSize = 96 << 10 // a segment every few objects
	return e, seed(t, e, "src", n)
}

// The story: a backup interrupted halfway leaves segments and a journal; the next backup downloads
// exactly the objects the journal does not hold, restores byte-exact, and removes the journal.
func TestResumeAfterCancel(t *testing.T) {
	e, model := resumeEnv(t, 300)
	interruptAfterJournals(t, e, e.secret, 4)
	j := readJournals(t, e.st, e.secret)
	if len(j.keys) < 10 || len(j.keys) >= len(model) {
		t.Fatalf("the interrupted run journaled %d of %d objects", len(j.keys), len(model))
	}
	m, st, got := backupRecording(t, e, e.secret)
	t.Logf("interrupted run journaled %d of %d objects in %d journal object(s); the resumed run fetched %d (%d bytes), resumed %d",
		len(j.keys), len(model), len(j.objs), st.Fetched, st.FetchedBytes, st.Resumed)
	if st.Resumed != int64(len(j.keys)) || st.Reused != st.Resumed || st.Fetched != int64(len(model)-len(j.keys)) || st.GETs != st.Fetched {
		t.Fatalf("resumed backup: %+v, journal held %d objects", st, len(j.keys))
	}
	for k := range model {
		_, inJournal := j.keys[k]
		if inJournal && got[k] > 0 {
			t.Fatalf("%q was journaled but fetched again", k)
		}
		if !inJournal && got[k] != 1 {
			t.Fatalf("%q fetched %d times", k, got[k])
		}
	}
	if rest := readJournals(t, e.st, e.secret); len(rest.objs) != 0 {
		t.Fatalf("journals left after the resumed backup committed: %v", rest.objs)
	}
	restoreAndCompare(t, e, m, model)

	// The next backup is an ordinary incremental one.
	_, st, _ = backupRecording(t, e, e.secret)
	if st.Fetched != 0 || st.Resumed != 0 || st.Reused != int64(len(model)) {
		t.Fatalf("backup after the resumed one: %+v", st)
	}
}

// Two interruptions in a row: the third run reuses what both journaled.
func TestResumeAfterTwoInterruptions(t *testing.T) {
	e, model := resumeEnv(t, 300)
	interruptAfterJournals(t, e, e.secret, 2)
	first := readJournals(t, e.st, e.secret)
	interruptAfterJournals(t, e, e.secret, len(first.objs)+3)
	both := readJournals(t, e.st, e.secret)
	if len(both.keys) <= len(first.keys) {
		t.Fatalf("the second interrupted run journaled nothing new (%d then %d)", len(first.keys), len(both.keys))
	}
	m, st, _ := backupRecording(t, e, e.secret)
	if st.Resumed != int64(len(both.keys)) || st.Fetched != int64(len(model)-len(both.keys)) {
		t.Fatalf("resumed backup: %+v, journals held %d objects", st, len(both.keys))
	}
	restoreAndCompare(t, e, m, model)
}

// A journaled segment that has since disappeared (deleted by hand, or prune after its grace period)
// makes its objects download again; nothing points into it.
func TestResumeIgnoresMissingSegment(t *testing.T) {
	e, model := resumeEnv(t, 300)
	interruptAfterJournals(t, e, e.secret, 4)
	j := readJournals(t, e.st, e.secret)
	count := map[string]int{}
	for _, segs := range j.keys {
		for _, s := range segs {
			count[s]++
		}
	}
	var ids []string
	for id := range count {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	gone := ids[len(ids)/2]
	if err := e.st.Delete(context.Background(), archive.SegmentKey(gone)); err != nil {
		t.Fatal(err)
	}
	lost := 0
	for _, segs := range j.keys {
		for _, s := range segs {
			if s == gone {
				lost++
				break
			}
		}
	}
	m, st, _ := backupRecording(t, e, e.secret)
	if lost == 0 || st.Resumed != int64(len(j.keys)-lost) || st.Fetched != int64(len(model)-len(j.keys)+lost) {
		t.Fatalf("backup after a journaled segment was deleted: %+v (journal %d, lost %d)", st, len(j.keys), lost)
	}
	for _, s := range m.Segments {
		if s.ID == gone {
			t.Fatal("the manifest lists the deleted segment")
		}
	}
	restoreAndCompare(t, e, m, model)
}

// A journal written under another writer secret cannot be read: the backup is full, the journal is
// left for prune, and prune removes it (and the orphan segments) after the grace period.
func TestResumeOtherWriterSecret(t *testing.T) {
	e, model := resumeEnv(t, 200)
	other := make([]byte, 32)
	rand.Read(other)
	interruptAfterJournals(t, e, other, 2)
	before := readJournals(t, e.st, other)
	m, st, _ := backupRecording(t, e, e.secret)
	if st.Resumed != 0 || st.Fetched != int64(len(model)) {
		t.Fatalf("backup with another writer secret: %+v", st)
	}
	after := readJournals(t, e.st, other)
	if len(after.objs) != len(before.objs) {
		t.Fatalf("journals of another writer secret: %d before, %d after", len(before.objs), len(after.objs))
	}
	ctx := context.Background()
	pol := retention.Policies{Default: retention.Policy{Last: 5}}
	res, err := e.eng.Prune(ctx, engine.PruneOptions{Policies: pol})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(readJournals(t, e.st, other).objs); n != len(before.objs) || res.Marked < n {
		t.Fatalf("prune within the grace period: %d journal(s) left, %d marked", n, res.Marked)
	}
	res, err = e.eng.Prune(ctx, engine.PruneOptions{Policies: pol, Grace: -1})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(readJournals(t, e.st, other).objs); n != 0 || res.SegmentsDeleted == 0 {
		t.Fatalf("prune after the grace period: %d journal(s) left, %d segment(s) deleted", n, res.SegmentsDeleted)
	}
	restoreAndCompare(t, e, m, model)
}

// A journal damaged in the store is ignored with a warning; the backup completes in full.
func TestResumeDamagedJournal(t *testing.T) {
	e, model := resumeEnv(t, 150)
	interruptAfterJournals(t, e, e.secret, 1)
	j := readJournals(t, e.st, e.secret)
	ctx := context.Background()
	for _, k := range j.objs {
		if err := e.st.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
		if err := e.st.Put(ctx, k, strings.NewReader("CFBR2JN1 not really a journal at all, just damage"), store.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	m, st, _ := backupRecording(t, e, e.secret)
	if st.Resumed != 0 || st.Fetched != int64(len(model)) {
		t.Fatalf("backup with a damaged journal: %+v", st)
	}
	restoreAndCompare(t, e, m, model)
}

// TestResumeJournalBounded: when more objects wait for the open segment than the journal keeps
// (small objects in a large segment), the journal holds only the bound — memory does not grow with
// the bucket — and the resumed run fetches what was not journaled, restoring everything.
func TestResumeJournalBounded(t *testing.T) {
	defer r2.SetJournalMaxWaiting(2)()
	e, model := resumeEnv(t, 300)
	interruptAfterJournals(t, e, e.secret, 2)
	j := readJournals(t, e.st, e.secret)
	if len(j.keys) == 0 || len(j.keys) > 2*len(j.objs) {
		t.Fatalf("%d journal object(s) hold %d objects, at most 2 each", len(j.objs), len(j.keys))
	}
	m, st, _ := backupRecording(t, e, e.secret)
	if st.Resumed != int64(len(j.keys)) || st.Fetched != int64(len(model)-len(j.keys)) {
		t.Fatalf("resumed backup: %+v, journal held %d objects", st, len(j.keys))
	}
	restoreAndCompare(t, e, m, model)
}
