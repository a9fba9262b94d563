package config_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/source/config"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// verifyRecords reads the repository's verify/ records.
func (f *fixture) verifyRecords(t *testing.T) []engine.VerifyResult {
	t.Helper()
	ctx := context.Background()
	st := f.eng.Repo.Store
	var out []engine.VerifyResult
	err := st.List(ctx, engine.VerifyPrefix, func(oi store.ObjectInfo) error {
		rc, err := st.Open(ctx, oi.Key, 0, -1)
		if err != nil {
			return err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(`"app"`)) || bytes.Contains(b, []byte("cron")) {
			t.Errorf("verify record %s names a script:\n%s", oi.Key, b)
		}
		var v engine.VerifyResult
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		out = append(out, v)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (f *fixture) capture(t *testing.T) *config.State {
	t.Helper()
	st, err := config.Capture(context.Background(), f.cf, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestTestRestoreConfig: test-restore of a snapshot holding the Workers configuration decrypts, parses
// and checks it against the catalogue, and records a pass (it used to fail with "this version cannot
// test-restore config", recorded as SHA-256 failures).
func TestTestRestoreConfig(t *testing.T) {
	f := newFixture(t)
	m := f.backup(t, f.capture(t))
	res, err := f.eng.TestRestore(context.Background(), m, engine.TestRestoreOptions{Identities: f.ids, Record: true})
	if err != nil || !res.OK {
		t.Fatalf("test-restore: %v %+v", err, res)
	}
	if len(res.Sources) != 1 || res.Sources[0].Items != 3 || len(res.Sources[0].Problems) != 0 {
		t.Fatalf("sources: %+v", res.Sources)
	}
	checks := strings.Join(res.Sources[0].Checks, ", ")
	for _, want := range []string{"SHA-256", "3 document(s) parse", "match the catalogue", "read back identical"} {
		if !strings.Contains(checks, want) {
			t.Errorf("checks %q lack %q", checks, want)
		}
	}
	recs := f.verifyRecords(t)
	if len(recs) != 1 || !recs[0].OK || recs[0].FailureKind != "" || recs[0].Mode != "test-restore" || recs[0].Items != 3 {
		t.Fatalf("verify records: %+v", recs)
	}
}

// TestTestRestoreConfigFindsDocumentsThatDisagree: a document whose content does not match its
// catalogue entry is an integrity failure, recorded as such without the script's name.
func TestTestRestoreConfigFindsDocumentsThatDisagree(t *testing.T) {
	f := newFixture(t)
	st := f.capture(t)
	st.Scripts["app"]["name"] = "cron" // the document stored as "app" says it is another script
	m := f.backup(t, st)
	res, err := f.eng.TestRestore(context.Background(), m, engine.TestRestoreOptions{Identities: f.ids, Record: true})
	if !errors.Is(err, engine.ErrIntegrity) || res == nil || res.OK {
		t.Fatalf("test-restore: %v %+v", err, res)
	}
	src := res.Sources[0]
	if len(src.Problems) != 1 || !strings.Contains(src.Problems[0], `the document is of script "cron", the catalogue says "app"`) || src.ProblemKinds[0] != engine.FailureIntegrity {
		t.Fatalf("problems %q kinds %q", src.Problems, src.ProblemKinds)
	}
	recs := f.verifyRecords(t)
	if len(recs) != 1 || recs[0].OK || recs[0].FailureKind != engine.FailureIntegrity || recs[0].Failures[engine.FailureIntegrity] != 1 ||
		strings.Join(recs[0].Problems, ";") != "config: 1 integrity" {
		t.Fatalf("verify record: %+v", recs)
	}
}

// testEnv is the host as the config component sees it in these tests.
type testEnv struct {
	cf  *cloudflare.Client
	err error
}

func (e testEnv) Cloudflare() (*cloudflare.Client, error) { return e.cf, e.err }
func (testEnv) Setting(string) string                     { return "" }
func (testEnv) Log() *slog.Logger                         { return slog.New(slog.DiscardHandler) }
func (testEnv) Stderr() io.Writer                         { return io.Discard }
func (testEnv) Interactive() bool                         { return false }

// TestTestRestoreConfigDiff: with a live comparison, differences are listed but are not failures.
func TestTestRestoreConfigDiff(t *testing.T) {
	f := newFixture(t)
	m := f.backup(t, f.capture(t))
	opts := engine.TestRestoreOptions{Identities: f.ids, Diff: true, Env: testEnv{cf: f.cf}}
	res, err := f.eng.TestRestore(context.Background(), m, opts)
	if err != nil || !res.OK || res.Sources[0].LiveChanges != nil || !strings.Contains(strings.Join(res.Sources[0].Checks, ", "), "same as the live account") {
		t.Fatalf("test-restore --diff, unchanged: %v %+v", err, res)
	}
	f.srv.DeleteWorkerScript("cron")
	res, err = f.eng.TestRestore(context.Background(), m, opts)
	if err != nil || !res.OK {
		t.Fatalf("test-restore --diff: %v %+v", err, res)
	}
	changes, _ := res.Sources[0].LiveChanges.([]config.Change)
	if len(changes) == 0 || !strings.Contains(strings.Join(res.Sources[0].Checks, ", "), "difference(s) from the live account (listed; not a failure)") {
		t.Fatalf("test-restore --diff, changed: %+v", res.Sources[0])
	}
	// The comparison failing is an error (nothing proven about the account), not damage.
	opts.Env = testEnv{err: errors.New("account unreachable")}
	res, err = f.eng.TestRestore(context.Background(), m, opts)
	if err == nil || res.OK || res.Sources[0].ProblemKinds[0] != engine.FailureError {
		t.Fatalf("failing diff: %v %+v", err, res)
	}
}

// TestTestRestoreUnsupportedIsRecordedAsSuch: a component this build cannot test is recorded as
// "unsupported", never as damaged data.
func TestTestRestoreUnsupportedIsRecordedAsSuch(t *testing.T) {
	f := newFixture(t)
	st := f.capture(t)
	plan := &engine.BackupPlan{Components: []string{"future"}}
	plan.AddCapture(engine.Capture{Component: "future", Name: st.AccountID, Run: func(ctx context.Context, s *engine.Session) error {
		src, items, err := config.Backup(ctx, s.Writer, st)
		if err != nil {
			return err
		}
		src.Component = "future"
		for i := range items {
			items[i].Component = "future"
		}
		s.Add(src, items...)
		return nil
	}})
	m, err := f.eng.Backup(context.Background(), plan, engine.BackupOptions{Components: plan.Components})
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.eng.TestRestore(context.Background(), m, engine.TestRestoreOptions{Identities: f.ids, Record: true})
	if err == nil || res.OK || res.Sources[0].ProblemKinds[0] != engine.FailureUnsupported {
		t.Fatalf("test-restore: %v %+v", err, res)
	}
	recs := f.verifyRecords(t)
	if len(recs) != 1 || recs[0].FailureKind != engine.FailureUnsupported || strings.Contains(strings.Join(recs[0].Problems, ";"), "SHA-256") {
		t.Fatalf("verify record: %+v", recs)
	}
}
