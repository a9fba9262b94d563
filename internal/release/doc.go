// Package release holds no code: its tests keep the release files (Dockerfile, .goreleaser.yaml,
// Makefile) building the same binary the same way, since neither docker nor goreleaser runs in
// `make test` (docs/RELEASE.md).
package release
