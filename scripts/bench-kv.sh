#!/usr/bin/env bash
# Workers KV benchmark: back up a namespace of BENCH_KEYS (default 100000) generated keys through
# cfemu (full, then incremental with nothing changed), restore it into an empty namespace and into a
# directory, and test-restore it, reporting wall time, keys/s and peak RSS of each cfbackup run.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh # BENCH_OUT=dir: rows of dir/kv.tsv for scripts/bench-summary.sh
KEYS=${BENCH_KEYS:-100000}
D=$(mktemp -d /tmp/cfbackup-bench-kv.XXXXXX)
trap 'kill $EMU 2>/dev/null || true; rm -rf "$D"' EXIT
go build -o "$D/bin/" ./cmd/cfbackup ./cmd/cfemu
B=$D/bin
"$B/cfemu" --listen 127.0.0.1:0 --data-dir "$D/emu" --kv "bench=$KEYS" --kv restored --env-file "$D/env" >"$D/emu.log" 2>&1 &
EMU=$!
for _ in $(seq 6000); do [ -s "$D/env" ] && break; sleep 0.1; done
. "$D/env"
export CFBACKUP_REPOSITORY=$D/repo CFBACKUP_IDENTITY_FILE=$D/key.txt CFBACKUP_WRITER_KEY_FILE=$D/w.key
R=$("$B/cfbackup" key generate -o "$D/key.txt" 2>/dev/null)
"$B/cfbackup" init --recipient "$R" >/dev/null
measure() { # label, command...
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$D/time" "$@" >"$D/out" 2>"$D/err" || { cat "$D/err"; exit 1; }
  read -r secs kb <"$D/time"
  printf '%-34s %7.2f s  %8.0f keys/s  peak RSS %4d MiB\n' "$label" "$secs" "$(echo "$KEYS/$secs" | bc -l)" $((kb/1024))
  bench_row kv "KV $label, $KEYS keys" "$(printf %.0f "$(echo "$KEYS/$secs" | bc -l)")" keys/s "— (no reference tool)" - - - "$secs s, peak RSS $((kb/1024)) MiB"
}
echo "KV namespace: $KEYS keys"
measure "backup (full)" "$B/cfbackup" backup --component kv --kv-namespace bench --no-progress
measure "backup --kv-incremental (no change)" "$B/cfbackup" backup --component kv --kv-namespace bench --kv-incremental --no-progress
measure "restore --to-namespace (empty)" "$B/cfbackup" restore latest --component kv --kv-namespace bench --to-namespace restored --yes --no-progress
measure "restore --to-dir" "$B/cfbackup" restore latest --component kv --kv-namespace bench --to-dir "$D/export" --no-progress
measure "test-restore" "$B/cfbackup" test-restore latest --component kv --no-progress
"$B/cfbackup" list --component kv
du -sh "$D/repo" | awk '{print "repository: " $1}'
