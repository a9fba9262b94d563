#!/bin/sh
# Measures 'key rewrap' and 'key rotate-writer' on MiB (default 1024) of incompressible snapshot data,
# on a local directory and on versitygw (CFBACKUP_VERSITYGW, default .bin/versitygw).
# Figures are quoted in docs/RUNBOOK.md §3. Usage: scripts/bench-rotate.sh [MiB]
set -eu
cd "$(dirname "$0")/.."
: "${CFBACKUP_VERSITYGW:=$PWD/.bin/versitygw}"
export CFBACKUP_VERSITYGW
CFBACKUP_BENCH_ROTATE_MIB="${1:-1024}" go test -count=1 -timeout 30m -v ./pkg/repo -run TestMeasureRotation 2>&1 |
	grep -E 'wrote|REWRAP|ROTATE-WRITER|^(ok|FAIL|---)'
