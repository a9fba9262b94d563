// Package workerd starts the example app of worker/ (cfbackup's Durable Object module) in the real
// Workers runtime — workerd through the npm package miniflare — for Go tests and benchmarks.
//
// Like tools.Require, a missing Node or npm install skips the test on a developer machine and fails
// it in CI (CI set), so a missing install step can never turn into a silently green run.
package workerd

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Worker is a running example app.
type Worker struct {
	// URL is the Worker's base URL (http://127.0.0.1:port).
	URL string
	// Persist is the directory holding Durable Object state: Persist/oidc-example-<Class>/<id>.sqlite.
	Persist string
	// Name is the script name (ScriptName unless Options.Name set another).
	Name string

	cmd    *exec.Cmd
	stdin  io.WriteCloser
	done   chan struct{}
	stderr *syncBuffer
}

// Options configure Start.
type Options struct {
	// Secret becomes the Worker's CFBACKUP_SECRET; empty starts a Worker without one.
	Secret string
	// Persist is the state directory (default: a new temporary directory).
	Persist string
	// Name is the Worker's script name (default ScriptName). The runtime derives object IDs from
	// it, so a Worker of another name stands for another account: the same names give other IDs.
	Name string
}

// ScriptName is the example Worker's name; the persisted state of class C is in <Persist>/<ScriptName>-<C>.
const ScriptName = "oidc-example"

var buildOnce sync.Once
var buildErr error

// Root returns the repository root (the directory holding go.mod), found from the working directory.
func Root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("repository root (go.mod) not found")
		}
		dir = parent
	}
}

// Require skips (locally) or fails (in CI) unless node and worker/node_modules are installed; it
// builds worker/dist once per test binary.
func Require(t testing.TB) string {
	t.Helper()
	root := Root(t)
	missing := ""
	if _, err := exec.LookPath("node"); err != nil {
		missing = "node"
	} else if nodeModules(root) == "" {
		missing = "worker/node_modules (npm ci in worker/)"
	}
	if missing != "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed, and CI is set: .ci/run must install it (scripts/install-tools.sh)", missing)
		}
		t.Skipf("%s not installed: run make tools", missing)
	}
	buildOnce.Do(func() {
		cmd := exec.Command("node", filepath.Join(nodeModules(root), "typescript", "bin", "tsc"), "-p", "tsconfig.json")
		cmd.Dir = filepath.Join(root, "worker")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build worker/: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return root
}

// nodeModules is where worker/'s packages are installed: worker/node_modules, or (as Node resolves
// imports up the tree) the repository root's node_modules; "" when neither holds miniflare.
func nodeModules(root string) string {
	for _, d := range []string{filepath.Join(root, "worker", "node_modules"), filepath.Join(root, "node_modules")} {
		if _, err := os.Stat(filepath.Join(d, "miniflare")); err == nil {
			return d
		}
	}
	return ""
}

// Start runs the example app until the test ends.
func Start(t testing.TB, o Options) *Worker {
	t.Helper()
	root := Require(t)
	if o.Persist == "" {
		o.Persist = t.TempDir()
	}
	w, err := start(root, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	return w
}

func start(root string, o Options) (*Worker, error) {
	if o.Name == "" {
		o.Name = ScriptName
	}
	cmd := exec.Command("node", filepath.Join(root, "worker", "test", "harness.mjs"), "--persist", o.Persist, "--name", o.Name)
	cmd.Dir = filepath.Join(root, "worker")
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CFBACKUP_SECRET=") {
			env = append(env, kv)
		}
	}
	if o.Secret != "" {
		env = append(env, "CFBACKUP_SECRET="+o.Secret)
	}
	cmd.Env = append(env, "CLOUDFLARE_CF_FETCH_ENABLED=false", "DO_NOT_TRACK=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	w := &Worker{Persist: o.Persist, Name: o.Name, cmd: cmd, stdin: stdin, done: make(chan struct{}), stderr: &syncBuffer{}}
	cmd.Stderr = w.stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = cmd.Wait(); close(w.done) }()
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case l, ok := <-lines:
		var ready struct{ URL string }
		if !ok || json.Unmarshal([]byte(l), &ready) != nil || ready.URL == "" {
			w.Stop()
			return nil, fmt.Errorf("worker harness did not start: %q\n%s", l, w.stderr.String())
		}
		w.URL = ready.URL
	case <-time.After(60 * time.Second):
		w.Stop()
		return nil, fmt.Errorf("worker harness did not start within 60 s\n%s", w.stderr.String())
	}
	return w, nil
}

// Stop shuts the runtime down (closing stdin makes the harness dispose miniflare); the state stays.
func (w *Worker) Stop() {
	if w.cmd == nil || w.cmd.Process == nil {
		return
	}
	_ = w.stdin.Close()
	select {
	case <-w.done:
	case <-time.After(15 * time.Second):
		_ = w.cmd.Process.Kill()
		<-w.done
	}
}

// Restart stops the runtime and starts it again on the same state directory (or a wiped one).
func (w *Worker) Restart(t testing.TB, secret string, wipe bool) {
	t.Helper()
	w.Stop()
	if wipe {
		if err := os.RemoveAll(w.Persist); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(w.Persist, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	nw, err := start(Root(t), Options{Secret: secret, Persist: w.Persist, Name: w.Name})
	if err != nil {
		t.Fatal(err)
	}
	*w = *nw
}

// ClassDir is where the state of one class's objects is kept.
func (w *Worker) ClassDir(class string) string {
	return filepath.Join(w.Persist, w.Name+"-"+class)
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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

// ProcStat is CPU time and peak resident memory of the runtime's processes (node and workerd), read
// from /proc, so a benchmark can tell the runtime's share of a run from the Go side's.
type ProcStat struct {
	// CPU is user+system time of node and every workerd it started.
	CPU time.Duration
	// WorkerdHWM is workerd's peak resident set (VmHWM), bytes; 0 where /proc is not available.
	WorkerdHWM int64
}

// Stat reads the runtime's ProcStat (zero on systems without /proc).
func (w *Worker) Stat() ProcStat {
	var s ProcStat
	if w.cmd == nil || w.cmd.Process == nil {
		return s
	}
	pids := []int{w.cmd.Process.Pid}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		if f := procFields(pid); len(f) > 2 && f[1] == strconv.Itoa(w.cmd.Process.Pid) {
			pids = append(pids, pid)
		}
	}
	for i, pid := range pids {
		f := procFields(pid)
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		s.CPU += time.Duration(ut+st) * (time.Second / 100) // USER_HZ is 100 on Linux
		if i > 0 {
			s.WorkerdHWM = max(s.WorkerdHWM, vmHWM(pid))
		}
	}
	return s
}

// procFields are the fields of /proc/pid/stat after the command name: state, ppid, …
func procFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			var kb int64
			_, _ = fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, "VmHWM:")), "%d", &kb)
			return kb << 10
		}
	}
	return 0
}
