#!/usr/bin/env bash
# R2 benchmark: cfbackup against `rclone copy` + `restic backup` (and `restic restore` + `rclone copy`
# back up), side by side against one loopback S3 server (versitygw) holding a bucket of
# BENCH_R2_OBJECTS objects (default 2000) totalling BENCH_R2_SIZE bytes (default 1 GiB; ~63 % text,
# ~37 % random). Both tools keep their repository in a local directory. Reports wall time, objects/s,
# peak RSS (/usr/bin/time) and, for cfbackup, the object body GETs it made.
# Needs: versitygw (scripts/install-versitygw.sh), rclone and restic (Debian packages: CFBACKUP_BENCH_TOOLS=1 scripts/install-tools.sh).
# BENCH_R2_LINK=1: slow-link mode. cfbackup reaches the server through scripts/slowlink (a TCP proxy
# with BENCH_R2_LINK_RTT_MS round trip, default 20, BENCH_R2_LINK_MBPS MB/s each way shared by all
# connections, default 50, and BENCH_R2_LINK_CONN_MBPS MB/s per connection, default 12.5); only the
# full backup and the restore run, and the figure is the share of the link's rate they used.
# BENCH_OUT=dir: also append the figures to dir/r2.tsv (scripts/bench-lib.sh) for scripts/bench-summary.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
N=${BENCH_R2_OBJECTS:-2000}; SIZE=${BENCH_R2_SIZE:-1073741824}; LINK=${BENCH_R2_LINK:-0}
for t in rclone restic /usr/bin/time; do command -v "$t" >/dev/null || { echo "bench-r2: $t missing (apt-get install rclone restic time)"; exit 1; }; done
D=$(mktemp -d /tmp/cfbackup-bench-r2.XXXXXX); B=$D/bin # binaries are built here, never into .bin/
VGW=${CFBACKUP_VERSITYGW:-$PWD/.bin/versitygw}; [ -x "$VGW" ] || VGW=$(command -v versitygw)
GW=; PX=
trap 'kill $GW $PX 2>/dev/null || true; rm -rf "$D"' EXIT
go build -trimpath -o "$B/cfbackup" ./cmd/cfbackup
# CFBACKUP_BENCH_BIN: another cfbackup binary to measure (say, a build of the previous commit).
CFB=${CFBACKUP_BENCH_BIN:-$B/cfbackup}
go build -o "$B/r2seed" ./scripts/r2seed
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
AK=bench$RANDOM; SK=$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n')
mkdir -p "$D/gw" "$D/gwv"
ROOT_ACCESS_KEY=$AK ROOT_SECRET_KEY=$SK "$VGW" --port 127.0.0.1:$PORT --health /healthz --quiet posix --versioning-dir "$D/gwv" "$D/gw" >"$D/gw.log" 2>&1 &
GW=$!
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
EP=http://127.0.0.1:$PORT
CEP=$EP # the endpoint cfbackup uses
if [ "$LINK" = 1 ]; then
  RATE=${BENCH_R2_LINK_MBPS:-50}; CRATE=${BENCH_R2_LINK_CONN_MBPS:-12.5}; RTT=${BENCH_R2_LINK_RTT_MS:-20}
  go build -o "$B/slowlink" ./scripts/slowlink
  "$B/slowlink" -target 127.0.0.1:$PORT -rate "${RATE}e6" -conn-rate "${CRATE}e6" -rtt "${RTT}ms" -addr-file "$D/px.addr" &
  PX=$!
  for _ in $(seq 100); do [ -s "$D/px.addr" ] && break; sleep 0.1; done
  CEP=http://$(cat "$D/px.addr")
fi
seed() { "$B/r2seed" -endpoint "$EP" -access-key "$AK" -secret-key "$SK" "$@"; }
seed -bucket src -objects "$N" -size "$SIZE" -create
for b in dst-cfb dst-restic; do seed -bucket $b -objects 0 -create; done

export CFBACKUP_REPOSITORY=$D/repo CFBACKUP_IDENTITY_FILE=$D/key.txt CFBACKUP_WRITER_KEY_FILE=$D/w.key
export CFBACKUP_R2_ENDPOINT=$CEP CFBACKUP_R2_ACCESS_KEY_ID=$AK CFBACKUP_R2_SECRET_ACCESS_KEY=$SK
R=$("$CFB" key generate -o "$D/key.txt" 2>/dev/null)
"$CFB" init --recipient "$R" >/dev/null
unset AWS_CA_BUNDLE
export RCLONE_CONFIG_S_TYPE=s3 RCLONE_CONFIG_S_PROVIDER=Other RCLONE_CONFIG_S_ENDPOINT=$EP RCLONE_CONFIG_S_ACCESS_KEY_ID=$AK RCLONE_CONFIG_S_SECRET_ACCESS_KEY=$SK
RC="rclone --expect-continue-timeout 0 --transfers 8 --checkers 16"
export RESTIC_PASSWORD=bench RESTIC_REPOSITORY=$D/restic
restic init -q

size=$(du -sb "$D/gw/src" | cut -f1)
maxobj=$(find "$D/gw/src" -type f -printf '%s\n' | sort -n | tail -1)
printf 'Bucket: %d objects, %d MiB (largest %d MiB) on a loopback versitygw; %s cores; load average before: %s\n' "$N" $((size/1048576)) $((maxobj/1048576)) "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
[ "$LINK" = 1 ] && printf 'cfbackup through a slow link: %s ms round trip, %s MB/s each way, %s MB/s per connection\n' "$RTT" "$RATE" "$CRATE"
echo
declare -A T C K
# gwcpu prints the S3 server's CPU seconds so far (user+system, from /proc), so each step's server
# cost is known apart from the tool's: on a loaded machine CPU seconds vary less than wall time.
gwcpu() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); print ($12+$13)/hz }' "/proc/$GW/stat"; }
measure() { # key label command...
  local key=$1 label=$2; shift 2
  # Flush what earlier steps wrote, so the kernel's writeback of it does not land inside this step
  # (it takes CPU from whichever tool runs then: the same for every tool).
  sync
  local g0; g0=$(gwcpu)
  /usr/bin/time -f "%e %M %U %S" -o "$D/time" "$@" >"$D/out" 2>"$D/err" || { cat "$D/err"; exit 1; }
  read -r secs kb us ss <"$D/time"
  T[$key]=$secs K[$key]=$((kb/1024))
  local sc; sc=$(echo "$(gwcpu)-$g0" | bc -l)
  C[$key]=$(echo "$us+$ss+$sc" | bc -l)
  local gets; gets=$(grep -o ' gets=[0-9]*' "$D/err" | tail -1 | cut -d= -f2 || true)
  local rg; rg=$(grep -o 'range_gets=[0-9]*' "$D/err" | tail -1 | cut -d= -f2 || true)
  printf '%-34s %7.2f s  %8.0f objects/s  peak RSS %4d MiB  CPU %6.2f s  server CPU %6.2f s%s\n' "$label" "$secs" "$(echo "$N/$secs" | bc -l)" $((kb/1024)) \
    "$(echo "$us+$ss" | bc -l)" "$sc" "${gets:+  body GETs $gets}${rg:+ (+$rg ranged)}"
}
GIB=$(awk -v s="$SIZE" 'BEGIN { if (s >= 1073741824) printf "%g GiB", s / 1073741824; else printf "%g MiB", s / 1048576 }')
if [ -n "${BENCH_R2_AB:-}" ]; then
  # A/B mode: BENCH_R2_AB names another cfbackup binary (say, main's build); each of BENCH_R2_ROUNDS
  # rounds (default 2) runs its full backup and restore, then this build's, each into a new
  # repository and a new bucket, so both meet the same bucket and machine load in turn. rclone and
  # restic do not run. BENCH_R2_PROF=dir: CPU profiles of every run land there;
  # BENCH_R2_AB_RESTORE=0: backups only.
  for r in $(seq "${BENCH_R2_ROUNDS:-2}"); do
    for who in a b; do
      bin=$BENCH_R2_AB; [ $who = b ] && bin=$CFB
      export CFBACKUP_REPOSITORY=$D/repo-$who-$r CFBACKUP_WRITER_KEY_FILE=$D/w-$who-$r.key
      "$bin" init --recipient "$R" >/dev/null
      seed -bucket "dst-$who-$r" -objects 0 -create
      pe=(); [ -n "${BENCH_R2_PROF:-}" ] && pe=(CFBACKUP_CPUPROFILE="$BENCH_R2_PROF/backup-$who-$r.prof")
      measure "b$who$r" "$who round $r: backup (full)" env "${pe[@]}" "$bin" backup --component r2 --r2-bucket src --no-progress
      [ -n "${BENCH_R2_PROF:-}" ] && pe=(CFBACKUP_CPUPROFILE="$BENCH_R2_PROF/restore-$who-$r.prof")
      [ "${BENCH_R2_AB_RESTORE:-1}" = 0 ] || measure "r$who$r" "$who round $r: restore → bucket" env "${pe[@]}" "$bin" restore latest --component r2 --to-bucket "dst-$who-$r" --no-progress
      rm -rf "$CFBACKUP_REPOSITORY" "$D/gw/dst-$who-$r"
    done
  done
  printf 'load average after: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
  exit 0
fi
if [ "$LINK" = 1 ]; then
  measure cfb_full "cfbackup backup (full)"     "$CFB" backup --component r2 --r2-bucket src --no-progress
  measure cfb_rest "cfbackup restore → bucket"  "$CFB" restore latest --component r2 --to-bucket dst-cfb --no-progress
  echo
  for k in cfb_full cfb_rest; do
    what=backup; [ $k = cfb_rest ] && what=restore
    mbs=$(awk -v s="$size" -v t="${T[$k]}" 'BEGIN { printf "%.1f", s / 1e6 / t }')
    share=$(bench_ratio "$mbs" "$RATE")
    printf '%s over the link: %s MB/s of %s MB/s = %.0f %% of the link (target ≥ 80 %%)\n' "$what" "$mbs" "$RATE" "$(echo "$share*100" | bc -l)"
    bench_row r2 "R2 $what, $GIB, slow link (${RTT} ms, ${CRATE} MB/s a connection): share of the link" "$mbs" "MB/s" "link rate" "$RATE" "$share" ">=0.80" "${T[$k]} s, peak RSS ${K[$k]} MiB"
  done
  printf 'load average after: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
  exit 0
fi
measure cfb_full  "cfbackup backup (full)"            env ${BENCH_ENV:-} "$CFB" backup --component r2 --r2-bucket src --no-progress
measure cfb_noop  "cfbackup backup (no change)"       "$CFB" backup --component r2 --r2-bucket src --no-progress
seed -bucket src -objects "$N" -size "$SIZE" -mutate 5 -seed 2
measure cfb_inc   "cfbackup backup (5 % changed)"     "$CFB" backup --component r2 --r2-bucket src --no-progress
measure cfb_rest  "cfbackup restore → bucket"         "$CFB" restore latest --component r2 --to-bucket dst-cfb --no-progress

measure cfb_one   "cfbackup restore one object"       "$CFB" restore latest --component r2 --key data/07/object-00007 --to-dir "$D/one" --no-progress
measure rc_down   "rclone copy bucket → dir"          $RC copy s:src "$D/mirror"
measure rs_back   "restic backup dir"                 restic backup -q "$D/mirror"
measure rs_rest   "restic restore → dir"              restic restore -q latest --target "$D/rr"
measure rc_up     "rclone copy dir → bucket"          $RC copy "$D/rr$D/mirror" s:dst-restic
echo
b1=$(echo "${T[rc_down]}+${T[rs_back]}" | bc -l); r1=$(echo "${T[rs_rest]}+${T[rc_up]}" | bc -l)
printf 'backup:  cfbackup %.2f s vs rclone+restic %.2f s  (ratio %.2f; target ≤ 0.4)\n' "${T[cfb_full]}" "$b1" "$(echo "${T[cfb_full]}/$b1" | bc -l)"
printf 'restore: cfbackup %.2f s vs restic+rclone %.2f s  (ratio %.2f; target ≤ 0.4)\n' "${T[cfb_rest]}" "$r1" "$(echo "${T[cfb_rest]}/$r1" | bc -l)"
cb=$(echo "${C[rc_down]}+${C[rs_back]}" | bc -l); cr=$(echo "${C[rs_rest]}+${C[rc_up]}" | bc -l)
printf 'CPU (tool + server), less sensitive to other load: backup %.1f s vs %.1f s (ratio %.2f), restore %.1f s vs %.1f s (ratio %.2f)\n' \
  "${C[cfb_full]}" "$cb" "$(echo "${C[cfb_full]}/$cb" | bc -l)" "${C[cfb_rest]}" "$cr" "$(echo "${C[cfb_rest]}/$cr" | bc -l)"
printf 'no-change incremental: %.2f s (target < 2 s)\n' "${T[cfb_noop]}"
printf 'load average after: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
bench_row r2 "R2 backup, $GIB ($N objects): wall time" "${T[cfb_full]}" s "rclone copy + restic backup" "$b1" "$(bench_ratio "${T[cfb_full]}" "$b1")" "<=0.40" "peak RSS ${K[cfb_full]} MiB (restic ${K[rs_back]} MiB)"
bench_row r2 "R2 restore → bucket, $GIB ($N objects): wall time" "${T[cfb_rest]}" s "restic restore + rclone copy" "$r1" "$(bench_ratio "${T[cfb_rest]}" "$r1")" "<=0.40" "peak RSS ${K[cfb_rest]} MiB (restic ${K[rs_rest]} MiB)"
ct=$(printf %.1f "$(echo "${C[cfb_full]}+${C[cfb_rest]}" | bc -l)"); cref=$(printf %.1f "$(echo "$cb+$cr" | bc -l)")
bench_row r2 "R2 backup + restore, $GIB: CPU seconds (tool + server)" "$ct" "CPU s" "rclone + restic" "$cref" "$(bench_ratio "$ct" "$cref")" "-"
bench_row r2 "R2 backup, $GIB, no change: wall time" "${T[cfb_noop]}" s "target" 2 "$(bench_ratio "${T[cfb_noop]}" 2)" "<=1.00"
