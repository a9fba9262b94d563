#!/usr/bin/env bash
# Disaster-recovery drill: the "complete failure" scenario of docs/RUNBOOK.md on the local stack, timed.
#
#   make drill                  # 100,000-user D1 database (DRILL_USERS to change it)
#
# 1. An emulated Cloudflare account (cfemu) with the reference D1 database; a repository in a bucket
#    of a real S3 server (versitygw) on loopback, as off-site storage would be.
# 2. Back up everything; copy the snapshot to a second bucket (the cross-region replica).
# 3. Disaster: the D1 database is deleted, and the primary bucket is lost.
# 4. Recover from the replica with nothing but the break-glass identity: list, verify, restore into
#    a new database, validate (every table's rows hashed against the pre-disaster copy, plus
#    test-restore's checks), and print the measured RTO per component and in total.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/.bin
D=$PWD/demo/drill
USERS=${DRILL_USERS:-100000}
rm -rf "$D"; mkdir -p "$D"
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT

step "Local stack: cfemu with a $USERS-user D1 database, versitygw on loopback"
"$BIN/cfemu" --listen 127.0.0.1:0 --data-dir "$D/emu" --seed app --seed-users "$USERS" --env-file "$D/emu.env" >"$D/cfemu.log" 2>&1 &
pids+=($!)
port=$((20000 + RANDOM % 20000))
mkdir -p "$D/s3/data" "$D/s3/versions"
ROOT_ACCESS_KEY=drill ROOT_SECRET_KEY=drillsecret "$BIN/versitygw" --port "127.0.0.1:$port" --health /healthz --quiet \
  posix --versioning-dir "$D/s3/versions" "$D/s3/data" >"$D/versitygw.log" 2>&1 &
pids+=($!)
for _ in $(seq 1200); do [ -s "$D/emu.env" ] && break; sleep 0.1; done
[ -s "$D/emu.env" ] || { echo "cfemu did not start"; cat "$D/cfemu.log"; exit 1; }
for _ in $(seq 300); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.05; done
mkdir -p "$D/s3/data/primary" "$D/s3/data/replica-eu"   # posix backend: a directory is a bucket
# shellcheck disable=SC1091
. "$D/emu.env"
export AWS_ACCESS_KEY_ID=drill AWS_SECRET_ACCESS_KEY=drillsecret CFBACKUP_S3_ENDPOINT="http://127.0.0.1:$port" CFBACKUP_S3_REGION=us-east-1 CFBACKUP_S3_PATH_STYLE=true
export CFBACKUP_REPOSITORY=s3://primary/prod CFBACKUP_WRITER_KEY_FILE="$D/writer.key"
UUID=$(curl -fs -H "Authorization: Bearer $CLOUDFLARE_API_TOKEN" "$CFBACKUP_CLOUDFLARE_API_URL/accounts/$CLOUDFLARE_ACCOUNT_ID/d1/database" | grep -o '"uuid":"[^"]*"' | head -1 | cut -d'"' -f4)
cp "$D/emu/d1/$UUID/db.sqlite" "$D/before.sqlite"

step "Routine: key, repository, backup, replica"
"$BIN/cfbackup" key generate -o "$D/break-glass.key" >"$D/recipient.txt"
"$BIN/cfbackup" init --recipients-file "$D/recipient.txt" >/dev/null
"$BIN/cfbackup" backup --label drill=complete-failure
"$BIN/cfbackup" copy --to s3://replica-eu/prod latest

step "DISASTER: the D1 database is deleted and the primary bucket is lost"
curl -fs -X DELETE -H "Authorization: Bearer $CLOUDFLARE_API_TOKEN" "$CFBACKUP_CLOUDFLARE_API_URL/accounts/$CLOUDFLARE_ACCOUNT_ID/d1/database/$UUID" >/dev/null
rm -rf "$D/s3/data/primary" "$D/writer.key"

step "RECOVERY (docs/RUNBOOK.md, scenario 1), from the replica, with the break-glass identity only"
export CFBACKUP_REPOSITORY=s3://replica-eu/prod CFBACKUP_IDENTITY_FILE="$D/break-glass.key"
t0=$(now)
"$BIN/cfbackup" list
"$BIN/cfbackup" verify latest
t1=$(now)
"$BIN/cfbackup" restore latest --component d1 --d1-database app --to-database app --create
d1_rto=$(since "$t1")
total_rto=$(since "$t0")

step "Validate"
NEW=$(curl -fs -H "Authorization: Bearer $CLOUDFLARE_API_TOKEN" "$CFBACKUP_CLOUDFLARE_API_URL/accounts/$CLOUDFLARE_ACCOUNT_ID/d1/database" | grep -o '"uuid":"[^"]*"' | head -1 | cut -d'"' -f4)
fail=0
for t in users groups user_groups oidc_clients auth_events; do
  cols=$(sqlite3 "$D/before.sqlite" "SELECT group_concat('quote(\"'||name||'\")', '||'',''||') FROM pragma_table_info('$t')")
  h() { sqlite3 "$1" "SELECT $cols FROM \"$t\" ORDER BY rowid" | sha256sum | cut -c1-16; }
  a=$(h "$D/before.sqlite"); b=$(h "$D/emu/d1/$NEW/db.sqlite")
  [ "$a" = "$b" ] && s=OK || { s=DIFFERENT; fail=1; }
  printf '  %-14s before %s  after %s  %s\n' "$t" "$a" "$b" "$s"
done
"$BIN/cfbackup" test-restore latest --assert 'SELECT count(*) FROM users' ">= $USERS" --no-record || fail=1

step "Measured recovery time (RTO)"
printf '  d1 (restore into a new database, %s users): %s s\n' "$USERS" "$d1_rto"
printf '  total (list + verify + restore):            %s s\n' "$total_rto"
printf '  target: RTO < 3600 s\n'
[ $fail -eq 0 ] || { echo "DRILL FAILED: the restored data differs"; exit 1; }
echo "Drill passed."
