package cli

import "github.com/cfbackup/cfbackup/pkg/stats"

const msgStats = "stats"

// StatsMessage is what `stats --json` prints: the repository's storage figures (docs/STATS.md).
type StatsMessage struct {
	// MessageType is "stats".
	MessageType string `json:"message_type"`
	// Stats are the figures; the report's storage section is the same structure.
	*stats.Stats
	RunError
}
