package layout

import (
	"fmt"
	"strconv"
	"strings"
)

// Shards holds the partial manifests of sharded backups (ShardPartialKey) until their run is merged
// into one snapshot (docs/SHARDING.md). They are not under Snapshots, so list, latest and retention
// never take a partial for a snapshot; prune keeps what young partials reference.
const Shards = "shards/"

// ShardRunPrefix is the prefix of every partial manifest of one sharded run.
func ShardRunPrefix(run string) string { return Shards + run + "/" }

// ShardPartialKey is the key of the partial manifest of shard i of n of a run: one per shard, created
// conditionally, so a shard that commits twice (a retried pod, two racing runs) commits once.
func ShardPartialKey(run string, i, n int) string {
	return fmt.Sprintf("%s%d-of-%d%s", ShardRunPrefix(run), i, n, JSONSuffix)
}

// ParseShardPartialKey splits a key listed under Shards into its run, shard and shard count; ok is
// false for any other key, which a reader ignores.
func ParseShardPartialKey(key string) (run string, i, n int, ok bool) {
	rest, ok := strings.CutPrefix(key, Shards)
	if !ok {
		return "", 0, 0, false
	}
	run, name, ok := strings.Cut(rest, "/")
	if !ok || run == "" {
		return "", 0, 0, false
	}
	name, ok = strings.CutSuffix(name, JSONSuffix)
	if !ok {
		return "", 0, 0, false
	}
	a, b, ok := strings.Cut(name, "-of-")
	if !ok {
		return "", 0, 0, false
	}
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if err1 != nil || err2 != nil || n < 1 || i < 1 || i > n || strconv.Itoa(i) != a || strconv.Itoa(n) != b {
		return "", 0, 0, false
	}
	return run, i, n, true
}
