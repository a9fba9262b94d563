package record_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/cfbackup/cfbackup/pkg/record"
)

// Records exactly as earlier versions wrote them (json.MarshalIndent of the engine's structs before
// they moved here). Reading and writing them again must give the same bytes: the on-disk format did
// not change when the types moved.
var stored = map[string]struct {
	raw string
	v   any
}{
	"hold add": {`{
  "id": "9d1e2f3a4b5c6d7e",
  "snapshot": "3f2a9c1e00000000",
  "reason": "litigation hold",
  "case": "LEGAL-42",
  "until": "2027-01-31T00:00:00Z",
  "actor": "legal@host",
  "time": "2026-12-01T10:00:00Z",
  "action": "add"
}`, &record.Hold{}},
	"hold release": {`{
  "id": "9d1e2f3a4b5c6d7e",
  "snapshot": "3f2a9c1e00000000",
  "reason": "case closed",
  "actor": "legal@host",
  "time": "2026-12-02T10:00:00Z",
  "action": "release"
}`, &record.Hold{}},
	"prune": {`{
  "time": "2026-12-03T01:00:00Z",
  "run_id": "a1b2c3d4e5f60718",
  "actor": "cron@host",
  "policy": {
    "keep_daily": "7"
  },
  "dry_run": false,
  "grace": "24h",
  "kept": [
    {
      "snapshot": "3f2a9c1e00000000",
      "time": "2026-12-02T00:00:00Z",
      "reasons": [
        "daily",
        "hold"
      ]
    }
  ],
  "removed": [
    {
      "snapshot": "0000000000000001",
      "time": "2026-11-01T00:00:00Z",
      "components": [
        "d1"
      ],
      "stored_size": 4096
    }
  ],
  "segments_deleted": 2,
  "objects_deleted": 1,
  "bytes_freed": 8192,
  "marked": 3,
  "pending_bytes": 100,
  "violations": [
    "d1/app: no snapshot younger than 26h"
  ],
  "errors": [],
  "temp_files_deleted": 1,
  "retention_extended": 4,
  "record_key": "prune/20261203T010000Z-a1b2c3d4e5f60718.json"
}`, &record.Prune{}},
	"verify": {`{
  "time": "2026-12-03T02:00:00.123456789Z",
  "ok": false,
  "snapshot": "3f2a9c1e00000000",
  "mode": "read-data",
  "segments_checked": 3,
  "segments_total": 4,
  "items_checked": 17,
  "bytes_read": 123456,
  "problems": [
    "segment segments/ab.age: size mismatch",
    "item and object problems: 2 integrity"
  ],
  "failure_kind": "integrity",
  "failures": {
    "integrity": 3
  },
  "duration_ms": 42,
  "authenticity": "authenticated"
}`, &record.Verify{}},
}

func TestStoredRecordsRoundTrip(t *testing.T) {
	for name, c := range stored {
		dec := json.NewDecoder(bytes.NewReader([]byte(c.raw)))
		dec.DisallowUnknownFields() // every stored field has a home in the type
		if err := dec.Decode(c.v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out, err := json.MarshalIndent(c.v, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != c.raw {
			t.Errorf("%s: written again differs:\n%s\nwant\n%s", name, out, c.raw)
		}
	}
}

// An old prune record (before run_id, grace and the object counts existed) still reads.
func TestOldPruneRecordReads(t *testing.T) {
	var p record.Prune
	raw := `{"time":"2026-03-05T00:00:00Z","actor":"cron@h","policy":{"keep-daily":7},"dry_run":false,
"kept":[{"snapshot":"s1","reasons":["last"]}],"removed":[{"snapshot":"old","time":"2026-01-30T00:00:00Z","components":["d1"]}],
"segments_deleted":2,"bytes_freed":4096,"errors":[]}`
	if err := json.Unmarshal([]byte(raw), &p); err != nil {
		t.Fatal(err)
	}
	if p.SegmentsDeleted != 2 || p.BytesFreed != 4096 || p.Removed[0].Time != "2026-01-30T00:00:00Z" || p.Policy.(map[string]any)["keep-daily"] != float64(7) {
		t.Fatalf("%+v", p)
	}
}

func TestVerifyProblemKinds(t *testing.T) {
	var v record.Verify
	v.AddProblem("integrity", "segment a: gone")
	v.AddProblem("error", "item b: timeout")
	if got := []string{v.ProblemKind(0, "x"), v.ProblemKind(1, "x"), v.ProblemKind(2, "x")}; got[0] != "integrity" || got[1] != "error" || got[2] != "x" {
		t.Fatalf("kinds %v", got)
	}
	if len(v.Problems) != 2 || v.Failures["integrity"] != 1 || v.Failures["error"] != 1 {
		t.Fatalf("%+v", v)
	}
	// A record read back from the store has no per-problem kinds: the default applies.
	var stored record.Verify
	b, _ := json.Marshal(&v)
	if bytes.Contains(b, []byte("kinds")) {
		t.Fatalf("per-problem kinds must not be stored: %s", b)
	}
	if err := json.Unmarshal(b, &stored); err != nil || stored.ProblemKind(0, "x") != "x" {
		t.Fatalf("read back: %v %q", err, stored.ProblemKind(0, "x"))
	}
}
