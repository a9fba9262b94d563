#!/usr/bin/env bash
# `make bench`: every benchmark behind issue 15's figures, one after the other, then one summary
# table of them (scripts/bench-summary.sh), each figure against a reference measured in the same run.
#   BENCH_QUICK=1  small sizes (a few minutes; what TestBenchSummaryQuick runs): D1 2,000 users,
#                  DO 200 objects, R2 200 objects of 32 and 128 MiB, KV 5,000 keys, bench-scale 10,000
#   BENCH_OUT=dir  where the results go (default a new temporary directory); the table is also
#                  written to dir/summary.md. Sizes can be set as each script documents (BENCH_USERS,
#                  BENCH_RUNS, CFBACKUP_BENCH_DO_OBJECTS, BENCH_R2_OBJECTS, BENCH_KEYS) plus
#                  BENCH_R2_SIZES ("1073741824 4294967296"), BENCH_R2_LINK_SIZE and BENCH_SCALE_N.
#   BENCH_MICRO=0  skip the in-process go test benchmarks of pkg/archive, pkg/source/d1, pkg/store
#                  (they print their own figures, not in the table; skipped with BENCH_QUICK=1)
# Needs what the scripts need: versitygw, rclone, restic, sqlite3, workerd (worker/node_modules).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${BENCH_OUT:-$(mktemp -d /tmp/cfbackup-bench-out.XXXXXX)}
mkdir -p "$OUT"
export BENCH_OUT=$OUT
rm -f "$OUT"/*.tsv "$OUT/do.txt" "$OUT/scale.txt" "$OUT/summary.md"
if [ "${BENCH_QUICK:-0}" = 1 ]; then
  users=2000 runs=1 dos=200 r2n=200 r2sizes="33554432 134217728" linksize=134217728 keys=5000 scalen=10000 micro=0
else
  users=100000 runs=3 dos=10000 r2n=2000 r2sizes="1073741824 4294967296" linksize=4294967296 keys=100000 scalen=1000000 micro=1
fi
if [ "${BENCH_MICRO:-$micro}" = 1 ]; then # the in-process benchmarks (not in the table)
  go test -run '^$' -bench . -benchmem -timeout 60m ./pkg/archive/ ./pkg/source/d1/... ./pkg/store/...
fi
step() { echo; echo "== $* (load average $(cut -d' ' -f1-3 /proc/loadavg))"; }
step D1
BENCH_USERS=${BENCH_USERS:-$users} BENCH_RUNS=${BENCH_RUNS:-$runs} scripts/bench-d1.sh
step Durable Objects
n=${CFBACKUP_BENCH_DO_OBJECTS:-$dos}
{ echo "# load $(cut -d' ' -f1 /proc/loadavg)"; echo "# objects $n"; } >"$OUT/do.txt"
CFBACKUP_BENCH_DO_OBJECTS=$n go test -run '^$' -bench . -benchtime 1x -timeout 30m ./pkg/source/durableobject/ | tee -a "$OUT/do.txt"
grep -q 'restore-objects/s' "$OUT/do.txt" || echo "bench: the Durable Object benchmarks reported nothing (workerd missing? see above)" >&2
for size in ${BENCH_R2_SIZES:-$r2sizes}; do
  step R2 "$size" bytes
  BENCH_R2_OBJECTS=${BENCH_R2_OBJECTS:-$r2n} BENCH_R2_SIZE=$size BENCH_R2_LINK=0 scripts/bench-r2.sh
done
step R2 slow link
BENCH_R2_OBJECTS=${BENCH_R2_OBJECTS:-$r2n} BENCH_R2_SIZE=${BENCH_R2_LINK_SIZE:-$linksize} BENCH_R2_LINK=1 scripts/bench-r2.sh
step KV
BENCH_KEYS=${BENCH_KEYS:-$keys} scripts/bench-kv.sh
step R2 scale
echo "# load $(cut -d' ' -f1 /proc/loadavg)" >"$OUT/scale.txt"
# shellcheck disable=SC2086 # a list of sizes
scripts/bench-scale.sh ${BENCH_SCALE_N:-$scalen} | tee -a "$OUT/scale.txt"
step Summary
scripts/bench-summary.sh "$OUT" | tee "$OUT/summary.md"
echo "(results in $OUT)"
