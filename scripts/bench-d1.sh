#!/usr/bin/env bash
# D1 benchmark: back up and restore-to-file a seeded database through cfemu, reporting wall time,
# throughput and peak RSS of each cfbackup run. BENCH_USERS (default 100000 ≈ 1M auth_events).
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${BENCH_USERS:-100000}
B=$PWD/.bin; D=$(mktemp -d /tmp/cfbackup-bench.XXXXXX)
trap 'kill $EMU 2>/dev/null || true; rm -rf "$D"' EXIT
make -s build
"$B/cfemu" --listen 127.0.0.1:0 --data-dir "$D/emu" --seed app --seed-users "$USERS" --env-file "$D/env" >"$D/emu.log" 2>&1 &
EMU=$!
for _ in $(seq 3000); do [ -s "$D/env" ] && break; sleep 0.1; done
. "$D/env"
export CFBACKUP_REPOSITORY=$D/repo CFBACKUP_IDENTITY_FILE=$D/key.txt CFBACKUP_WRITER_KEY_FILE=$D/w.key
R=$("$B/cfbackup" key generate -o "$D/key.txt" 2>/dev/null)
"$B/cfbackup" init --recipient "$R" >/dev/null
size=$(du -b "$D"/emu/d1/*/db.sqlite | awk '{s+=$1} END {print s}')
measure() { # label, command...
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$D/time" "$@" >"$D/out" 2>"$D/err" || { cat "$D/err"; exit 1; }
  read -r secs kb <"$D/time"
  printf '%-22s %7.2f s  %7.1f MB/s (of %d MB database)  peak RSS %d MiB\n' "$label" "$secs" "$(echo "$size/1048576/$secs" | bc -l)" $((size/1048576)) $((kb/1024))
}
echo "D1 database: $USERS users, $((size/1048576)) MiB SQLite file"
measure "backup" "$B/cfbackup" backup --no-progress
measure "verify --read-data" "$B/cfbackup" verify latest --read-data --no-progress
measure "restore --to-file" "$B/cfbackup" restore latest --to-file "$D/restored.sqlite" --no-progress
"$B/cfbackup" list
