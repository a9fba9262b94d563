# Scenario 2 of the disaster-recovery drill (docs/RUNBOOK.md): the whole Cloudflare account is lost.
# Sourced by scripts/drill.sh after scenario 1, with its variables, functions and environment (the
# replica repository and the break-glass identity). Every component of the snapshot goes into empty
# targets of a new account:
#   - a second emulated account (cfemu --account-id, nothing in it but the new app's namespaces);
#   - the app deployed there under another script name: the runtime derives other object IDs from
#     the same names, as Cloudflare does in another namespace, so old IDs are useless there;
#   - D1 into a new database placed with --location-hint; R2 into a new, empty bucket; Durable
#     Objects re-created by their recorded names (--to-do-namespace); the Workers configuration
#     written out as files for the redeployment (the config component is never applied).
# shellcheck shell=bash disable=SC2034,SC2153

step "SCENARIO 2: the account is lost; recover everything into a new, empty account"
NEW_ACCOUNT_ID=0badc0de0000000000000000000000a2
NEW_SCRIPT=oidc-newacct
emu2_do=()
if [ "$DO_OBJECTS" -gt 0 ]; then
  WPORT2=$((WPORT + 1))
  rm -f "$D/worker2.in" "$D/worker2.json"; mkfifo "$D/worker2.in"
  (cd worker && CFBACKUP_SECRET=$DO_SECRET exec node test/harness.mjs --persist "$D/do-state-new" --port "$WPORT2" --name "$NEW_SCRIPT" <"$D/worker2.in" >"$D/worker2.json" 2>>"$D/worker2.log") &
  WPID2=$!
  exec 8>"$D/worker2.in"
  for _ in $(seq 600); do [ -s "$D/worker2.json" ] && break; sleep 0.1; done
  [ -s "$D/worker2.json" ] || { echo "the new account's Workers runtime did not start"; cat "$D/worker2.log"; exit 1; }
  WURL2=http://127.0.0.1:$WPORT2
  emu2_do=(--do "$NEW_SCRIPT/SessionStore=$D/do-state-new" --do "$NEW_SCRIPT/RateLimiter=$D/do-state-new,kv" --worker-url "$WURL2")
fi
"$BIN/cfemu" --listen 127.0.0.1:0 --data-dir "$D/emu-new" --account-id "$NEW_ACCOUNT_ID" --env-file "$D/emu-new.env" "${emu2_do[@]}" >"$D/cfemu-new.log" 2>&1 &
pids+=($!)
for _ in $(seq 1200); do [ -s "$D/emu-new.env" ] && break; sleep 0.1; done
[ -s "$D/emu-new.env" ] || { echo "the new account's cfemu did not start"; cat "$D/cfemu-new.log"; exit 1; }
# shellcheck disable=SC1091
. "$D/emu-new.env"   # from here on, cfbackup talks to the new account
[ "$R2_MB" -gt 0 ] && mkdir -p "$D/s3/data/assets-new"   # the new account's empty bucket
echo "  new account $CLOUDFLARE_ACCOUNT_ID: no D1 database, an empty R2 bucket assets-new$([ "$DO_OBJECTS" -gt 0 ] && echo ", empty namespaces ${NEW_SCRIPT}_SessionStore and ${NEW_SCRIPT}_RateLimiter")"

t0=$(now)
t=$(now)
"$BIN/cfbackup" restore latest --component d1 --d1-database app --to-database app --create --location-hint weur
n_d1=$(since "$t")
n_r2=-; n_do=-
if [ "$R2_MB" -gt 0 ]; then
  t=$(now)
  "$BIN/cfbackup" restore latest --component r2 --r2-bucket assets --to-bucket assets-new
  n_r2=$(since "$t")
fi
if [ "$DO_OBJECTS" -gt 0 ]; then
  t=$(now)
  "$BIN/cfbackup" restore latest --component do --do-namespace oidc-example_SessionStore --to-do-namespace "${NEW_SCRIPT}_SessionStore" --dry-run | tail -n +2
  for class in SessionStore RateLimiter; do
    "$BIN/cfbackup" restore latest --component do --do-namespace "oidc-example_$class" --to-do-namespace "${NEW_SCRIPT}_$class" --do-concurrency 8
  done
  n_do=$(since "$t")
fi
t=$(now)
"$BIN/cfbackup" restore latest --component config --to-dir "$D/new-account-config"
n_cfg=$(since "$t")
n_total=$(since "$t0")

step "Validate the new account"
NEW2=$(curl -fs -H "Authorization: Bearer $CLOUDFLARE_API_TOKEN" "$CFBACKUP_CLOUDFLARE_API_URL/accounts/$CLOUDFLARE_ACCOUNT_ID/d1/database" | grep -o '"uuid":"[^"]*"' | head -1 | cut -d'"' -f4)
grep -q '"primary_location_hint": "weur"' "$D/emu-new/d1/$NEW2/meta.json" && s=OK || { s=MISSING; fail=1; }
printf '  d1 app created in the new account with location hint weur: %s\n' "$s"
for t in users groups user_groups oidc_clients auth_events; do
  cols=$(sqlite3 "$D/before.sqlite" "SELECT group_concat('quote(\"'||name||'\")', '||'',''||') FROM pragma_table_info('$t')")
  h() { sqlite3 "$1" "SELECT $cols FROM \"$t\" ORDER BY rowid" | sha256sum | cut -c1-16; }
  a=$(h "$D/before.sqlite"); b=$(h "$D/emu-new/d1/$NEW2/db.sqlite")
  [ "$a" = "$b" ] && s=OK || { s=DIFFERENT; fail=1; }
  printf '  d1 %-14s before %s  new account %s  %s\n' "$t" "$a" "$b" "$s"
done
if [ "$R2_MB" -gt 0 ]; then
  (cd "$D/s3/data/assets-new" && find . -type f ! -path './.sgwtmp/*' -print0 | sort -z | xargs -0r sha256sum) >"$D/r2-new.sha256"
  if cmp -s "$D/r2-before.sha256" "$D/r2-new.sha256"; then s=OK; else s=DIFFERENT; fail=1; fi
  printf '  r2 assets-new: %d objects, every key and SHA-256 as before the disaster: %s\n' "$(wc -l <"$D/r2-new.sha256")" "$s"
fi
if [ "$DO_OBJECTS" -gt 0 ]; then
  mkdir -p "$D/do-new"
  same_id=0
  for i in "${DO_SAMPLE[@]}"; do
    u=$(do_url "$i"); u=${u/$WURL/$WURL2}
    curl -fsS "$u/__test/inspect" >"$D/do-new/$i.json"
    # The IDs differ by design (another namespace); everything else must be equal.
    [ "$(cut -c1-75 "$D/do-new/$i.json")" = "$(cut -c1-75 "$D/do-before/$i.json")" ] && same_id=$((same_id + 1))
    sed -i 's/^{"id":"[0-9a-f]*",/{/' "$D/do-new/$i.json"
    sed 's/^{"id":"[0-9a-f]*",/{/' "$D/do-before/$i.json" >"$D/do-new/$i.before"
  done
  s=OK
  for i in "${DO_SAMPLE[@]}"; do cmp -s "$D/do-new/$i.json" "$D/do-new/$i.before" || { s=DIFFERENT; fail=1; }; done
  [ "$same_id" -eq 0 ] || { s="SAME IDS ($same_id): not another namespace"; fail=1; }
  printf '  do: %d sampled objects, by name in the new namespaces (new IDs), values, tables and alarms as before: %s\n' "${#DO_SAMPLE[@]}" "$s"
  n_new=$(find "$D/do-state-new" -name '*.sqlite' | grep -Ec '/[0-9a-f]{64}\.sqlite$' || true)
  [ "$n_new" -eq "$DO_OBJECTS" ] && s=OK || { s="$n_new, want $DO_OBJECTS"; fail=1; }
  printf '  do: objects in the new account: %s\n' "$s"
fi
n_scripts=$(find "$D/new-account-config/scripts" -name '*.json' 2>/dev/null | wc -l)
[ "$n_scripts" -gt 0 ] && [ -s "$D/new-account-config/inventory.json" ] && s=OK || { s=MISSING; fail=1; }
printf '  config: %d Workers script(s) and the inventory written for redeployment: %s\n' "$n_scripts" "$s"

step "Measured recovery time into a new account (RTO)"
printf '  d1 (new database, --location-hint weur, %s users): %s s\n' "$USERS" "$n_d1"
[ "$R2_MB" -gt 0 ] && printf '  r2 (%s objects, %s MiB, into a new empty bucket): %s s\n' "$R2_OBJECTS" "$R2_MB" "$n_r2"
[ "$DO_OBJECTS" -gt 0 ] && printf '  do (%s Durable Objects, by name into new namespaces): %s s\n' "$DO_OBJECTS" "$n_do"
printf '  config (Workers configuration written out):  %s s\n' "$n_cfg"
printf '  total (every restore into the new account):  %s s   (target: RTO < 3600 s; %s cores)\n' "$n_total" "$(nproc)"
[ $fail -eq 0 ] || { echo "DRILL FAILED: the new account's data differs"; exit 1; }
