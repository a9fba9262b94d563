// Package tools lets interop tests require real command-line tools (age, lz4, sqlite3…).
//
// On a developer machine a missing tool skips the test with the command that installs it; in CI
// (CI set) it fails the test, so a missing install step can never turn into a silently green run.
package tools

import (
	"os"
	"os/exec"
	"testing"
)

// Require skips (locally) or fails (in CI) t unless every named tool is on PATH.
func Require(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed, and CI is set: .ci/run must install it (scripts/install-tools.sh)", n)
			}
			t.Skipf("%s not installed: run make tools", n)
		}
	}
}
