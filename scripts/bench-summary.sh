#!/usr/bin/env bash
# Renders the figures of one `make bench` run as one Markdown table: scripts/bench-summary.sh DIR.
# DIR holds what the benchmarks wrote in that run:
#   *.tsv      rows appended by scripts/bench-lib.sh's bench_row (bench-r2.sh, bench-d1.sh, bench-kv.sh)
#   do.txt     `go test -bench` output of pkg/source/durableobject (parsed here: its metrics by unit)
#   scale.txt  scripts/bench-scale.sh's table (parsed here: the no-change rows)
# Each row: the figure, cfbackup's value, the reference measured in the same run (another tool, the
# link's rate, or the issue's target where no tool exists), the ratio, its target and whether it passed.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
DIR=${1:?usage: scripts/bench-summary.sh DIR (the BENCH_OUT of the run)}
[ -d "$DIR" ] || { echo "bench-summary: $DIR is not a directory (run make bench first)" >&2; exit 2; }
export BENCH_OUT=$DIR
rm -f "$DIR/parsed.tsv"

# metric FILE BENCH UNIT: the value go test printed before UNIT on BENCH's line.
metric() { awk -v b="$2" -v u="$3" '$1 ~ "^"b"(-[0-9]+)?$" { for (i = 2; i < NF; i++) if ($(i+1) == u) { print $i; exit } }' "$1"; }
if [ -s "$DIR/do.txt" ]; then
  load=$(sed -n 's/^# load //p' "$DIR/do.txt" | head -1)
  n=$(sed -n 's/^# objects //p' "$DIR/do.txt" | head -1)
  row() { # figure bench unit target-value target-unit
    local v; v=$(metric "$DIR/do.txt" "$2" "$3")
    [ -n "$v" ] || return 0
    v=$(printf %.1f "$v")
    BENCH_LOAD=$load bench_row parsed "$1" "$v" "$3" "issue target (no reference tool)" "$4" "$(bench_ratio "$v" "$4")" ">=1.00"
  }
  row "DO backup, ${n:-10000} small objects (batches)" BenchmarkSmallObjects/batch backup-objects/s 1000
  row "DO restore, ${n:-10000} small objects (batches)" BenchmarkSmallObjects/batch restore-objects/s 500
  row "DO backup, one 50 MiB object" BenchmarkLargeObject backup-MB/s 100
  row "DO restore, one 50 MiB object" BenchmarkLargeObject restore-MB/s 100
fi
if [ -s "$DIR/scale.txt" ]; then
  load=$(sed -n 's/^# load //p' "$DIR/scale.txt" | head -1)
  # N phase wall_s cpu_s peak_rss_MiB listed gets fetched
  while read -r n phase wall cpu rss listed gets _; do
    [ "$phase" = nochange ] || continue
    goal=$(awk -v n="$n" 'BEGIN { printf "%g", 60 * n / 1000000 }')
    BENCH_LOAD=$load bench_row parsed "R2 no-change incremental, $n objects (bench-scale): CPU" "$cpu" "CPU s" "goal: 60 s per 1M objects" "$goal" "$(bench_ratio "$cpu" "$goal")" "<=1.00" "wall $wall s, $listed LISTs, $gets GETs"
    BENCH_LOAD=$load bench_row parsed "R2 no-change incremental, $n objects (bench-scale): peak RSS" "$rss" MiB "goal: 256 MiB at any N" 256 "$(bench_ratio "$rss" 256)" "<=1.00"
  done < <(grep -E '^[0-9]+ +nochange ' "$DIR/scale.txt")
fi
# Bench files first in a fixed order, so the table reads the same in every run.
files=()
for f in r2 d1 parsed kv; do [ -s "$DIR/$f.tsv" ] && files+=("$DIR/$f.tsv"); done
for f in "$DIR"/*.tsv; do case " ${files[*]} " in *" $f "*) ;; *) [ -s "$f" ] && files+=("$f") ;; esac; done
[ ${#files[@]} -gt 0 ] || { echo "bench-summary: no results in $DIR" >&2; exit 1; }
echo "| figure | cfbackup | reference (same run) | ratio | target | pass | load | note |"
echo "|---|---|---|---|---|---|---|---|"
awk -F'\t' '{
  ref = ($5 == "" || $5 == "-") ? $4 : $4 ": " $5 " " $3
  printf "| %s | %s %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, ref, $6, ($7 == "-" ? "—" : $7), ($8 == "-" ? "—" : $8), $9, $10
}' "${files[@]}"
cat "${files[@]}" | awk -F'\t' '{ n++; if ($8 == "yes") y++; else if ($8 == "no") f++ }
  END { printf "\n%d figures: %d meet their target, %d do not, %d have none.\n", n, y, f, n - y - f }'
