#!/usr/bin/env bash
# D1 benchmark: back up and restore-to-file a seeded database through cfemu, reporting wall time,
# throughput and peak RSS of each cfbackup run, and the restore against the sqlite3 CLI loading the
# same data (`sqlite3 new.db < dump.sql`, the dump made by sqlite3 .dump) in the same run.
#   BENCH_USERS  users to seed (default 100000 ≈ 1M auth_events, a 280 MiB dump)
#   BENCH_RUNS   runs of each restore measurement; the median is printed (default 3)
#   BENCH_BASE   a git revision (e.g. main): also time restore --to-file with cfbackup built from it
#   BENCH_FULL   1: also time restore --to-file --full-check (integrity_check instead of quick_check)
#   BENCH_D1     1: also restore into a new D1 database on cfemu (--to-database), split into the CPU
#                cfbackup spends (building the SQL twice, MD5, upload) and the CPU cfemu spends (the
#                API side: receiving the upload, executing the import)
# Binaries are built into the temporary directory, never into .bin/.
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${BENCH_USERS:-100000}
RUNS=${BENCH_RUNS:-3}
D=$(mktemp -d /tmp/cfbackup-bench.XXXXXX)
EMU=
trap '[ -n "$EMU" ] && kill $EMU 2>/dev/null; rm -rf "$D"' EXIT
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
bench_d1_setup "$D" "$USERS" "${BENCH_BASE:-}"
dbfile=$(ls "$D"/emu/d1/*/db.sqlite | head -1)
size=$(du -b "$D"/emu/d1/*/db.sqlite | awk '{s+=$1} END {print s}')
secs() { # command... : runs it, prints "wall-seconds peak-RSS-KiB cpu-seconds"
  /usr/bin/time -f "%e %M %U %S" -o "$D/time" "$@" >"$D/out" 2>"$D/err" || { cat "$D/err" >&2; exit 1; }
  awk '{printf "%s %s %.2f\n", $1, $2, $3+$4}' "$D/time"
}
report() { # label secs kb [cpu]
  printf '%-26s %7.2f s  %7.1f MB/s (of %d MB database)  peak RSS %d MiB  CPU %s s\n' "$1" "$2" "$(echo "$size/1048576/$2" | bc -l)" $((size/1048576)) $(($3/1024)) "${4:-?}"
}
measure() { # label, command... : one run
  local label=$1; shift
  read -r s kb cpu < <(secs "$@")
  report "$label" "$s" "$kb" "$cpu"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "D1 database: $USERS users, $((size/1048576)) MiB SQLite file"
measure "backup" "$B/cfbackup" backup --no-progress
measure "verify --read-data" "$B/cfbackup" verify latest --read-data --no-progress
sqlite3 "$dbfile" .dump >"$D/dump.sql"
echo "dump.sql (sqlite3 .dump): $(($(stat -c %s "$D/dump.sql")/1048576)) MiB"
# Each round restores with every contender back to back, so a busy machine slows them alike.
: >"$D/t.cli"; : >"$D/t.new"; : >"$D/t.base"; : >"$D/t.full"
for i in $(seq "$RUNS"); do
  rm -f "$D"/r*.sqlite
  read -r s kb cpu < <(secs sh -c "sqlite3 '$D/rcli.sqlite' < '$D/dump.sql'"); echo "$s" >>"$D/t.cli"; report "  sqlite3 < dump.sql #$i" "$s" "$kb" "$cpu"
  read -r s kb cpu < <(secs "$B/cfbackup" restore latest --to-file "$D/rnew.sqlite" --no-progress); echo "$s" >>"$D/t.new"; report "  restore --to-file #$i" "$s" "$kb" "$cpu"
  if [ -n "${BENCH_BASE:-}" ]; then
    read -r s kb cpu < <(secs "$B/cfbackup-base" restore latest --to-file "$D/rbase.sqlite" --no-progress); echo "$s" >>"$D/t.base"; report "  $BENCH_BASE restore #$i" "$s" "$kb" "$cpu"
  fi
  if [ "${BENCH_FULL:-}" = 1 ]; then
    read -r s kb cpu < <(secs "$B/cfbackup" restore latest --to-file "$D/rfull.sqlite" --full-check --no-progress); echo "$s" >>"$D/t.full"; report "  restore --full-check #$i" "$s" "$kb" "$cpu"
  fi
done
cli=$(median <"$D/t.cli"); new=$(median <"$D/t.new")
printf 'median of %d: sqlite3 CLI %.2f s, restore --to-file %.2f s: %.2fx the speed of sqlite3\n' "$RUNS" "$cli" "$new" "$(echo "$cli/$new" | bc -l)"
if [ -n "${BENCH_BASE:-}" ]; then
  base=$(median <"$D/t.base")
  printf 'median of %d: %s restore --to-file %.2f s: %.2fx the speed of sqlite3\n' "$RUNS" "$BENCH_BASE" "$base" "$(echo "$cli/$base" | bc -l)"
fi
if [ "${BENCH_FULL:-}" = 1 ]; then
  full=$(median <"$D/t.full")
  printf 'median of %d: restore --to-file --full-check %.2f s: %.2fx the speed of sqlite3\n' "$RUNS" "$full" "$(echo "$cli/$full" | bc -l)"
fi
if [ "${BENCH_D1:-}" = 1 ]; then
  # Into D1 the import runs on the API's side. The split: cfbackup's own CPU (building the SQL
  # twice, MD5, upload) against cfemu's CPU over the same run (the API: taking the upload and
  # executing the import), from /proc/PID/stat (utime+stime, clock ticks).
  emucpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f\n", ($14+$15)/hz}' "/proc/$EMU/stat"; }
  e0=$(emucpu)
  read -r s kb cpu < <(secs "$B/cfbackup" restore latest --to-database bench-restored --create --yes --no-progress)
  e1=$(emucpu)
  report "restore --to-database" "$s" "$kb" "$cpu"
  printf 'restore --to-database %.2f s wall: cfbackup CPU %.2f s (our code), cfemu CPU %.2f s (the API side: upload and import)\n' "$s" "$cpu" "$(echo "$e1-$e0" | bc -l)"
fi
"$B/cfbackup" list
# BENCH_OUT=dir: the figures as rows of dir/d1.tsv for scripts/bench-summary.sh (scripts/bench-lib.sh),
# and a restore into the emulated D1 split into the API side (cfemu's CPU: it executes the imports)
# and ours.
if [ -n "${BENCH_OUT:-}" ]; then
  . scripts/bench-lib.sh
  bench_row d1 "D1 restore --to-file, $USERS users ($((size/1048576)) MiB), median of $RUNS" "$new" s "sqlite3 new.db < dump.sql" "$cli" "$(bench_ratio "$cli" "$new")" ">=0.80" "ratio: speed against sqlite3 (its time / ours)"
  emucpu() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); print ($12+$13)/hz }' "/proc/$EMU/stat"; }
  e0=$(emucpu)
  read -r s kb cpu < <(secs "$B/cfbackup" restore latest --to-database bench-summary --create --yes --no-progress)
  api=$(awk -v a="$e0" -v b="$(emucpu)" 'BEGIN { printf "%.2f", b - a }')
  # CPU seconds, not wall time: on a loaded machine both sides wait for a core far longer than they work.
  all=$(awk -v a="$api" -v b="$cpu" 'BEGIN { printf "%.2f", a + b }')
  bench_row d1 "D1 restore into the emulated D1 (--to-database), $USERS users: CPU of both sides" "$all" "CPU s" "API side (cfemu executing the imports)" "$api" "$(bench_ratio "$api" "$all")" "-" "ratio: the API's share; wall $s s, cfbackup peak RSS $((kb/1024)) MiB"
fi
