package main_test

// End-to-end tests that run the real cfbackup and cfemu binaries as processes, so that what only a
// process has — signals, exit statuses, a killed writer's leftovers — is tested the way an operator
// meets it. The in-process testscript stories (internal/cli) cover the rest of the CLI.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binDir holds the binaries TestMain builds once for every test.
var binDir string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run()) // every test skips itself; don't spend time building
	}
	dir, err := os.MkdirTemp("", "cfbackup-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := func() int {
		defer os.RemoveAll(dir)
		for _, pkg := range []string{"cfbackup", "cfemu"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(dir, pkg), "./cmd/"+pkg)
			cmd.Dir = filepath.Join("..", "..")
			if out, err := cmd.CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// emu is a running cfemu process and the environment that points cfbackup at it.
type emu struct {
	env []string // CFBACKUP_CLOUDFLARE_API_URL, CLOUDFLARE_ACCOUNT_ID, CLOUDFLARE_API_TOKEN
}

// startEmu runs cfemu with a seeded "app" database of the given size and stops it at cleanup.
func startEmu(t *testing.T, users int) *emu {
	t.Helper()
	dir := t.TempDir()
	envFile := filepath.Join(dir, "emu.env")
	cmd := exec.Command(filepath.Join(binDir, "cfemu"), "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"),
		"--seed", "app", "--seed-users", fmt.Sprint(users), "--env-file", envFile)
	cmd.Env = append(os.Environ(), "CFEMU_TOKEN=e2e-token")
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(2 * time.Minute)
	for {
		b, err := os.ReadFile(envFile)
		if err == nil && len(b) > 0 {
			e := &emu{}
			for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				e.env = append(e.env, strings.TrimPrefix(l, "export "))
			}
			return e
		}
		select {
		case <-exited:
			t.Fatalf("cfemu exited before it was ready:\n%s", log.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("cfemu not ready after 2 minutes:\n%s", log.String())
		}
	}
}

// env is a cfbackup process environment: nothing from the test's own environment but PATH, so a
// developer's CFBACKUP_* or identity settings can't leak in.
type env struct {
	t    *testing.T
	dir  string
	vars []string
}

func newEnv(t *testing.T, e *emu, extra ...string) *env {
	dir := t.TempDir()
	vars := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "XDG_CONFIG_HOME=" + filepath.Join(dir, ".config")}
	vars = append(vars, e.env...)
	vars = append(vars, "CFBACKUP_REPOSITORY="+filepath.Join(dir, "repo"), "CFBACKUP_WRITER_KEY_FILE="+filepath.Join(dir, "writer.key"))
	vars = append(vars, extra...)
	return &env{t: t, dir: dir, vars: vars}
}

func (e *env) repo() string { return filepath.Join(e.dir, "repo") }

// command prepares a cfbackup process; extra are VAR=value overrides.
func (e *env) command(ctx context.Context, args []string, extra ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "cfbackup"), args...)
	cmd.Env = append(append([]string{}, e.vars...), extra...)
	cmd.Dir = e.dir
	return cmd
}

// run runs cfbackup to completion and returns stdout, stderr and the exit code.
func (e *env) run(args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	return e.runEnv(nil, args...)
}

func (e *env) runEnv(extra []string, args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := e.command(ctx, args, extra...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		e.t.Fatalf("cfbackup %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// must runs cfbackup and fails the test unless it exits 0.
func (e *env) must(args ...string) string {
	e.t.Helper()
	out, errs, code := e.run(args...)
	if code != 0 {
		e.t.Fatalf("cfbackup %v: exit %d\nstdout: %s\nstderr: %s", args, code, out, errs)
	}
	return out
}

// setup generates an identity and initialises the repository; it returns the identity file.
func (e *env) setup(initArgs ...string) string {
	e.t.Helper()
	key := filepath.Join(e.dir, "key.txt")
	rcp := strings.TrimSpace(e.must("key", "generate", "-o", key))
	e.must(append([]string{"init", "--recipient", rcp}, initArgs...)...)
	return key
}

type listEntry struct {
	ID       string `json:"id"`
	Segments int    `json:"segments"`
}

func (e *env) list() []listEntry {
	e.t.Helper()
	var l []listEntry
	if err := json.Unmarshal([]byte(e.must("list", "--json")), &l); err != nil {
		e.t.Fatalf("list --json: %v", err)
	}
	return l
}

// tmpFiles lists ".tmp-*" files anywhere in the repository: the local store's in-flight objects.
func tmpFiles(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".tmp-") {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func segmentCount(t *testing.T, root string) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(root, "segments"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range ents {
		if strings.HasSuffix(d.Name(), ".age") && !strings.HasPrefix(d.Name(), ".tmp-") {
			n++
		}
	}
	return n
}

// syncBuffer is a bytes.Buffer safe to read while a process writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// interruptedBackup starts a backup, waits until it is streaming segments (the export is ready and
// at least one new segment is stored), sends sig and returns the process's state.
func interruptedBackup(t *testing.T, e *env, sig os.Signal) (*os.ProcessState, string) {
	t.Helper()
	before := segmentCount(t, e.repo())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stderr syncBuffer
	// --d1-full: an incremental D1 backup after an unchanged one stores no chunk at all and would
	// end before it could be interrupted while it streams.
	cmd := e.command(ctx, []string{"backup", "--no-progress", "--d1-full", "--label", "run=interrupted"})
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	streaming := func() bool {
		return strings.Contains(stderr.String(), "export ready") && segmentCount(t, e.repo()) > before
	}
	for !streaming() {
		select {
		case <-exited:
			t.Fatalf("backup finished before it could be interrupted (make the seeded database bigger):\n%s", stderr.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	<-exited
	return cmd.ProcessState, stderr.String()
}

// TestInterruptedBackups: a backup stopped by Ctrl-C or by SIGKILL while it streams leaves no
// snapshot and no damage (invariant 1); earlier snapshots still verify and the next backup works.
func TestInterruptedBackups(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and seeds a large database")
	}
	em := startEmu(t, 50000)
	// 1 MiB segments: a backup writes many, so "streaming" is observable long before it ends.
	e := newEnv(t, em, "CFBACKUP_SEGMENT_SIZE=1048576")
	key := e.setup()

	// (a) a good backup
	e.must("backup", "--no-progress", "--label", "run=good")
	l := e.list()
	if len(l) != 1 {
		t.Fatalf("after one backup: %d snapshots", len(l))
	}
	good := l[0].ID
	goodSegments := segmentCount(t, e.repo())
	if goodSegments < 5 {
		t.Fatalf("first backup wrote %d segments; the test needs a database large enough for several", goodSegments)
	}

	verifyGood := func(t *testing.T) {
		out, errs, code := e.runEnv([]string{"CFBACKUP_IDENTITY_FILE=" + key}, "verify", good, "--read-data", "--no-progress")
		if code != 0 || !strings.Contains(out, "OK (read-data)") {
			t.Fatalf("verify %s --read-data: exit %d\n%s%s", good, code, out, errs)
		}
	}

	t.Run("SIGINT", func(t *testing.T) {
		st, stderr := interruptedBackup(t, e, os.Interrupt)
		if st.ExitCode() != 130 {
			t.Fatalf("exit code %d after SIGINT, want 130; stderr:\n%s", st.ExitCode(), stderr)
		}
		if !strings.Contains(stderr, "no snapshot was written") {
			t.Errorf("stderr does not say no snapshot was written:\n%s", stderr)
		}
		if l := e.list(); len(l) != 1 || l[0].ID != good {
			t.Fatalf("after SIGINT: snapshots %+v, want only %s", l, good)
		}
		verifyGood(t)
		if tf := tmpFiles(t, e.repo()); len(tf) != 0 {
			t.Errorf("temp files left after SIGINT: %v", tf)
		}
		// The interrupted run stored at least one segment; on SIGINT it deletes what it stored.
		if n := segmentCount(t, e.repo()); n != goodSegments {
			t.Errorf("%d segments after SIGINT, want the good snapshot's %d (the run's own should be deleted)", n, goodSegments)
		}
	})

	t.Run("SIGKILL", func(t *testing.T) {
		before := segmentCount(t, e.repo())
		st, stderr := interruptedBackup(t, e, syscall.SIGKILL)
		ws, ok := st.Sys().(syscall.WaitStatus)
		if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("process state %v, want killed by SIGKILL; stderr:\n%s", st, stderr)
		}
		if l := e.list(); len(l) != 1 || l[0].ID != good {
			t.Fatalf("after SIGKILL: snapshots %+v, want only %s", l, good)
		}
		verifyGood(t)
		orphans := segmentCount(t, e.repo()) - before
		tmps := tmpFiles(t, e.repo())
		t.Logf("SIGKILL left %d orphan segment(s) and %d temp file(s) (prune's job)", orphans, len(tmps))
		if orphans < 1 {
			t.Errorf("killed after a segment was stored, but no orphan segment is left: did the test kill too early?")
		}

		// The next backup completes normally beside the leftovers.
		e.must("backup", "--no-progress", "--label", "run=after-kill")
		l := e.list()
		if len(l) != 2 {
			t.Fatalf("after the next backup: %d snapshots, want 2", len(l))
		}
		out, errs, code := e.runEnv([]string{"CFBACKUP_IDENTITY_FILE=" + key}, "verify", "latest", "--read-data", "--no-progress")
		if code != 0 || !strings.Contains(out, "OK (read-data)") {
			t.Fatalf("verify latest after the kill: exit %d\n%s%s", code, out, errs)
		}
		if l[0].ID == good {
			t.Fatalf("latest snapshot is still the first one")
		}
	})
}

// TestExitCodes: each documented failure class exits with its documented status (docs/EXIT_CODES.md).
func TestExitCodes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries")
	}
	em := startEmu(t, 50)
	e := newEnv(t, em)
	key := e.setup()
	e.must("backup", "--no-progress")
	existing := filepath.Join(e.dir, "existing.sqlite")
	if err := os.WriteFile(existing, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	withKey := "--identity-file=" + key

	cases := []struct {
		name  string
		extra []string
		args  []string
		code  int
		msg   string
	}{
		{"bad flag", nil, []string{"list", "--no-such-flag"}, 2, "unknown flag"},
		{"bad config value", []string{"CFBACKUP_LOG_LEVEL=loud"}, []string{"list"}, 2, "log_level"},
		{"no repository", nil, []string{"list", "--repo", filepath.Join(e.dir, "nothing-here")}, 3, "cfbackup init"},
		{"identity missing on restore", nil, []string{"restore", "latest", "--to-file", filepath.Join(e.dir, "a.sqlite")}, 4, "needs an identity"},
		{"bad token", []string{"CLOUDFLARE_API_TOKEN=wrong"}, []string{"backup", "--no-progress"}, 5, "token rejected"},
		{"unknown snapshot", nil, []string{"restore", "0123456789abcdef", withKey, "--to-file", filepath.Join(e.dir, "b.sqlite")}, 7, "not found"},
		{"restore to existing file", nil, []string{"restore", "latest", withKey, "--to-file", existing}, 8, "exists"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, errs, code := e.runEnv(c.extra, c.args...)
			if code != c.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, c.code, out, errs)
			}
			if !strings.Contains(errs, c.msg) {
				t.Errorf("stderr lacks %q:\n%s", c.msg, errs)
			}
		})
	}
	if b, err := os.ReadFile(existing); err != nil || string(b) != "keep me" {
		t.Errorf("refused restore changed the existing file: %q, %v", b, err)
	}

	t.Run("--json error document", func(t *testing.T) {
		out, _, code := e.run("restore", "0123456789abcdef", withKey, "--to-file", filepath.Join(e.dir, "c.sqlite"), "--json")
		var doc struct {
			MessageType string `json:"message_type"`
			Error       string `json:"error"`
			ExitCode    int    `json:"exit_code"`
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("stdout is not one JSON document: %v\n%s", err, out)
		}
		if code != 7 || doc.MessageType != "error" || doc.ExitCode != 7 || doc.Error == "" {
			t.Fatalf("exit %d, document %+v", code, doc)
		}
	})

	// Last, because it damages the repository: a flipped byte in a segment.
	t.Run("corrupted segment on verify", func(t *testing.T) {
		ents, err := os.ReadDir(filepath.Join(e.repo(), "segments"))
		if err != nil || len(ents) == 0 {
			t.Fatalf("segments: %v, %d", err, len(ents))
		}
		p := filepath.Join(e.repo(), "segments", ents[0].Name())
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0x20
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		out, errs, code := e.run("verify", "latest", "--no-progress")
		if code != 6 {
			t.Fatalf("verify of a corrupted segment: exit %d, want 6\nstdout: %s\nstderr: %s", code, out, errs)
		}
		if !strings.Contains(out, "FAILED") {
			t.Errorf("verify output does not say FAILED:\n%s", out)
		}
		_, _, code = e.run("restore", "latest", withKey, "--to-file", filepath.Join(e.dir, "d.sqlite"), "--no-progress")
		if code != 6 {
			t.Errorf("restore from a corrupted segment: exit %d, want 6", code)
		}
	})
}
