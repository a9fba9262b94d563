#!/usr/bin/env bash
# Scale benchmark of R2 incrementals (docs/R2.md, "Scale"): for each N, a synthetic parent snapshot of
# N objects (setup), then a no-change incremental, the plan of a restore of one key from it (restore1:
# its "gets" are the catalogue objects it opens), a 5 %-changed incremental, verify --read-data of the
# newest and a prune that keeps only it, each phase in its own process under /usr/bin/time for wall
# time and peak RSS; requests are counted by the benchmark's server (bucket listing and GETs).
#   scripts/bench-scale.sh [--old REV] [N...]     (default N: 100000 1000000)
# --old REV measures the code of REV on the same harness: the harness and an index shim (format 2
# when REV has pkg/source/r2/indexv2.go, else format 1) are copied into a checkout of REV made with
# git archive. CFBACKUP_SCALE_PHASES overrides the phases (e.g. "setup nochange").
set -euo pipefail
cd "$(dirname "$0")/.."
tree=. label=current
if [ "${1:-}" = --old ]; then
	rev=${2:?--old needs a revision}; shift 2
	tree=$(mktemp -d); label="old ($rev)"
	git archive "$rev" | tar -x -C "$tree"
	cp pkg/source/r2/scale_test.go "$tree/pkg/source/r2/"
	if [ -f "$tree/pkg/source/r2/indexv2.go" ]; then
		cp pkg/source/r2/scale_shim_test.go "$tree/pkg/source/r2/"
	else
		cp scripts/benchscale/scale_shim_v1.go.txt "$tree/pkg/source/r2/scale_shim_test.go"
	fi
fi
ns=("$@")
[ ${#ns[@]} -gt 0 ] || ns=(100000 1000000)
work=$(mktemp -d)
trap 'rm -rf "$work"; [ "$tree" = . ] || rm -rf "$tree"' EXIT
(cd "$tree" && go test -c -o "$work/r2.test" ./pkg/source/r2)
printf '%s\n' "code: $label"
printf '%-9s %-9s %9s %8s %12s %9s %9s %8s\n' N phase wall_s cpu_s peak_rss_MiB listed gets fetched
for n in "${ns[@]}"; do
	dir="$work/n$n"; mkdir -p "$dir"
	for phase in ${CFBACKUP_SCALE_PHASES:-setup nochange restore1 changed verify prune}; do
		out=$(cd "$dir" && CFBACKUP_SCALE_PHASE=$phase CFBACKUP_SCALE_N=$n CFBACKUP_SCALE_DIR=$dir \
			/usr/bin/time -f 'TIME %e %M %U %S' "$work/r2.test" -test.run '^TestScale$' -test.timeout 180m 2>&1) || { echo "$out" >&2; exit 1; }
		line=$(grep '^SCALE ' <<<"$out" | sed 's/^SCALE //')
		read -r _ wall rss usr sys < <(grep '^TIME ' <<<"$out")
		printf '%-9s %-9s %9s %8s %12s %9s %9s %8s\n' "$n" "$phase" "$wall" "$(awk -v a="$usr" -v b="$sys" 'BEGIN { print a + b }')" "$((rss / 1024))" \
			"$(jq -r '.list_requests' <<<"$line")" "$(jq -r '.get_requests' <<<"$line")" "$(jq -r '.fetched' <<<"$line")"
	done
	rm -rf "$dir"
done
