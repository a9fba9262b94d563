package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/cfbackup/cfbackup/internal/cli"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/store/local"
)

// TestVersionCommand: `version` prints this build's identity as text and as one VersionMessage, needs
// no configuration (a broken cfbackup.yaml does not stop it) and refuses arguments (exit 2).
func TestVersionCommand(t *testing.T) {
	dir := t.TempDir()
	broken := filepath.Join(dir, "cfbackup.yaml")
	if err := os.WriteFile(broken, []byte("repository: [unclosed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(k string) string {
		if k == "CFBACKUP_CONFIG" {
			return broken
		}
		return ""
	}
	run := func(args ...string) (string, string, int) {
		var out, errOut bytes.Buffer
		code := cli.Run(context.Background(), args, cli.IO{In: strings.NewReader(""), Out: &out, Err: &errOut}, env)
		return out.String(), errOut.String(), code
	}
	if _, errOut, code := run("list"); code == 0 {
		t.Fatalf("the broken configuration was accepted by list: %s", errOut)
	}
	out, errOut, code := run("version")
	if code != 0 || !strings.HasPrefix(out, "cfbackup "+cli.Version+"\n") || !strings.Contains(out, runtime.GOOS+"/"+runtime.GOARCH) ||
		!strings.Contains(out, runtime.Version()) {
		t.Fatalf("version: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = run("version", "--json")
	var m cli.VersionMessage
	if code != 0 || json.Unmarshal([]byte(out), &m) != nil {
		t.Fatalf("version --json: exit %d\n%s%s", code, out, errOut)
	}
	if m.MessageType != "version" || m.Version != cli.Version || m.Platform != runtime.GOOS+"/"+runtime.GOARCH || m.GoVersion != runtime.Version() {
		t.Fatalf("version --json: %+v", m)
	}
	if _, errOut, code := run("version", "extra"); code != 2 || !strings.Contains(errOut, "see 'cfbackup version --help'") {
		t.Fatalf("version extra: exit %d, %s", code, errOut)
	}
}

// TestStampedVersionInManifests builds cfbackup the way the Makefile and goreleaser do (version,
// commit and date stamped into internal/buildinfo), checks `version --json` and `--version` report
// them, and that a backup taken with that binary records "cfbackup <version>" as its tool.
func TestStampedVersionInManifests(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cfbackup")
	}
	h := newHookEnv(t)
	bin := filepath.Join(h.dir, "cfbackup")
	const pkg = "github.com/cfbackup/cfbackup/internal/buildinfo"
	ldflags := "-X " + pkg + ".version=v7.7.7-test -X " + pkg + ".commit=0123abc -X " + pkg + ".date=2026-12-03T00:00:00Z"
	build := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", bin, "../../cmd/cfbackup")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	run := func(args ...string) string {
		t.Helper()
		c := exec.Command(bin, args...)
		c.Env = []string{"PATH=" + os.Getenv("PATH")}
		for k, v := range h.env {
			c.Env = append(c.Env, k+"="+v)
		}
		out, err := c.Output()
		if err != nil {
			t.Fatalf("cfbackup %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	var m cli.VersionMessage
	if err := json.Unmarshal([]byte(run("version", "--json")), &m); err != nil {
		t.Fatal(err)
	}
	if m.Version != "v7.7.7-test" || m.Commit != "0123abc" || m.Date != "2026-12-03T00:00:00Z" {
		t.Fatalf("stamped build reports %+v", m)
	}
	if out := run("--version"); !strings.Contains(out, "v7.7.7-test") {
		t.Fatalf("--version: %s", out)
	}
	run("backup")

	st, err := local.New(h.env["CFBACKUP_REPOSITORY"])
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r, err := repo.Open(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	snaps, _, err := r.ListSnapshots(ctx)
	if err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots %d, %v", len(snaps), err)
	}
	if snaps[0].Tool != "cfbackup v7.7.7-test" {
		t.Fatalf("manifest tool %q, want \"cfbackup v7.7.7-test\"", snaps[0].Tool)
	}
}
