package report

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/manifest"
)

// ShardedRun is what a merged sharded snapshot says about its run: the run id, the shard count and
// what each shard did (the manifest's `shards`, kept from the partials the merge deleted). Plaintext
// operational metadata, like the rest of the manifest's summary: list and report show it without an
// identity.
type ShardedRun struct {
	// Run is the run id every shard was given (--run); Count the number of shards (N).
	Run   string `json:"run"`
	Count int    `json:"count"`
	// Shards are the shards in index order.
	Shards []ShardRun `json:"shards"`
}

// ShardRun is one shard of a merged run.
type ShardRun struct {
	// Index is the shard's I (1 to Count); Partial the id of its partial manifest.
	Index   int    `json:"index"`
	Count   int    `json:"count"`
	Partial string `json:"partial"`
	// Host is where the shard ran (omitted when its partial did not record one).
	Host string `json:"host,omitempty"`
	// Started and Finished bound the shard's run; DurationSeconds is Finished - Started.
	Started         time.Time `json:"started"`
	Finished        time.Time `json:"finished"`
	DurationSeconds float64   `json:"duration_seconds"`
	// Items are the objects of the shard, Size their bytes before compression, StoredSize the bytes
	// the shard stored and Reused the objects it took from its parent without downloading them.
	Items      int64 `json:"items"`
	Size       int64 `json:"size"`
	StoredSize int64 `json:"stored_size"`
	Reused     int64 `json:"reused"`
}

// Sharded is the sharded run of a merged snapshot, or nil for any other snapshot.
func Sharded(m *manifest.Manifest) *ShardedRun {
	if len(m.Shards) == 0 {
		return nil
	}
	out := &ShardedRun{Run: m.Labels[engine.LabelShardRun], Shards: make([]ShardRun, 0, len(m.Shards))}
	out.Count, _ = strconv.Atoi(m.Labels[engine.LabelShardCount])
	for _, s := range m.Shards {
		var i, n int // zeros when the manifest's "I/N" is not one
		if sh, err := engine.ParseShard(s.Shard); err == nil {
			i, n = sh.I, sh.N
		}
		d := time.Duration(s.Duration)
		out.Shards = append(out.Shards, ShardRun{Index: i, Count: n, Partial: s.Partial, Host: s.Host, Started: s.Time.UTC(),
			Finished: s.Time.Add(d).UTC(), DurationSeconds: d.Seconds(), Items: s.Items, Size: s.Size, StoredSize: s.StoredSize, Reused: s.Reused})
		if out.Count == 0 {
			out.Count = n
		}
	}
	return out
}

// Marker is the compact note `list` prints beside a merged snapshot: "3 shards".
func (s *ShardedRun) Marker() string {
	if s == nil {
		return ""
	}
	if s.Count == 1 {
		return "1 shard"
	}
	return fmt.Sprintf("%d shards", s.Count)
}

// Line is one shard as the text outputs print it.
func (r ShardRun) Line() string {
	host := r.Host
	if host == "" {
		host = "-"
	}
	return fmt.Sprintf("shard %d/%d  %d object(s)  %d byte(s), %d stored  %d reused  %s to %s (%s)  host %s  partial %s",
		r.Index, r.Count, r.Items, r.Size, r.StoredSize, r.Reused, ts(r.Started), ts(r.Finished),
		time.Duration(r.DurationSeconds*float64(time.Second)).Round(time.Millisecond), host, r.Partial)
}

// shardedBackups are the report's merged sharded snapshots, oldest first.
func (r *Report) shardedBackups() []Backup {
	var out []Backup
	for _, b := range r.Backups {
		if b.Sharded != nil {
			out = append(out, b)
		}
	}
	return out
}

// writeShardsText writes the "Sharded runs" section of the text summary: one line per merged
// snapshot, then one per shard. Nothing when the period has none.
func (r *Report) writeShardsText(w io.Writer) {
	bs := r.shardedBackups()
	if len(bs) == 0 {
		return
	}
	fmt.Fprintln(w, "Sharded runs:")
	for _, b := range bs {
		fmt.Fprintf(w, "  %s %s  run %s, %s\n", b.Snapshot, ts(b.Time), b.Sharded.Run, b.Sharded.Marker())
		for _, s := range b.Sharded.Shards {
			fmt.Fprintf(w, "    %s\n", s.Line())
		}
	}
}

// shardsCSV writes one "shard" row per shard of each merged snapshot of the period.
func (r *Report) shardsCSV(row func(section, t, comp, snap, result, count, size, stored, items, dur, actor, detail string)) {
	for _, b := range r.shardedBackups() {
		for _, s := range b.Sharded.Shards {
			row("shard", ts(s.Started), strings.Join(b.Components, ";"), b.Snapshot, "ok", strconv.Itoa(s.Index), i64(s.Size), i64(s.StoredSize), i64(s.Items), f64(s.DurationSeconds), "",
				fmt.Sprintf("run=%s shards=%d finished=%s reused=%d host=%s partial=%s", b.Sharded.Run, s.Count, ts(s.Finished), s.Reused, s.Host, s.Partial))
		}
	}
}
