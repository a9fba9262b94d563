#!/bin/sh
# Installs the versitygw S3 server the tests run against (internal/testutil/s3server) into .bin/
# of the module root. Idempotent: does nothing when .bin/versitygw already is this version (read
# from the binary's embedded module info, so no stamp file can go stale).
#   scripts/install-versitygw.sh                          # v1.8.0
#   VERSITYGW_VERSION=v1.x.y scripts/install-versitygw.sh
# Tests find the binary here, or via $CFBACKUP_VERSITYGW, or on PATH.
set -eu

VERSION="${VERSITYGW_VERSION:-v1.8.0}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/.bin"

installed() {
	[ -x "$BIN/versitygw" ] &&
		go version -m "$BIN/versitygw" 2>/dev/null |
		awk -v v="$VERSION" '$1 == "mod" && $2 == "github.com/versity/versitygw" && $3 == v { ok = 1 } END { exit !ok }'
}

if installed; then
	echo "versitygw $VERSION already installed: $BIN/versitygw"
	exit 0
fi

mkdir -p "$BIN"
echo "installing versitygw $VERSION into $BIN (cold build: a few minutes; warm Go caches: ~10 s)..."
GOBIN="$BIN" go install "github.com/versity/versitygw/cmd/versitygw@$VERSION"
installed || { echo "install-versitygw: $BIN/versitygw is not $VERSION after install" >&2; exit 1; }
echo "installed $BIN/versitygw ($VERSION)"
