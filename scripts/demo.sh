#!/usr/bin/env bash
# The whole cfbackup story on an emulated Cloudflare account (cfemu) on loopback: no account, no Docker.
# make demo runs it after building .bin/cfbackup and .bin/cfemu. DEMO_USERS scales the seeded database.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/.bin
D=$PWD/demo
USERS=${DEMO_USERS:-2000}
rm -rf "$D"; mkdir -p "$D"
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "Start an emulated Cloudflare account with a D1 database 'app' ($USERS users, OIDC-provider shaped)"
"$BIN/cfemu" --listen 127.0.0.1:0 --data-dir "$D/emu" --seed app --seed-users "$USERS" --env-file "$D/emu.env" >"$D/cfemu.log" 2>&1 &
EMU=$!
trap 'kill $EMU 2>/dev/null || true' EXIT
for _ in $(seq 600); do [ -s "$D/emu.env" ] && break; kill -0 $EMU 2>/dev/null || { cat "$D/cfemu.log"; exit 1; }; sleep 0.1; done
[ -s "$D/emu.env" ] || { echo "cfemu did not start"; cat "$D/cfemu.log"; exit 1; }
# shellcheck disable=SC1091
. "$D/emu.env"
grep -v TOKEN "$D/emu.env"

export CFBACKUP_REPOSITORY="$D/repo" CFBACKUP_IDENTITY_FILE="$D/key.txt" CFBACKUP_WRITER_KEY_FILE="$D/writer.key"

step "cfbackup key generate -o demo/key.txt"
RECIPIENT=$("$BIN/cfbackup" key generate -o "$D/key.txt")
echo "$RECIPIENT"

step "cfbackup init --recipient age1…"
"$BIN/cfbackup" init --recipient "$RECIPIENT"

step "cfbackup backup --label demo=true"
"$BIN/cfbackup" backup --label demo=true

step "cfbackup list"
"$BIN/cfbackup" list
UUID=$("$BIN/cfbackup" list --json | grep -o '"id": "[0-9a-f-]\{36\}"' | head -1 | sed 's/.*"\([0-9a-f-]*\)"$/\1/')
ORIG="$D/emu/d1/$UUID/db.sqlite"

step "cfbackup verify latest --read-data"
"$BIN/cfbackup" verify latest --read-data

step "cfbackup restore latest --d1-database app --to-file demo/app.sqlite"
"$BIN/cfbackup" restore latest --d1-database app --to-file "$D/app.sqlite"

step "cfbackup restore latest --d1-database app --to-database app-restored --create"
"$BIN/cfbackup" restore latest --d1-database app --to-database app-restored --create --json >"$D/restore.json"
NEWUUID=$(grep -o '"UUID": "[0-9a-f-]\{36\}"' "$D/restore.json" | head -1 | sed 's/.*"\([0-9a-f-]*\)"$/\1/')
grep -E '"(files|bytes|final_bookmark)"' "$D/restore.json" || true

step "Check: every table of the original equals the restored file and the restored D1 database (sqlite3)"
fail=0
for t in users groups user_groups oidc_clients auth_events; do
  cols=$(sqlite3 "$ORIG" "SELECT group_concat('quote(\"'||name||'\")', '||'',''||') FROM pragma_table_info('$t')")
  q="SELECT count(*)||' '||coalesce(sum(length($cols)),0) FROM \"$t\""
  h() { sqlite3 "$1" "SELECT $cols FROM \"$t\" ORDER BY rowid" | sha256sum | cut -c1-16; }
  a=$(h "$ORIG"); b=$(h "$D/app.sqlite"); c=$(h "$D/emu/d1/$NEWUUID/db.sqlite")
  n=$(sqlite3 "$ORIG" "SELECT count(*) FROM \"$t\"")
  if [ "$a" = "$b" ] && [ "$a" = "$c" ]; then s=OK; else s=DIFFERENT; fail=1; fi
  printf '  %-14s %8s rows  original %s  file %s  d1 %s  %s\n' "$t" "$n" "$a" "$b" "$c" "$s"
  : "$q"
done
fts=$(sqlite3 "$D/app.sqlite" "SELECT count(*) FROM users_fts WHERE users_fts MATCH 'example'")
echo "  FTS5 search in the restored file: $fts match(es)"
[ "$fts" -gt 0 ] || fail=1
sqlite3 "$D/app.sqlite" "PRAGMA integrity_check" | grep -qx ok || fail=1

step "Summary"
du -sh "$D/repo" | sed 's/^/  repository size: /'
if [ $fail -ne 0 ]; then echo "  DEMO FAILED: restored data differs"; exit 1; fi
echo "  Backed up, listed, verified (read-data), restored to a file and to a new D1 database: all identical."
