package main_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// emuVar is one of the emulator's environment values.
func (em *emu) emuVar(t *testing.T, name string) string {
	t.Helper()
	for _, v := range em.env {
		if val, ok := strings.CutPrefix(v, name+"="); ok {
			return val
		}
	}
	t.Fatalf("no %s in the emulator's environment", name)
	return ""
}

// d1Exec runs SQL on the emulated account's database uuid through the D1 query API.
func d1Exec(t *testing.T, em *emu, uuid, sql string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"sql": sql})
	u := em.emuVar(t, "CFBACKUP_CLOUDFLARE_API_URL") + "/accounts/" + em.emuVar(t, "CLOUDFLARE_ACCOUNT_ID") + "/d1/database/" + uuid + "/query"
	req, err := http.NewRequest(http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+em.emuVar(t, "CLOUDFLARE_API_TOKEN"))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("D1 query %q: %s", sql, resp.Status)
	}
}

type snapInfo struct {
	ID       string `json:"id"`
	Segments int    `json:"segments"`
	Sources  []struct {
		ID string `json:"id"`
	} `json:"sources"`
}

func (e *env) snapshots() []snapInfo {
	e.t.Helper()
	var l []snapInfo
	if err := json.Unmarshal([]byte(e.must("list", "--json")), &l); err != nil {
		e.t.Fatalf("list --json: %v", err)
	}
	return l
}

// killAt starts cfbackup with args and sends SIGKILL after d (or lets it finish first); it reports
// whether the kill landed while the process ran.
func killAt(t *testing.T, e *env, d time.Duration, args ...string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stderr syncBuffer
	cmd := e.command(ctx, args)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	select {
	case <-exited:
		if !cmd.ProcessState.Success() {
			t.Fatalf("cfbackup %v failed before the kill: %v\n%s", args, cmd.ProcessState, stderr.String())
		}
		return false
	case <-time.After(d):
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ws.Signaled()
}

func dirFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if os.IsNotExist(err) {
			return nil
		}
		if err == nil && !d.IsDir() {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestKillLoop: backups and prunes killed with SIGKILL at random points (CFBACKUP_FAULT_POINTS, default
// 5, every fifth a prune; seed CFBACKUP_FAULT_SEED) never damage or lose a snapshot: after every kill each snapshot listed
// before is still listed and the newest verifies with --read-data; at the end every snapshot verifies,
// and one prune with grace 0 leaves nothing over: no temporary file, no orphan segment, journal, lock or mark.
func TestKillLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and seeds a large database")
	}
	points := envInt(t, "CFBACKUP_FAULT_POINTS", 5)
	seed := uint64(envInt(t, "CFBACKUP_FAULT_SEED", 1))
	rng := rand.New(rand.NewPCG(seed, 42))
	em := startEmu(t, 20000)
	e := newEnv(t, em, "CFBACKUP_SEGMENT_SIZE=1048576")
	key := e.setup()
	start := time.Now()
	e.must("backup", "--no-progress")
	full := time.Since(start) // the span kill points are drawn from
	withKey := []string{"CFBACKUP_IDENTITY_FILE=" + key}

	known := map[string]bool{}
	for _, s := range e.snapshots() {
		known[s.ID] = true
	}
	var killed, finished, prunes int
	tmpSeen := map[string]int64{} // every temp file a kill left, with its size
	orphanMax := 0
	for i := 0; i < points; i++ {
		args := []string{"backup", "--no-progress"}
		if i%5 == 4 {
			args = []string{"prune", "--keep-last", "1000", "--grace", "0"}
			prunes++
		}
		d := time.Duration(rng.Int64N(int64(full + full/4)))
		if killAt(t, e, d, args...) {
			killed++
		} else {
			finished++
		}
		snaps := e.snapshots()
		now := map[string]bool{}
		for _, s := range snaps {
			now[s.ID] = true
		}
		for id := range known {
			if !now[id] {
				t.Fatalf("kill point %d (%s at %v): snapshot %s lost", i, args[0], d, id)
			}
		}
		known = now
		out, errs, code := e.runEnv(withKey, "verify", "latest", "--read-data", "--no-progress")
		if code != 0 || !strings.Contains(out, "OK (read-data)") {
			t.Fatalf("kill point %d (%s at %v): verify latest: exit %d\n%s%s", i, args[0], d, code, out, errs)
		}
		for _, p := range tmpFiles(t, e.repo()) {
			if st, err := os.Stat(p); err == nil {
				tmpSeen[p] = st.Size()
			}
		}
		o := segmentCount(t, e.repo())
		for _, s := range snaps {
			o -= s.Segments
		}
		orphanMax = max(orphanMax, o)
	}
	var tmpBytes int64
	for _, n := range tmpSeen {
		tmpBytes += n
	}
	tmpLeft := len(tmpFiles(t, e.repo()))
	orphans := segmentCount(t, e.repo())
	for _, s := range e.snapshots() {
		orphans -= s.Segments
	}
	e.must("prune", "--keep-last", "1000", "--grace", "0")
	snaps := e.snapshots()
	for _, s := range snaps {
		if !known[s.ID] {
			t.Errorf("prune made snapshot %s appear", s.ID)
		}
		out, errs, code := e.runEnv(withKey, "verify", s.ID, "--read-data", "--no-progress")
		if code != 0 || !strings.Contains(out, "OK (read-data)") {
			t.Errorf("verify %s after the kill loop: exit %d\n%s%s", s.ID, code, out, errs)
		}
	}
	if len(snaps) != len(known) {
		t.Errorf("%d snapshots after the final prune, want %d", len(snaps), len(known))
	}
	segs := 0
	for _, s := range snaps {
		segs += s.Segments
	}
	if tf := tmpFiles(t, e.repo()); len(tf) != 0 {
		t.Errorf("temporary files left after prune --grace 0: %v", tf)
	}
	if n := segmentCount(t, e.repo()); n != segs {
		t.Errorf("%d segments left, the snapshots name %d", n, segs)
	}
	for _, d := range []string{"journal", "locks", "marks"} {
		if n := dirFiles(t, filepath.Join(e.repo(), d)); n != 0 {
			t.Errorf("%d object(s) left in %s/", n, d)
		}
	}
	t.Logf("kill loop (seed %d): %d points (%d of them prunes), %d killed mid-run, %d finished first; 0 snapshots lost, %d snapshots, all verify; kills left %d temp file(s) (%d bytes) and up to %d orphan segment(s); before the final prune %d temp file(s) and %d orphan segment(s), after it none",
		seed, points, prunes, killed, finished, len(snaps), len(tmpSeen), tmpBytes, orphanMax, tmpLeft, orphans)
}

var restoredFrom = regexp.MustCompile(`from snapshot ([0-9a-f]+)`)

// TestBitFlipLoop: one random bit flipped in a random stored object (CFBACKUP_FAULT_FLIPS flips,
// default 4; seed CFBACKUP_FAULT_SEED) never makes a restore — by id of either snapshot, or 'latest' —
// silently restore wrong data: it restores exactly the snapshot asked for, or exits non-zero.
func TestBitFlipLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries")
	}
	flips := envInt(t, "CFBACKUP_FAULT_FLIPS", 4)
	seed := uint64(envInt(t, "CFBACKUP_FAULT_SEED", 1))
	rng := rand.New(rand.NewPCG(seed, 7))
	em := startEmu(t, 6000)
	e := newEnv(t, em, "CFBACKUP_SEGMENT_SIZE=1048576")
	key := e.setup()
	e.must("backup", "--no-progress")
	uuid := e.snapshots()[0].Sources[0].ID
	// The two snapshots hold different data, so restoring the wrong one shows.
	d1Exec(t, em, uuid, "UPDATE users SET profile = 'changed after the first backup' WHERE rowid % 7 = 0")
	e.must("backup", "--no-progress")
	snaps := e.snapshots() // newest first
	if len(snaps) != 2 {
		t.Fatalf("%d snapshots", len(snaps))
	}
	latest, older := snaps[0].ID, snaps[1].ID

	pristine := filepath.Join(e.dir, "pristine")
	if err := os.CopyFS(pristine, os.DirFS(e.repo())); err != nil {
		t.Fatal(err)
	}
	restore := func(t *testing.T, which string) (sum, from string, code int, stderr string) {
		t.Helper()
		dst := filepath.Join(e.dir, fmt.Sprintf("r-%d.sqlite", rng.Uint64()))
		out, errs, code := e.runEnv([]string{"CFBACKUP_IDENTITY_FILE=" + key}, "restore", which, "--to-file", dst, "--no-progress")
		defer os.Remove(dst)
		if code != 0 {
			return "", "", code, errs
		}
		b, err := os.ReadFile(dst)
		if err != nil {
			t.Fatalf("restore %s exited 0 but wrote no file: %v", which, err)
		}
		s := sha256.Sum256(b)
		if m := restoredFrom.FindStringSubmatch(out + errs); m != nil {
			from = m[1]
		}
		return hex.EncodeToString(s[:]), from, 0, errs
	}
	want := map[string]string{}
	for _, id := range []string{latest, older} {
		sum, _, code, errs := restore(t, id)
		if code != 0 {
			t.Fatalf("restore %s from the intact repository: exit %d\n%s", id, code, errs)
		}
		want[id] = sum
	}
	if want[latest] == want[older] {
		t.Fatal("the two snapshots restore the same data; the test cannot tell them apart")
	}

	var objects []string
	if err := filepath.WalkDir(pristine, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(pristine, p)
			objects = append(objects, rel)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var exact, loud, silent, wrongLatest int
	var gaps []string
	for i := 0; i < flips; i++ {
		if err := os.RemoveAll(e.repo()); err != nil {
			t.Fatal(err)
		}
		if err := os.CopyFS(e.repo(), os.DirFS(pristine)); err != nil {
			t.Fatal(err)
		}
		obj := objects[rng.IntN(len(objects))]
		p := filepath.Join(e.repo(), obj)
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 {
			continue
		}
		bit := rng.IntN(len(b) * 8)
		b[bit/8] ^= 1 << (bit % 8)
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, which := range []string{older, latest, "latest"} {
			sum, from, code, errs := restore(t, which)
			expect := which
			if which == "latest" {
				expect = latest
			}
			switch {
			case code != 0:
				loud++
				if strings.TrimSpace(errs) == "" {
					t.Errorf("flip %d (%s bit %d): restore %s exit %d without a message", i, obj, bit, which, code)
				}
			case sum == want[expect]:
				exact++
			case which == "latest" && from != "" && from != latest && sum == want[from]:
				wrongLatest++
				gaps = append(gaps, fmt.Sprintf("%s bit %d: restore latest restored %s", obj, bit, from))
			default:
				silent++
				t.Errorf("flip %d (%s bit %d): restore %s exited 0 with wrong data (from snapshot %q)", i, obj, bit, which, from)
			}
		}
	}
	t.Logf("bit-flip loop (seed %d): %d flips over %d objects, %d restores: %d exact, %d failed loudly, %d silently wrong, %d 'latest' fell back to an older snapshot",
		seed, flips, len(objects), 3*flips, exact, loud, silent, wrongLatest)
	if wrongLatest > 0 {
		t.Errorf("'restore latest' silently restored an older snapshot when the newest was damaged (%d case(s): %s): an unreadable newer snapshot must never be replaced by an older one",
			wrongLatest, strings.Join(gaps, "; "))
	}
}
