package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// TestLockOfDeadLocalProcessIsStale: an unexpired lock held on this host by a process that has
// exited is stale (taken over by prune), one held by a running process blocks prune. This is the
// platform-specific liveness check (liveness_unix.go / liveness_windows.go).
func TestLockOfDeadLocalProcessIsStale(t *testing.T) {
	if runtime.GOOS != "linux" && runtime.GOOS != "darwin" {
		t.Skip("spawns sleep(1)")
	}
	ctx := context.Background()
	f := newPruneFixture(t, nil)
	host, _ := os.Hostname()
	put := func(id string, pid int) {
		t.Helper()
		li := engine.LockInfo{ID: id, Kind: engine.LockShared, Command: "backup", Host: host, PID: pid, Actor: "test",
			Time: f.clk.Now(), Expires: f.clk.Now().Add(engine.DefaultLockTTL)}
		b, _ := json.Marshal(li)
		if err := f.st.Put(ctx, "locks/"+id+".json", bytes.NewReader(b), store.PutOptions{IfNotExists: true}); err != nil {
			t.Fatal(err)
		}
	}

	live := exec.Command("sleep", "60")
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = live.Process.Kill(); _ = live.Wait() })
	put("1111111111111111", live.Process.Pid)
	if _, _, err := f.eng.Lock(ctx, engine.LockOptions{Kind: engine.LockExclusive, Command: "prune"}); !errors.Is(err, engine.ErrLocked) {
		t.Fatalf("lock of a running local process: %v, want locked", err)
	}

	_ = live.Process.Kill()
	_ = live.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for {
		l, _, err := f.eng.Lock(ctx, engine.LockOptions{Kind: engine.LockExclusive, Command: "prune"})
		if err == nil {
			_ = l.Release(ctx)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lock of an exited local process not taken over: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := f.st.Stat(ctx, "locks/1111111111111111.json"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("stale lock of an exited process not removed: %v", err)
	}
}
