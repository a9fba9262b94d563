package cli_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRestoreAtTheTimeListPrints: the on-call engineer copies a snapshot's time from 'list' into
// 'restore --at'; that time (whole seconds, RFC 3339 when piped, local time on a terminal) must select
// that snapshot, although the snapshot was taken a fraction of a second after it.
func TestRestoreAtTheTimeListPrints(t *testing.T) {
	h := newHookEnv(t)
	h.env["CFBACKUP_IDENTITY_FILE"] = filepath.Join(h.dir, "key.txt")
	if _, errOut, code := h.run(t, "backup", "--component", "d1"); code != 0 {
		t.Fatalf("backup: %s", errOut)
	}
	out, _, code := h.run(t, "list", "--json")
	var list []struct {
		ID   string    `json:"id"`
		Time time.Time `json:"time"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 {
		t.Fatalf("list --json: %d %s", code, out)
	}
	if list[0].Time.Nanosecond() == 0 {
		t.Skip("the snapshot was taken on a whole second; nothing to prove")
	}
	piped, _, _ := h.run(t, "list")
	fields := strings.Split(strings.TrimSpace(piped), "\t")
	if len(fields) < 2 || fields[0] != list[0].ID {
		t.Fatalf("list: %q", piped)
	}
	for i, at := range []string{fields[1], list[0].Time.Local().Format("2006-01-02 15:04:05")} {
		file := filepath.Join(h.dir, "at"+string(rune('0'+i))+".sqlite")
		_, errOut, code := h.run(t, "restore", "--at", at, "--d1-database", "app", "--to-file", file)
		if code != 0 || !strings.Contains(errOut, "from snapshot "+list[0].ID) {
			t.Errorf("restore --at %q: exit %d, %s", at, code, errOut)
		}
	}
	// A second earlier is before the oldest snapshot.
	before := list[0].Time.Truncate(time.Second).Add(-time.Second).UTC().Format(time.RFC3339)
	if _, errOut, code := h.run(t, "restore", "--at", before, "--d1-database", "app", "--to-file", filepath.Join(h.dir, "x.sqlite")); code == 0 || !strings.Contains(errOut, "before the oldest") {
		t.Errorf("restore --at %s: exit %d, %s", before, code, errOut)
	}
}
