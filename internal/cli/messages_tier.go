package cli

import "github.com/cfbackup/cfbackup/pkg/engine"

const msgPruneTier = "prune_tier"

// PruneTierMessage is what `prune --tier --json` prints: segments moved to a storage class
// (docs/STORAGE_CLASSES.md).
type PruneTierMessage struct {
	// MessageType is "prune_tier".
	MessageType string `json:"message_type"`
	// OK is false when some segments could not be moved (exit 1; the others were).
	OK bool `json:"ok"`
	// Result counts segments and bytes by class, moved, already there and shared with newer snapshots.
	Result *engine.TierResult `json:"result"`
	RunError
}
