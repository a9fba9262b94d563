# shellcheck shell=bash
# Sourced by the bench scripts: bench_row appends one figure to $BENCH_OUT/<file>.tsv (nothing when
# BENCH_OUT is unset) for scripts/bench-summary.sh, which renders every file as one Markdown table.
# Columns (tab-separated): figure, ours, unit, reference (what it is), reference value, ratio,
# target (on the ratio: "<=0.40" or ">=0.80"; "-" for none), pass (yes/no/-), load average (now, or
# BENCH_LOAD: the load when a parsed figure was measured), note.
#   bench_row FILE FIGURE OURS UNIT REFNAME REFVALUE RATIO TARGET [NOTE]
bench_row() {
  [ -n "${BENCH_OUT:-}" ] || return 0
  local file=$1 figure=$2 ours=$3 unit=$4 refname=$5 ref=$6 ratio=$7 target=$8 note=${9:-} pass=-
  case $target in
    '<='*) pass=$(awk -v r="$ratio" -v t="${target#<=}" 'BEGIN { print (r + 0 <= t + 0) ? "yes" : "no" }') ;;
    '>='*) pass=$(awk -v r="$ratio" -v t="${target#>=}" 'BEGIN { print (r + 0 >= t + 0) ? "yes" : "no" }') ;;
  esac
  mkdir -p "$BENCH_OUT"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$figure" "$ours" "$unit" "$refname" "$ref" "$ratio" "$target" "$pass" \
    "${BENCH_LOAD:-$(cut -d' ' -f1 /proc/loadavg)}" "$note" >>"$BENCH_OUT/$file.tsv"
}
# bench_ratio A B prints A/B with 2 decimals.
bench_ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }

# bench_d1_setup DIR USERS [BASE]: what the D1 benchmarks share — builds cfbackup and cfemu into
# DIR/bin (B), and cfbackup-base from the git revision BASE when given; starts the emulated account
# seeded with USERS users (EMU: its pid, for the caller's trap), loads its environment and makes a
# repository in DIR/repo with a fresh identity and writer key.
bench_d1_setup() {
  local dir=$1 users=$2 base=${3:-} r
  B=$dir/bin
  go build -trimpath -o "$B/cfbackup" ./cmd/cfbackup
  go build -trimpath -o "$B/cfemu" ./cmd/cfemu
  if [ -n "$base" ]; then
    mkdir -p "$dir/base"
    git archive "$base" | tar -x -C "$dir/base"
    (cd "$dir/base" && go build -trimpath -o "$B/cfbackup-base" ./cmd/cfbackup)
  fi
  "$B/cfemu" --listen 127.0.0.1:0 --data-dir "$dir/emu" --seed app --seed-users "$users" --env-file "$dir/env" >"$dir/emu.log" 2>&1 &
  # shellcheck disable=SC2034 # the caller's trap kills it
  EMU=$!
  for _ in $(seq 6000); do [ -s "$dir/env" ] && break; sleep 0.1; done
  # shellcheck disable=SC1091
  . "$dir/env"
  export CFBACKUP_REPOSITORY=$dir/repo CFBACKUP_IDENTITY_FILE=$dir/key.txt CFBACKUP_WRITER_KEY_FILE=$dir/w.key
  r=$("$B/cfbackup" key generate -o "$dir/key.txt" 2>/dev/null)
  "$B/cfbackup" init --recipient "$r" >/dev/null
}
