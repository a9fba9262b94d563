package cli

import "github.com/cfbackup/cfbackup/pkg/engine"

const msgVerifyAll = "verify_all"

// VerifyAllMessage is what `verify --all --json` prints: the whole repository checked, each distinct
// segment once, and with --read-data-subset only one slice of them (docs/STATS.md, "verify --all").
type VerifyAllMessage struct {
	// MessageType is "verify_all".
	MessageType string `json:"message_type"`
	// OK is false when any snapshot failed a check (exit status 6).
	OK bool `json:"ok"`
	// Mode is "quick", "read-data" or "read-data-subset SLICE".
	Mode string `json:"mode"`
	// Slice is the part of the repository's segments read: "3/7" (also when asked as next/7), "10%",
	// or "" for all of them.
	Slice string `json:"slice"`
	// Snapshots counts the snapshots checked; Failed lists those with problems.
	Snapshots int      `json:"snapshots"`
	Failed    []string `json:"failed"`
	// SegmentsTotal counts the repository's distinct segments; SegmentsChecked those this run read.
	SegmentsTotal   int   `json:"segments_total"`
	SegmentsChecked int   `json:"segments_checked"`
	ItemsChecked    int   `json:"items_checked"`
	BytesRead       int64 `json:"bytes_read"`
	// Results are the snapshots' results, oldest first, as verify/ records them (reduced).
	Results []*engine.VerifyResult `json:"results"`
	RunError
}
