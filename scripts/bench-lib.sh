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
