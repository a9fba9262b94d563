package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/cfbackup/cfbackup/pkg/report"
)

// TestListTableMarksShardedSnapshots: on a terminal, a merged sharded snapshot is marked with its
// shard count after its components and its shard-* labels are left out; other snapshots unchanged.
func TestListTableMarksShardedSnapshots(t *testing.T) {
	at := time.Date(2026, 12, 4, 16, 0, 0, 0, time.UTC)
	entries := []ListEntry{
		{ID: "aaaaaaaaaaaaaaaa", Time: at, Components: []string{"r2"}, Labels: map[string]string{"shard-run": "n1", "shard-count": "3", "shard-partials": "x,y,z", "env": "prod"},
			Sharded: &report.ShardedRun{Run: "n1", Count: 3}},
		{ID: "bbbbbbbbbbbbbbbb", Time: at, Components: []string{"r2"}, Labels: map[string]string{"env": "prod"}},
	}
	var buf bytes.Buffer
	if err := writeListTable(&buf, entries); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(buf.String(), "\n")
	if !strings.Contains(lines[1], "r2 (3 shards)") || strings.Contains(lines[1], "shard-run") || !strings.Contains(lines[1], "env=prod") {
		t.Fatalf("sharded row: %q", lines[1])
	}
	if strings.Contains(lines[2], "shard") || !strings.Contains(lines[2], "env=prod") {
		t.Fatalf("unsharded row: %q", lines[2])
	}
}
