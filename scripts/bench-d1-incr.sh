#!/usr/bin/env bash
# What an incremental (content-defined chunks) D1 backup uploads, for docs/D1.md "Incremental
# backups": seeds a database on the emulated account (cmd/cfemu, internal/seed), takes a full backup,
# then a backup with nothing changed, then one after 1 % of the users' rows were updated at random,
# then one after 1 % of the rows of every table changed (users and user_groups updated at random, new
# auth_events appended), and prints the bytes each run added to the repository (segments, chunk
# index, manifest, audit record) as a percentage of the full backup's. Then it times
# `restore --to-file` of the last snapshot against the same restore by cfbackup built from BENCH_BASE
# (its own full backup of the same data), alternating, BENCH_RUNS rounds.
#   BENCH_USERS  users to seed (default 100000: a 265 MiB SQLite file, a 305 MB dump)
#   BENCH_BASE   git revision to compare restore speed with (default main; empty: skip)
#   BENCH_RUNS   restore rounds (default 3)
#   BENCH_KEEP   set: keep the temporary directory (repositories, binaries) and print its name
# Binaries are built into a temporary directory, never into .bin/.
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${BENCH_USERS:-100000}
BASE=${BENCH_BASE-main}
RUNS=${BENCH_RUNS:-3}
D=$(mktemp -d /tmp/cfbackup-bench-incr.XXXXXX)
EMU=
trap '[ -n "$EMU" ] && kill $EMU 2>/dev/null; [ -n "${BENCH_KEEP:-}" ] || rm -rf "$D"' EXIT
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
bench_d1_setup "$D" "$USERS" "$BASE"
dbs=("$D"/emu/d1/*/db.sqlite); db=${dbs[0]}
echo "D1 database: $USERS users, $(($(stat -c %s "$db") / 1048576)) MiB SQLite file"
full=0
field() { # NAME: the sum of a number the backups' "D1 dump chunked" log lines give
  grep -o " $1=[0-9]*" "$D/b.err" | cut -d= -f2 | paste -sd+ | bc
}
backup() { # label: one backup; prints the bytes it added to the repository
  local before after secs
  before=$(du -sb "$D/repo" | cut -f1)
  /usr/bin/time -f %e -o "$D/t" "$B/cfbackup" backup --no-progress --json >"$D/b.json" 2>"$D/b.err" || { cat "$D/b.err" >&2; exit 1; }
  secs=$(cat "$D/t")
  after=$(du -sb "$D/repo" | cut -f1)
  local added=$((after - before))
  [ "$full" -gt 0 ] || full=$added
  printf '%-44s %10d bytes  %6.2f %% of the full backup  (%s s; chunks stored: %s of %s; list chunks stored: %s of %s)\n' "$1" "$added" \
    "$(echo "100 * $added / $full" | bc -l)" "$secs" "$(field stored)" "$(field chunks)" "$(field lists_stored)" "$(field lists)"
  bench_row d1-incr "$1" "$added" bytes "full backup" "$full" "$(bench_ratio "$added" "$full")" -
}
backup "full"
backup "no change"
sqlite3 "$db" "UPDATE users SET profile = json_set(coalesce(profile, '{}'), '\$.seen', strftime('%s','now')),
  updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now')
  WHERE rowid IN (SELECT rowid FROM users ORDER BY random() LIMIT (SELECT count(*) / 100 FROM users))"
backup "1 % of users updated (random rows)"
sqlite3 "$db" "UPDATE users SET profile = json_set(coalesce(profile, '{}'), '\$.seen', 2)
    WHERE rowid IN (SELECT rowid FROM users ORDER BY random() LIMIT (SELECT count(*) / 100 FROM users));
  UPDATE user_groups SET role = CASE role WHEN 'admin' THEN 'member' ELSE 'admin' END
    WHERE rowid IN (SELECT rowid FROM user_groups ORDER BY random() LIMIT (SELECT count(*) / 100 FROM user_groups));
  INSERT INTO auth_events(user_id, event_type, ip, user_agent, at)
    SELECT id, 'login', '10.0.0.1', 'bench', strftime('%Y-%m-%dT%H:%M:%fZ','now') FROM users ORDER BY random()
    LIMIT (SELECT count(*) / 100 FROM auth_events)"
backup "1 % of every table (updates + appends)"
[ -n "$BASE" ] || exit 0
# Restore speed: the chunked incremental just taken against BASE's restore of its own full backup.
[ -z "${BENCH_KEEP:-}" ] || echo "kept: $D"
export CFBACKUP_WRITER_KEY_FILE=$D/wb.key
R=$(sed -n 's/^# public key: //p' "$D/key.txt")
CFBACKUP_REPOSITORY=$D/repob "$B/cfbackup-base" init --recipient "$R" >/dev/null
CFBACKUP_REPOSITORY=$D/repob "$B/cfbackup-base" backup --no-progress >/dev/null 2>&1
: >"$D/t.new"; : >"$D/t.base"
for i in $(seq "$RUNS"); do
  rm -f "$D"/r*.sqlite
  /usr/bin/time -f %e -o "$D/t" env CFBACKUP_REPOSITORY="$D/repob" "$B/cfbackup-base" restore latest --to-file "$D/rb.sqlite" --no-progress >/dev/null 2>&1
  cat "$D/t" >>"$D/t.base"
  /usr/bin/time -f %e -o "$D/t" env CFBACKUP_REPOSITORY="$D/repo" CFBACKUP_WRITER_KEY_FILE="$D/w.key" "$B/cfbackup" restore latest --to-file "$D/rn.sqlite" --no-progress >/dev/null 2>&1
  cat "$D/t" >>"$D/t.new"
  printf 'restore --to-file round %d: %s %s s, chunked incremental %s s\n' "$i" "$BASE" "$(tail -1 "$D/t.base")" "$(tail -1 "$D/t.new")"
done
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
b=$(median <"$D/t.base"); n=$(median <"$D/t.new")
printf 'restore --to-file median: %s %s s, chunked %s s (ratio %.2f)\n' "$BASE" "$b" "$n" "$(echo "$n / $b" | bc -l)"
