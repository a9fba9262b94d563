#!/usr/bin/env bash
# Disaster-recovery drill: the "complete failure" scenario of docs/RUNBOOK.md on the local stack, timed.
#
#   make drill                  # reference size: 100,000-user D1, 1 GiB R2 bucket, 10,000 Durable Objects
#   DRILL_USERS=2000 DRILL_R2_MB=64 DRILL_R2_OBJECTS=200 DRILL_DO_OBJECTS=300 make drill   # quick
#
# DRILL_R2_MB=0 leaves R2 out, DRILL_DO_OBJECTS=0 Durable Objects; the DO part also needs node and
# worker/node_modules (scripts/install-tools.sh), else it is left out with a note.
#
# 1. An emulated Cloudflare account (cfemu) with the reference D1 database, an R2 bucket "assets" and
#    the example Worker's Durable Objects in the real Workers runtime (workerd via miniflare); the
#    repository in a bucket of a real S3 server (versitygw) on loopback, as off-site storage would be.
# 2. Back up everything; copy the snapshot to a second bucket (the cross-region replica).
# 3. Disaster: the D1 database is deleted, the R2 bucket emptied, every Durable Object's storage
#    wiped, and the primary backup bucket is lost.
# 4. Recover from the replica with nothing but the break-glass identity: list, verify, restore every
#    component, validate (D1 tables hashed against the pre-disaster copy, every R2 object's SHA-256,
#    a sample of Durable Objects compared deeply, plus test-restore's checks), and print the measured
#    RTO per component and in total.
# 5. Scenario 2, the account itself is lost (DRILL_NEW_ACCOUNT=0 leaves it out): an empty second
#    account (another cfemu account ID, the app deployed under another script name, so the runtime
#    derives other Durable Object IDs) gets every component from the same replica: D1 into a new
#    database placed with --location-hint, R2 into an empty bucket, Durable Objects re-created by
#    their recorded names in the new namespaces (--to-do-namespace), the Workers configuration
#    written out for redeployment; validated the same way and timed (RTO per component and total).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${DRILL_BIN:-$PWD/.bin}   # where cfbackup, cfemu and versitygw are (make build, make tools)
D=$PWD/demo/drill
USERS=${DRILL_USERS:-100000}
R2_MB=${DRILL_R2_MB:-1024}
R2_OBJECTS=${DRILL_R2_OBJECTS:-2000}
DO_OBJECTS=${DRILL_DO_OBJECTS:-10000}
NEW_ACCOUNT=${DRILL_NEW_ACCOUNT:-1}
rm -rf "$D"; mkdir -p "$D"
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${WPID:-}" ] && kill "$WPID" 2>/dev/null || true
  [ -n "${WPID2:-}" ] && kill "$WPID2" 2>/dev/null || true
  exec 9>&- 2>/dev/null || true
}
trap cleanup EXIT

if [ "$DO_OBJECTS" -gt 0 ] && ! { command -v node >/dev/null && [ -d worker/node_modules ]; }; then
  echo "note: node or worker/node_modules missing (run scripts/install-tools.sh): Durable Objects left out of the drill"
  DO_OBJECTS=0
fi
COMPONENTS=d1,config
[ "$R2_MB" -gt 0 ] && COMPONENTS=$COMPONENTS,r2
[ "$DO_OBJECTS" -gt 0 ] && COMPONENTS=$COMPONENTS,do

# The example app in the Workers runtime. The harness runs while its stdin is open: a FIFO held by fd 9.
DO_SECRET=drill-do-secret-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
start_worker() {
  rm -f "$D/worker.in" "$D/worker.json"; mkfifo "$D/worker.in"
  (cd worker && CFBACKUP_SECRET=$DO_SECRET exec node test/harness.mjs --persist "$D/do-state" --port "$WPORT" <"$D/worker.in" >"$D/worker.json" 2>>"$D/worker.log") &
  WPID=$!
  exec 9>"$D/worker.in"
  for _ in $(seq 600); do [ -s "$D/worker.json" ] && break; sleep 0.1; done
  [ -s "$D/worker.json" ] || { echo "the Workers runtime did not start"; cat "$D/worker.log"; exit 1; }
}
# SIGTERM makes the harness dispose the runtime (its state stays on disk); other children share fd 9.
stop_worker() { kill -TERM "$WPID"; wait "$WPID" 2>/dev/null || true; exec 9>&-; WPID=; }

step "Local stack: cfemu ($USERS-user D1), versitygw on loopback$([ "$R2_MB" -gt 0 ] && echo ", R2 bucket of $R2_MB MiB")$([ "$DO_OBJECTS" -gt 0 ] && echo ", $DO_OBJECTS Durable Objects in workerd")"
emu_do=()
if [ "$DO_OBJECTS" -gt 0 ]; then
  [ -f worker/dist/example/index.js ] || (cd worker && npm run --silent build)
  WPORT=$((20000 + RANDOM % 20000))
  start_worker
  WURL=http://127.0.0.1:$WPORT
  emu_do=(--do "oidc-example/SessionStore=$D/do-state" --do "oidc-example/RateLimiter=$D/do-state,kv" --worker-url "$WURL")
fi
"$BIN/cfemu" --listen 127.0.0.1:0 --data-dir "$D/emu" --seed app --seed-users "$USERS" --seed-workers --env-file "$D/emu.env" "${emu_do[@]}" >"$D/cfemu.log" 2>&1 &
pids+=($!)
port=$((20000 + RANDOM % 20000))
mkdir -p "$D/s3/data" "$D/s3/versions"
ROOT_ACCESS_KEY=drill ROOT_SECRET_KEY=drillsecret "$BIN/versitygw" --port "127.0.0.1:$port" --health /healthz --quiet \
  posix --versioning-dir "$D/s3/versions" "$D/s3/data" >"$D/versitygw.log" 2>&1 &
pids+=($!)
for _ in $(seq 1200); do [ -s "$D/emu.env" ] && break; sleep 0.1; done
[ -s "$D/emu.env" ] || { echo "cfemu did not start"; cat "$D/cfemu.log"; exit 1; }
for _ in $(seq 300); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.05; done
mkdir -p "$D/s3/data/primary" "$D/s3/data/replica-eu" "$D/s3/data/assets"   # posix backend: a directory is a bucket
# shellcheck disable=SC1091
. "$D/emu.env"
export AWS_ACCESS_KEY_ID=drill AWS_SECRET_ACCESS_KEY=drillsecret CFBACKUP_S3_ENDPOINT="http://127.0.0.1:$port" CFBACKUP_S3_REGION=us-east-1 CFBACKUP_S3_PATH_STYLE=true
export CFBACKUP_REPOSITORY=s3://primary/prod CFBACKUP_WRITER_KEY_FILE="$D/writer.key"
export CFBACKUP_R2_ENDPOINT="http://127.0.0.1:$port" CFBACKUP_R2_ACCESS_KEY_ID=drill CFBACKUP_R2_SECRET_ACCESS_KEY=drillsecret
export CFBACKUP_WORKER_SECRET=$DO_SECRET
UUID=$(curl -fs -H "Authorization: Bearer $CLOUDFLARE_API_TOKEN" "$CFBACKUP_CLOUDFLARE_API_URL/accounts/$CLOUDFLARE_ACCOUNT_ID/d1/database" | grep -o '"uuid":"[^"]*"' | head -1 | cut -d'"' -f4)
cp "$D/emu/d1/$UUID/db.sqlite" "$D/before.sqlite"

# Every R2 object's key and SHA-256, from the posix backend's files (one file per object).
r2sums() { (cd "$D/s3/data/assets" && find . -type f ! -path './.sgwtmp/*' -print0 | sort -z | xargs -0r sha256sum); }
if [ "$R2_MB" -gt 0 ]; then
  go build -o "$BIN/r2seed" ./scripts/r2seed
  t=$(now)
  "$BIN/r2seed" -endpoint "$CFBACKUP_R2_ENDPOINT" -access-key drill -secret-key drillsecret -bucket assets -objects "$R2_OBJECTS" -size $((R2_MB << 20)) >/dev/null
  r2sums >"$D/r2-before.sha256"
  echo "  R2: $(wc -l <"$D/r2-before.sha256") objects, $(du -sm "$D/s3/data/assets" | cut -f1) MiB seeded in $(since "$t") s"
fi
# Durable Objects: 90 % SQLite-backed sessions (KV values of every type, SQL rows, alarms), 10 % KV rate limiters.
do_url() { if [ $(($1 % 10)) -eq 9 ]; then echo "$WURL/ratelimit/name:client-$1"; else echo "$WURL/sessions/name:session-$1"; fi; }
DO_SAMPLE=()
if [ "$DO_OBJECTS" -gt 0 ]; then
  t=$(now)
  seq 0 $((DO_OBJECTS - 1)) | while read -r i; do echo "$(do_url "$i")/__test/seed?i=$i"; done |
    xargs -n 100 -P 4 curl -fsS >/dev/null
  # A sample of objects spread over the namespace, described by the app itself (types, rows, alarm).
  step_n=$(( DO_OBJECTS > 200 ? DO_OBJECTS / 200 : 1 ))
  for ((i = 0; i < DO_OBJECTS; i += step_n)); do DO_SAMPLE+=("$i"); done
  mkdir -p "$D/do-before" "$D/do-after"
  for i in "${DO_SAMPLE[@]}"; do curl -fsS "$(do_url "$i")/__test/inspect" >"$D/do-before/$i.json"; done
  echo "  Durable Objects: $DO_OBJECTS seeded in $(since "$t") s; ${#DO_SAMPLE[@]} described for validation"
fi

step "Routine: key, repository, backup ($COMPONENTS), replica"
"$BIN/cfbackup" key generate -o "$D/break-glass.key" >"$D/recipient.txt"
"$BIN/cfbackup" init --recipients-file "$D/recipient.txt" >/dev/null
t=$(now)
"$BIN/cfbackup" backup --component "$COMPONENTS" --r2-bucket assets --do-concurrency 8 --label drill=complete-failure
backup_s=$(since "$t")
t=$(now)
"$BIN/cfbackup" copy --to s3://replica-eu/prod latest
copy_s=$(since "$t")

step "DISASTER: D1 database deleted, R2 bucket emptied, Durable Objects wiped, primary backup bucket lost"
curl -fs -X DELETE -H "Authorization: Bearer $CLOUDFLARE_API_TOKEN" "$CFBACKUP_CLOUDFLARE_API_URL/accounts/$CLOUDFLARE_ACCOUNT_ID/d1/database/$UUID" >/dev/null
if [ "$R2_MB" -gt 0 ]; then rm -rf "$D/s3/data/assets"; mkdir "$D/s3/data/assets"; fi
if [ "$DO_OBJECTS" -gt 0 ]; then stop_worker; rm -rf "$D/do-state"; start_worker; fi
rm -rf "$D/s3/data/primary" "$D/writer.key"

step "RECOVERY (docs/RUNBOOK.md, scenario 1), from the replica, with the break-glass identity only"
export CFBACKUP_REPOSITORY=s3://replica-eu/prod CFBACKUP_IDENTITY_FILE="$D/break-glass.key"
t0=$(now)
"$BIN/cfbackup" list
"$BIN/cfbackup" verify latest
verify_s=$(since "$t0")
t=$(now)
"$BIN/cfbackup" restore latest --component d1 --d1-database app --to-database app --create
d1_rto=$(since "$t")
r2_rto=-; do_rto=-
if [ "$R2_MB" -gt 0 ]; then
  t=$(now)
  "$BIN/cfbackup" restore latest --component r2 --r2-bucket assets
  r2_rto=$(since "$t")
fi
if [ "$DO_OBJECTS" -gt 0 ]; then
  t=$(now)
  "$BIN/cfbackup" restore latest --component do --do-concurrency 8 --yes
  do_rto=$(since "$t")
fi
total_rto=$(since "$t0")

step "Validate"
NEW=$(curl -fs -H "Authorization: Bearer $CLOUDFLARE_API_TOKEN" "$CFBACKUP_CLOUDFLARE_API_URL/accounts/$CLOUDFLARE_ACCOUNT_ID/d1/database" | grep -o '"uuid":"[^"]*"' | head -1 | cut -d'"' -f4)
fail=0
for t in users groups user_groups oidc_clients auth_events; do
  cols=$(sqlite3 "$D/before.sqlite" "SELECT group_concat('quote(\"'||name||'\")', '||'',''||') FROM pragma_table_info('$t')")
  h() { sqlite3 "$1" "SELECT $cols FROM \"$t\" ORDER BY rowid" | sha256sum | cut -c1-16; }
  a=$(h "$D/before.sqlite"); b=$(h "$D/emu/d1/$NEW/db.sqlite")
  [ "$a" = "$b" ] && s=OK || { s=DIFFERENT; fail=1; }
  printf '  d1 %-14s before %s  after %s  %s\n' "$t" "$a" "$b" "$s"
done
if [ "$R2_MB" -gt 0 ]; then
  r2sums >"$D/r2-after.sha256"
  if cmp -s "$D/r2-before.sha256" "$D/r2-after.sha256"; then s=OK; else s=DIFFERENT; fail=1; fi
  printf '  r2 assets: %d objects, every key and SHA-256 as before the disaster: %s\n' "$(wc -l <"$D/r2-after.sha256")" "$s"
fi
if [ "$DO_OBJECTS" -gt 0 ]; then
  for i in "${DO_SAMPLE[@]}"; do curl -fsS "$(do_url "$i")/__test/inspect" >"$D/do-after/$i.json"; done
  if diff -rq "$D/do-before" "$D/do-after" >/dev/null; then s=OK; else s=DIFFERENT; fail=1; fi
  printf '  do: %d sampled objects (KV values with their types, SQL rows, alarms) as before the disaster: %s\n' "${#DO_SAMPLE[@]}" "$s"
fi
"$BIN/cfbackup" test-restore latest --sample 100 --assert 'SELECT count(*) FROM users' ">= $USERS" --no-record || fail=1

step "Measured recovery time (RTO)"
printf '  list + verify latest:                        %s s\n' "$verify_s"
printf '  d1 (restore into a new database, %s users): %s s\n' "$USERS" "$d1_rto"
[ "$R2_MB" -gt 0 ] && printf '  r2 (%s objects, %s MiB, into the emptied bucket): %s s\n' "$R2_OBJECTS" "$R2_MB" "$r2_rto"
[ "$DO_OBJECTS" -gt 0 ] && printf '  do (%s Durable Objects, into the wiped namespace): %s s\n' "$DO_OBJECTS" "$do_rto"
printf '  total (list + verify + every restore):       %s s\n' "$total_rto"
printf '  target: RTO < 3600 s   (for reference: backup %s s, copy to the replica %s s; %s cores)\n' "$backup_s" "$copy_s" "$(nproc)"
[ $fail -eq 0 ] || { echo "DRILL FAILED: the restored data differs"; exit 1; }
[ "$NEW_ACCOUNT" = 1 ] && . scripts/drill-new-account.sh
echo "Drill passed."
