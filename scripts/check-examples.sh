#!/usr/bin/env bash
# shellcheck disable=SC2317,SC2016 # check_* are called by name; mutations are literal sed text
# Checks every example under examples/ with a real validator (docs/SCHEDULING.md "How the examples are
# checked"); `make test` runs it with --mutants.
#
#   scripts/check-examples.sh            validate examples/
#   scripts/check-examples.sh --mutants  also break a copy of each example in a known way (one
#                                        mutation per validator and more) and require its validator
#                                        to reject it: a validator that passes everything proves nothing
#
# Validators: systemd-analyze verify (Debian systemd; works without systemd as PID 1) with no output
# allowed, shellcheck on every shell script and on the shell of ExecStart= and crontab lines,
# cron-parser's crontab file parser, actionlint, gitlab-ci-local (GitLab's CI JSON schema, offline),
# kubernetes-models (Kubernetes OpenAPI schemas), promtool check rules + test rules, and cfbackup itself
# (built from this tree) parsing every command line the examples run. `make tools`
# (scripts/install-tools.sh) installs them; a missing one is an error, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$ROOT/.bin
VAL=$ROOT/scripts/validators
export PATH="$BIN:$PATH"

need() {
	local t
	for t in systemd-analyze shellcheck node git actionlint promtool jq go; do
		command -v "$t" >/dev/null || { echo "check-examples: $t not found: run make tools (scripts/install-tools.sh)" >&2; exit 1; }
	done
	[ -x "$VAL/node_modules/.bin/gitlab-ci-local" ] || { echo "check-examples: scripts/validators/node_modules missing: run make tools" >&2; exit 1; }
}

# Each check_* takes an examples directory, prints what is wrong and returns non-zero when invalid.

check_systemd() {
	local d=$1/systemd t out rc=0 f
	t=$(mktemp -d)
	cp "$d"/*.service "$d"/*.timer "$t"/
	# Any output (an unknown key or section is only a warning with exit 0) counts as a failure.
	out=$(cd "$t" && systemd-analyze verify ./*.service ./*.timer 2>&1) || rc=1
	[ -z "$out" ] || { printf '%s\n' "$out"; rc=1; }
	# The shell of each ExecStart=/bin/sh -c '…': systemd's $$ and %% undone, then shellcheck.
	for f in "$t"/*.service; do
		sed -n "s/^ExecStart=\/bin\/sh -c '\(.*\)'.*$/\1/p" "$f" | sed 's/\$\$/$/g; s/%%/%/g; s/\\\\/\\/g' >"$f.bodies"
		[ -s "$f.bodies" ] || { echo "${f##*/}: no ExecStart=/bin/sh -c '…'"; rc=1; }
		local i=0 body
		while IFS= read -r body; do
			i=$((i + 1))
			printf '#!/bin/sh\n%s\n' "$body" >"$f.$i.sh"
			shellcheck -s sh "$f.$i.sh" || rc=1
		done <"$f.bodies"
	done
	grep -q 'exec /usr/bin/cfbackup backup' "$t"/cfbackup-backup.service.bodies || { echo "cfbackup-backup.service does not run /usr/bin/cfbackup backup"; rc=1; }
	rm -rf "$t"
	return "$rc"
}

check_cron() {
	local d=$1/cron t rc=0
	t=$(mktemp -d)
	node "$VAL/validate.mjs" crontab "$d/crontab" "$t/commands.sh" || rc=1
	[ ! -s "$t/commands.sh" ] || shellcheck -s sh "$t/commands.sh" || rc=1
	shellcheck "$d/cfbackup-cron" || rc=1
	rm -rf "$t"
	return "$rc"
}

check_kubernetes() {
	node "$VAL/validate.mjs" kubernetes "$1"/kubernetes/*.yaml
}

check_github() {
	actionlint "$1"/github-actions/*.yml
}

check_gitlab() {
	local t rc=0 gcl=$VAL/node_modules/.bin/gitlab-ci-local out
	t=$(mktemp -d)
	cp "$1/gitlab-ci/.gitlab-ci.yml" "$t/"
	(cd "$t" && git init -q && git add -A && git -c user.name=check -c user.email=check@localhost commit -qm check &&
		git remote add origin https://gitlab.invalid/ops/cfbackup.git)
	# --list validates the file against GitLab's CI JSON schema (bundled, offline) and evaluates rules:
	# a scheduled backup pipeline must contain the backup job, a verify one the verify job.
	for task in backup verify; do
		if ! out=$(cd "$t" && GCL_IGNORE_PREDEFINED_VARS=CI_PIPELINE_SOURCE "$gcl" --list \
			--variable CI_PIPELINE_SOURCE=schedule --variable CFBACKUP_TASK="$task" 2>&1); then
			printf '%s\n' "$out" | grep -v -e '^fatal:' -e 'git symbolic-ref' -e 'default remote branch'
			rc=1
			break
		fi
		printf '%s\n' "$out" | grep -q "^$task " || { echo "gitlab-ci: a schedule with CFBACKUP_TASK=$task runs no $task job"; rc=1; }
	done
	rm -rf "$t"
	return "$rc"
}

check_prometheus() {
	local d=$1/prometheus
	promtool check rules "$d/cfbackup-alerts.yml" || return 1
	(cd "$d" && promtool test rules cfbackup-alerts.test.yml)
}

# Every cfbackup command line in the examples, parsed by the real binary: unknown flags, bad durations
# and wrong subcommands fail (`--help` after the arguments stops before the command runs).
check_flags() {
	local d=$1 line rc=0 a n=0
	local files=("$d"/cron/crontab "$d"/systemd/*.service "$d"/kubernetes/*.yaml "$d"/github-actions/*.yml "$d"/gitlab-ci/.gitlab-ci.yml)
	while IFS= read -r line; do
		mapfile -t a < <(jq -r '.args[]' <<<"$line")
		n=$((n + 1))
		if ! err=$("$CFBACKUP" "${a[@]}" --help 2>&1 >/dev/null); then
			echo "$(jq -r .file <<<"$line"): cfbackup ${a[*]}: $err"
			rc=1
		fi
	done < <(node "$VAL/validate.mjs" commands "${files[@]}")
	[ "$n" -gt 0 ] || { echo "no cfbackup command lines found in $d"; rc=1; }
	return "$rc"
}

CHECKS=(systemd cron kubernetes github gitlab prometheus flags)

validate() { # examples dir; prints one line per validator
	local dir=$1 c bad=0
	for c in "${CHECKS[@]}"; do
		if out=$("check_$c" "$dir" 2>&1); then
			echo "ok    $c"
		else
			printf 'FAIL  %s\n%s\n' "$c" "$out"
			bad=$((bad + 1))
		fi
	done
	return $((bad > 0))
}

# mutant VALIDATOR FILE SED-EXPRESSION WHAT: breaks a copy of examples/FILE and requires the validator
# to reject it.
passed=0 failed=0
mutant() {
	local c=$1 file=$2 expr=$3 what=$4 t
	t=$(mktemp -d)
	cp -r examples "$t/"
	sed -i -e "$expr" "$t/examples/$file"
	if cmp -s "examples/$file" "$t/examples/$file"; then
		echo "FAIL  mutant $c $file ($what): the mutation changed nothing; fix it in scripts/check-examples.sh"
		failed=$((failed + 1))
	elif "check_$c" "$t/examples" >"$t/out" 2>&1; then
		echo "FAIL  mutant $c $file ($what): the validator accepted the broken copy"
		failed=$((failed + 1))
	else
		echo "ok    mutant $c rejects $file: $what"
		passed=$((passed + 1))
	fi
	rm -rf "$t"
}

mutants() {
	mutant systemd systemd/cfbackup-backup.service 's/^ProtectSystem=strict/ProtectSytem=strict/' "misspelt key (only a warning: any output fails)"
	mutant systemd systemd/cfbackup-backup.timer 's|^OnCalendar=.*|OnCalendar=*:0/5:99|' "invalid calendar spec"
	mutant systemd systemd/cfbackup-verify.service 's/^Type=oneshot/Type=oneshoot/' "invalid value"
	mutant systemd systemd/cfbackup-backup.service 's/; done; exec/; exec/' "ExecStart shell without done (shellcheck)"
	mutant cron cron/crontab 's|^\*/5 \* \* \* \*|*/5 * * * 8|' "day of week out of range"
	mutant cron cron/crontab 's|--sample 5\\%|--sample 5%|' "unescaped % (cron cuts the command there)"
	mutant cron cron/crontab 's|^17 \* \* \* \* .*|17 * * * *|' "entry without a command"
	mutant cron cron/cfbackup-cron 's|"$bin" "$@"|$bin $@|' "unquoted \$@ in the wrapper (shellcheck)"
	mutant kubernetes kubernetes/cronjob-backup.yaml 's/^  schedule:/  schedul:/' "CronJob without schedule"
	mutant kubernetes kubernetes/cronjob-backup.yaml 's/concurrencyPolicy: Forbid/concurrencyPolicy: Never/' "concurrencyPolicy not in its enum"
	mutant kubernetes kubernetes/cronjob-verify.yaml 's/runAsNonRoot: true/runAsNonRoot: "yes"/' "string for a boolean"
	mutant kubernetes kubernetes/secret.yaml 's/^kind: Secret/kind: Secrets/' "unknown kind"
	mutant kubernetes kubernetes/backup-sharded-job.yaml 's/completionMode: Indexed/completionMode: Indexd/' "Indexed Job: completionMode not in its enum"
	mutant kubernetes kubernetes/backup-sharded-job.yaml 's/backoffLimitPerIndex: 2/backoffLimitPerIndex: "two"/' "Indexed Job: string for an integer"
	mutant github github-actions/backup-sharded.yml 's/^    needs: shards/    needs: shard/' "merge job needing an undefined job"
	mutant github github-actions/backup-sharded.yml 's/SHARD: ${{ matrix.shard }}/SHARD: ${{ matrix.shrd }}/' "undefined matrix property"
	mutant flags kubernetes/backup-sharded-job.yaml 's/"--shard-index"/"--shard-idx"/' "Indexed Job: misspelt flag"
	mutant flags github-actions/backup-sharded.yml 's/shard merge --shards 3/shard merge --shard 3/' "merge with a flag it does not have"
	mutant github github-actions/backup.yml 's/^          path: summary.json/          paths: summary.json/' "unknown input of upload-artifact"
	mutant github github-actions/backup.yml "s/inputs.task == 'backup'/inputs.tsk == 'backup'/" "undefined workflow_dispatch input"
	mutant github github-actions/backup.yml 's|"$RUNNER_TEMP/cfbackup/writer.key"$|$RUNNER_TEMP/cfbackup/writer.key|' "unquoted variable in run: (shellcheck)"
	mutant gitlab gitlab-ci/.gitlab-ci.yml 's/^    expire_in: 30 days/    expires_in: 30 days/' "key not in GitLab's schema"
	mutant gitlab gitlab-ci/.gitlab-ci.yml 's/CFBACKUP_TASK == "verify"/CFBACKUP_TASK == "verfy"/' "a rule that never runs the verify job"
	mutant flags cron/crontab 's/--retry-lock 4m/--retry-lok 4m/' "unknown flag"
	mutant flags kubernetes/cronjob-backup.yaml 's/"--retry-lock", "4m"/"--retry-lock", "4 minutes"/' "invalid duration"
	mutant flags gitlab-ci/.gitlab-ci.yml 's/cfbackup test-restore latest/cfbackup test-restore latest --sampel 5/' "misspelt flag"
	mutant prometheus prometheus/cfbackup-alerts.yml 's/max by (instance) (cfbackup_last_success_timestamp_seconds{command="verify"})/max by (instance (cfbackup_last_success_timestamp_seconds{command="verify"})/' "PromQL syntax error"
	mutant prometheus prometheus/cfbackup-alerts.yml 's/component="d1"}) > 15 \* 60/component="d1"}) > 30 * 60/' "D1 threshold the unit test pins"
	mutant prometheus prometheus/cfbackup-alerts.yml 's/cfbackup_last_run_success == 0/cfbackup_last_run_succes == 0/' "misspelt metric name (the unit test expects the alert)"
	echo "$passed passed, $failed failed"
	[ "$failed" -eq 0 ]
}

need
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
CFBACKUP=$T/cfbackup
go build -o "$CFBACKUP" ./cmd/cfbackup
rc=0
validate examples || rc=1
if [ "${1:-}" = --mutants ]; then
	mutants || rc=1
fi
exit $rc
