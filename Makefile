# Small phony targets over the go tool. `make demo` and `make test` are the README's two commands.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
DATE    ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
BUILDINFO := github.com/cfbackup/cfbackup/internal/buildinfo
LDFLAGS := -s -w -X $(BUILDINFO).version=$(VERSION) -X $(BUILDINFO).commit=$(COMMIT) -X $(BUILDINFO).date=$(DATE)
BIN     := .bin

.PHONY: all build test cross release-check test-short bench bench-r2 fuzz fuzz-restore-do lint demo drill tools clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/cfbackup ./cmd/cfbackup
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/cfemu ./cmd/cfemu

# Every test, with the race detector. Sets up what the tests need first (`make tools`: idempotent,
# seconds when everything is already there), so on a fresh clone it is the only command to run.
test: tools
	cd worker && npm test
	$(GO) mod tidy -diff
	$(GO) vet ./...
	$(MAKE) cross
	$(GO) test -race -count=1 -timeout 60m ./...
	scripts/check-examples.sh --mutants

# Every goreleaser target compiles (Windows has no kill(2): pkg/engine/liveness_*.go).
cross:
	GOOS=windows GOARCH=amd64 $(GO) build -o /dev/null ./cmd/...
	GOOS=darwin GOARCH=arm64 $(GO) build -o /dev/null ./cmd/...
	GOOS=linux GOARCH=arm64 $(GO) build -o /dev/null ./cmd/...

# The release offline: goreleaser (installed into .bin/ once; a big build, so not part of `make test`)
# checks .goreleaser.yaml and builds a snapshot into dist/ without publishing, signing or docker;
# then lists the artefacts with their sizes (docs/RELEASE.md).
GORELEASER_VERSION ?= v2.17.0
release-check:
	test -x $(BIN)/goreleaser || GOBIN=$(abspath $(BIN)) $(GO) install github.com/goreleaser/goreleaser/v2@$(GORELEASER_VERSION)
	$(BIN)/goreleaser check
	$(BIN)/goreleaser release --snapshot --clean --skip=publish,docker,sign
	cd dist && ls -l *.tar.gz *.zip *.deb *.rpm checksums.txt | awk '{ printf "%10d  %s\n", $$5, $$9 }'

test-short:
	$(GO) test -short -count=1 ./...

# Every benchmark, then one summary table with same-run ratios (scripts/bench-all.sh; docs/BENCHMARKS.md).
# BENCH_QUICK=1: small sizes, a few minutes. BENCH_OUT=dir keeps the results.
bench:
	scripts/bench-all.sh

# R2: cfbackup vs rclone copy + restic on a loopback S3 server (needs rclone, restic: CFBACKUP_BENCH_TOOLS=1 make tools).
bench-r2:
	scripts/bench-r2.sh

# R2 incrementals of 100k and 1M synthetic objects: wall time, peak RSS, requests (docs/R2.md, "Scale").
.PHONY: bench-scale
bench-scale:
	scripts/bench-scale.sh

# Durable Objects: the differential restore test in workerd over SEEDS random objects (from START).
SEEDS ?= 200
START ?= 1
fuzz-restore-do:
	cd worker && npm run build && DO_FUZZ_SEEDS=$(SEEDS) DO_FUZZ_START=$(START) node --test test/differential.test.mjs

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzReadSegment -fuzztime 30s ./pkg/archive/
	$(GO) test -run '^$$' -fuzz FuzzOpenItem -fuzztime 30s ./pkg/archive/
	$(GO) test -run '^$$' -fuzz FuzzScanner -fuzztime 30s ./pkg/source/d1/sqldump/
	$(GO) test -run '^$$' -fuzz FuzzRewrite -fuzztime 30s ./pkg/source/d1/sqldump/
	$(GO) test -run '^$$' -fuzz FuzzDecodeManifest -fuzztime 30s ./pkg/manifest/
	$(GO) test -run '^$$' -fuzz FuzzOpenCatalogue -fuzztime 30s ./pkg/manifest/

# The D1 differential restore fuzzer beyond the fixed seeds of `make test`: SEEDS random databases
# (from seed FIRST) backed up through the emulated export and restored three ways.
SEEDS ?= 200
FIRST ?= 1000
.PHONY: fuzz-restore
fuzz-restore:
	CFBACKUP_FUZZ_SEEDS=$(SEEDS) CFBACKUP_FUZZ_FIRST=$(FIRST) $(GO) test -count=1 -timeout 0 -run '^TestDifferentialRestore$$' -v ./pkg/source/d1/

# `go mod tidy -diff` fails (printing the diff) when go.mod or go.sum is not what `go mod tidy` would
# write, so a direct dependency is never left marked `// indirect`. It reads only the module cache and
# the Go module proxy.
lint:
	test -z "$$(gofmt -l $$(git ls-files '*.go'))"
	$(GO) mod tidy -diff
	$(GO) vet ./...

# The whole story on a local emulated Cloudflare account: no account, no Docker.
demo: build
	@command -v sqlite3 >/dev/null 2>&1 || scripts/install-tools.sh  # the demo's checks use sqlite3
	scripts/demo.sh

# The complete-failure disaster-recovery drill on the local stack, timed (docs/RUNBOOK.md).
drill: build tools
	scripts/drill.sh

tools:
	scripts/install-tools.sh

clean:
	rm -rf $(BIN)/cfbackup $(BIN)/cfemu demo
