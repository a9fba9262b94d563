package d1

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source"
	"github.com/cfbackup/cfbackup/pkg/source/d1/sqldump"
)

// testEnv is the host a component sees in these tests: the emulated account, notes in a buffer.
type testEnv struct {
	api   *cloudflare.Client
	notes bytes.Buffer
}

func (e *testEnv) Cloudflare() (*cloudflare.Client, error) { return e.api, nil }
func (e *testEnv) Setting(string) string                   { return "" }
func (e *testEnv) Log() *slog.Logger                       { return slog.New(slog.DiscardHandler) }
func (e *testEnv) Stderr() io.Writer                       { return &e.notes }
func (e *testEnv) Interactive() bool                       { return false }

// bound makes a D1 component with the restore flags of args.
func bound(t *testing.T, args ...string) *component {
	t.Helper()
	c, err := source.New(Component)
	if err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet("restore", pflag.ContinueOnError)
	c.Flags(source.VerbRestore, fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return c.(*component)
}

// snapshotOf backs db up into memory and returns what the engine would hand PlanRestore.
func snapshotOf(t *testing.T, e *emu, db cloudflare.Database) source.RestoreRequest {
	t.Helper()
	m := &memItems{}
	src, items, err := Backup(context.Background(), e.api, m, db, BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	snap := &manifest.Manifest{ID: "0123456789abcdef", Time: time.Now(), Components: []string{Component}, Sources: []manifest.Source{src}}
	return source.RestoreRequest{Snapshot: snap, Catalogue: &manifest.Catalogue{Items: items}, Open: m.open}
}

func TestComponentRestoresToAFile(t *testing.T) {
	e := startEmu(t)
	db := e.addSQL(t, "shop", `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1,'a'),(2,'b');`)
	req := snapshotOf(t, e, db)
	env := &testEnv{api: e.api}
	ctx := context.Background()

	if _, err := bound(t, "--to-file", "x", "--to-database", "y").PlanRestore(ctx, env, req); !errors.Is(err, errclass.Usage) || !strings.Contains(err.Error(), "exactly one target") {
		t.Fatalf("two targets: %v", err)
	}
	if _, err := bound(t, "--d1-database", "ghost", "--to-file", "x").PlanRestore(ctx, env, req); !errors.Is(err, errclass.NotFound) {
		t.Fatalf("unknown database: %v", err)
	}
	path := filepath.Join(t.TempDir(), "out.sqlite")
	plan, err := bound(t, "--to-file", path).PlanRestore(ctx, env, req)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Confirm() != nil || plan.Safety() != nil {
		t.Fatal("a restore to a file asks for confirmation or a safety snapshot")
	}
	var text bytes.Buffer
	plan.Text(&text)
	if js := plan.JSON().(RestorePlanJSON); js.Target != "file:"+path || !strings.Contains(text.String(), "Would restore D1 database shop") {
		t.Fatalf("plan %+v\n%s", js, text.String())
	}
	res, err := plan.Execute(ctx, source.Execution{Progress: source.NoProgress{}})
	if err != nil {
		t.Fatal(err)
	}
	if sum := res.JSON.(FileSummary); sum.Tables["t"] != 2 || sum.MessageType != "summary" {
		t.Fatalf("summary %+v", sum)
	}
}

func TestComponentRestoresInPlaceWithAnUndo(t *testing.T) {
	e := startEmu(t)
	db := e.addSQL(t, "shop", `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1,'a'),(2,'b');`)
	req := snapshotOf(t, e, db)
	env := &testEnv{api: e.api}
	ctx := context.Background()
	plan, err := bound(t, "--in-place").PlanRestore(ctx, env, req)
	if err != nil {
		t.Fatal(err)
	}
	if c := plan.Confirm(); c == nil || c.Name != "shop" {
		t.Fatalf("confirmation %+v", c)
	}
	if sf := plan.Safety(); sf == nil || sf.Target != "shop" || len(sf.Captures) != 1 {
		t.Fatalf("safety %+v", sf)
	}
	// Without a safety snapshot the component itself names the Time Travel way back.
	res, err := plan.Execute(ctx, source.Execution{Progress: source.NoProgress{}})
	if err != nil {
		t.Fatal(err)
	}
	sum := res.JSON.(DatabaseSummary)
	if !strings.HasPrefix(sum.Undo, "wrangler d1 time-travel restore shop --bookmark=") || !strings.Contains(res.Text, "To undo: "+sum.Undo) {
		t.Fatalf("undo %q\n%s", sum.Undo, res.Text)
	}
	if notes := env.notes.String(); !strings.Contains(notes, "Before restoring, shop was at Time Travel bookmark") || !strings.Contains(notes, "To undo this restore: wrangler") {
		t.Fatalf("notes: %s", notes)
	}
	undo := plan.Safety().Undo("fedcba9876543210")
	if !strings.Contains(undo, "wrangler d1 time-travel restore shop") || !strings.Contains(undo, "cfbackup restore fedcba9876543210 --d1-database shop --in-place --yes") {
		t.Fatalf("undo with a safety snapshot: %s", undo)
	}
}

func TestComponentRewindsWithTimeTravel(t *testing.T) {
	e := startEmu(t)
	e.addSQL(t, "shop", `CREATE TABLE t(id INTEGER PRIMARY KEY); INSERT INTO t VALUES (1);`)
	env := &testEnv{api: e.api}
	ctx := context.Background()
	c := bound(t, "--time-travel", "--in-place", "--d1-database", "shop")
	if !c.Rewinds() {
		t.Fatal("--time-travel does not rewind")
	}
	if _, err := c.PlanRestore(ctx, env, source.RestoreRequest{}); !errors.Is(err, errclass.Usage) || !strings.Contains(err.Error(), "needs --at") {
		t.Fatalf("without --at: %v", err)
	}
	if _, err := bound(t, "--time-travel", "--to-file", "x").PlanRestore(ctx, env, source.RestoreRequest{At: &time.Time{}}); !strings.Contains(fmt.Sprint(err), "use it with --in-place") {
		t.Fatalf("to a file: %v", err)
	}
	old := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := c.PlanRestore(ctx, env, source.RestoreRequest{At: &old}); !errors.Is(err, cloudflare.ErrOutsideWindow) || !strings.Contains(err.Error(), "drop --time-travel") {
		t.Fatalf("outside the window: %v", err)
	}
	time.Sleep(1100 * time.Millisecond) // the API takes whole seconds: let the database be a second old
	now := time.Now()
	plan, err := c.PlanRestore(ctx, env, source.RestoreRequest{At: &now})
	if err != nil {
		t.Fatal(err)
	}
	sf := plan.Safety()
	if js := plan.JSON().(RewindPlanJSON); js.Method != "time-travel" || js.Bookmark == "" || sf.Restoring != "time-travel:"+js.Bookmark || plan.Confirm() == nil {
		t.Fatalf("plan %+v, safety %+v", js, sf)
	}
}

func TestFailureKinds(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("read: %w", archive.ErrIntegrity), source.FailureIntegrity},
		{fmt.Errorf("%w: table t has 1 rows", ErrMismatch), source.FailureRestore},
		{fmt.Errorf("check: %w", sqldump.ErrCheckFailed), source.FailureRestore},
		{fmt.Errorf("load: %w", sqldump.ErrNotAllowed), source.FailureIntegrity},
		{errors.New("disk full"), source.FailureError},
	} {
		if got := failureKind(tc.err, source.FailureError); got != tc.want {
			t.Errorf("%v: %s, want %s", tc.err, got, tc.want)
		}
	}
}

func TestCompare(t *testing.T) {
	for _, tc := range []struct {
		got, op, want string
		ok            bool
	}{
		{"25", ">=", "25", true}, {"25", ">", "1000", false}, {"10", ">", "9", true},
		{"ok", "=", "ok", true}, {"b", "<", "a", false}, {"0", "!=", "0", false},
	} {
		if compare(tc.got, tc.op, tc.want) != tc.ok {
			t.Errorf("%s %s %s: want %v", tc.got, tc.op, tc.want, tc.ok)
		}
	}
	if _, _, err := parseExpect("about 5"); !errors.Is(err, errclass.Usage) {
		t.Fatalf("bad expectation: %v", err)
	}
}

func TestCheckFlagsBeforeAnythingIsRead(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--to-file", "x", "--to-dir", "d"}, "--to-dir is for"},
		{[]string{"--create", "--to-file", "x"}, "--create goes with --to-database"},
		{[]string{"--to-file", "x", "--in-place"}, "exactly one target"},
		{[]string{"--time-travel", "--in-place", "--d1-database", "app"}, "needs --at"},
		{[]string{"--time-travel", "--at", "1h ago", "--in-place"}, "needs --d1-database"},
		{[]string{"--to-file", "x"}, ""},
		{[]string{"--time-travel", "--at", "1h ago", "--in-place", "--d1-database", "app"}, ""},
	} {
		fs := pflag.NewFlagSet("restore", pflag.ContinueOnError)
		fs.String("at", "", "")
		fs.String("to-dir", "", "")
		c := &component{}
		c.Flags(source.VerbRestore, fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		err := c.CheckFlags(source.VerbRestore, fs)
		if tc.want == "" && err != nil || tc.want != "" && (!errors.Is(err, errclass.Usage) || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}
