#!/usr/bin/env bash
# What a D1 backup costs per database size, for the RPO table in docs/SCHEDULING.md: for each size
# (MiB, default "10 100 500") it seeds a database on the emulated account (cmd/cfemu, internal/seed),
# runs two backups in a row into a local repository and prints the export time (how long D1 blocks the
# database), the backup's wall time and the bytes stored per run (the second run shows whether an
# unchanged database costs anything). Usage: scripts/measure-rpo.sh [MiB...]
# Needs about 40 times the largest size free under /tmp: cfemu keeps a Time Travel copy of the
# database for every query batch it does not recognise as read-only (see docs/SCHEDULING.md "RPO").
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(10 100 500)
B=$(mktemp -d /tmp/cfbackup-rpo-bin.XXXXXX)
go build -trimpath -o "$B/cfbackup" ./cmd/cfbackup
go build -trimpath -o "$B/cfemu" ./cmd/cfemu
EMU="" D=""
cleanup() { [ -z "$EMU" ] || kill "$EMU" 2>/dev/null || true; rm -rf "$B" ${D:+"$D"}; }
trap cleanup EXIT
# internal/seed writes about 2,880 bytes of SQLite file per user (measured: 10,000 users = 27.5 MiB).
per_user=2880
printf '| database (SQLite file) | export: database blocked | backup wall time | stored, 1st run | stored, 2nd run (unchanged) |\n'
printf '|---|---|---|---|---|\n'
for mib in "${sizes[@]}"; do
  D=$(mktemp -d /tmp/cfbackup-rpo.XXXXXX)
  users=$((mib * 1048576 / per_user))
  "$B/cfemu" --listen 127.0.0.1:0 --data-dir "$D/emu" --seed app --seed-users "$users" --env-file "$D/env" >"$D/emu.log" 2>&1 &
  EMU=$!
  for _ in $(seq 6000); do [ -s "$D/env" ] && break; sleep 0.1; done
  # shellcheck disable=SC1091
  . "$D/env"
  export CFBACKUP_REPOSITORY=$D/repo CFBACKUP_IDENTITY_FILE=$D/key.txt CFBACKUP_WRITER_KEY_FILE=$D/w.key
  R=$("$B/cfbackup" key generate -o "$D/key.txt" 2>/dev/null)
  "$B/cfbackup" init --recipient "$R" >/dev/null
  file=$(du -b "$D"/emu/d1/*/db.sqlite | awk '{s+=$1} END {print s}')
  row=()
  for run in 1 2; do
    start=$(date +%s.%N)
    "$B/cfbackup" backup --no-progress --json >"$D/b$run.json" 2>"$D/b$run.err"
    end=$(date +%s.%N)
    wall=$(echo "$end - $start" | bc -l)
    blocked=$(jq -r '.sources[0].blocked' "$D/b$run.json")
    stored=$(jq -r '.stored_size' "$D/b$run.json")
    row+=("$blocked" "$wall" "$stored")
  done
  printf '| %d MiB | %s / %s | %.1f s / %.1f s | %.1f MiB | %.1f MiB |\n' "$((file / 1048576))" "${row[0]}" "${row[3]}" \
    "${row[1]}" "${row[4]}" "$(echo "${row[2]}/1048576" | bc -l)" "$(echo "${row[5]}/1048576" | bc -l)"
  kill "$EMU"; wait "$EMU" 2>/dev/null || true; EMU=""
  rm -rf "$D"; D=""
done
