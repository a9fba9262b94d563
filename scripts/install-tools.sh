#!/usr/bin/env bash
# Installs what the tests need beyond Go modules: the age, lz4 and sqlite3 CLIs (interop tests), headless
# Chromium (the HTML report test) and a versitygw S3 server for loopback (store tests). Idempotent; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for p in age lz4 sqlite3 jq python3; do command -v "$p" >/dev/null 2>&1 || need+=("$p"); done
# Headless Chromium renders the HTML report in pkg/report's test.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# The R2 benchmark (make bench-r2) compares against rclone + restic; tests do not need them.
if [ "${CFBACKUP_BENCH_TOOLS:-}" = 1 ]; then
  for p in rclone restic; do command -v "$p" >/dev/null 2>&1 || need+=("$p"); done
fi
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
go mod download
# `go mod tidy -diff` (make test, make lint) also reads the modules that dependencies' own tests import,
# which `go mod download` skips; this fetches them once from the Go module proxy so later runs work
# offline. Its verdict is make test's business, not this script's.
go mod tidy -diff >/dev/null 2>&1 || true
# The Durable Object module's tests run the real Workers runtime (npm miniflare 4, pinned in
# worker/package-lock.json); Node 20 or newer.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm
fi
# Skipped when node_modules already matches package-lock.json (npm ci writes its own copy of the lock).
if ! cmp -s worker/package-lock.json worker/node_modules/.package-lock.json 2>/dev/null && \
   ! [ worker/node_modules/.package-lock.json -nt worker/package-lock.json ]; then
  (cd worker && npm ci --no-audit --no-fund --loglevel=error)
fi
(cd worker && npm run --silent build)
# The examples' validators (scripts/check-examples.sh, docs/SCHEDULING.md): shellcheck and systemd-analyze
# from Debian, actionlint (Go module), promtool alone out of Debian's prometheus package (dpkg-deb -x: no
# service installed), and the npm ones pinned in scripts/validators/package-lock.json.
if ! command -v shellcheck >/dev/null 2>&1 || ! command -v systemd-analyze >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq shellcheck systemd
fi
mkdir -p .bin
.bin/actionlint -version 2>/dev/null | grep -qx 'v\?1.7.12' || GOBIN="$PWD/.bin" go install github.com/rhysd/actionlint/cmd/actionlint@v1.7.12
if ! [ -x .bin/promtool ]; then
  d=$(mktemp -d)
  (cd "$d" && { apt-get download prometheus 2>/dev/null || { SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"; $SUDO apt-get update -qq && apt-get download prometheus; }; })
  dpkg-deb -x "$d"/prometheus_*.deb "$d/x" && cp "$d/x/usr/bin/promtool" .bin/promtool
  rm -rf "$d"
fi
if ! cmp -s scripts/validators/package-lock.json scripts/validators/node_modules/.package-lock.json 2>/dev/null && \
   ! [ scripts/validators/node_modules/.package-lock.json -nt scripts/validators/package-lock.json ]; then
  (cd scripts/validators && npm ci --no-audit --no-fund --loglevel=error)
fi
bash scripts/install-versitygw.sh
