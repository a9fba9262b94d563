package config

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestEveryVariableTheRepositoryUsesIsKnown keeps the strict environment check (CheckEnviron) in
// step with the code: every CFBACKUP_* name that a program, script or example of the repository
// reads or sets must pass it, or a cron job set up from examples/ would exit 2 on its first run.
func TestEveryVariableTheRepositoryUsesIsKnown(t *testing.T) {
	root, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skip("not in a git checkout")
	}
	top := strings.TrimSpace(string(root))
	files, err := exec.Command("git", "-C", top, "ls-files").Output()
	if err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile(`CFBACKUP_[A-Z0-9_]*[A-Z0-9]`)
	seen := map[string]string{}
	for _, f := range strings.Split(strings.TrimSpace(string(files)), "\n") {
		// Tests and stories spell wrong names on purpose; docs name the hints.
		if strings.HasSuffix(f, "_test.go") || strings.HasPrefix(f, "testdata/") || strings.HasPrefix(f, "docs/") || f == "internal/config/strict.go" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(top, f))
		if err != nil {
			continue
		}
		for _, n := range name.FindAllString(string(b), -1) {
			seen[n] = f
		}
	}
	if len(seen) < 20 {
		t.Fatalf("found only %d CFBACKUP_* names: the scan is broken", len(seen))
	}
	for n, f := range seen {
		if isPrefixStem(n) {
			continue
		}
		if err := CheckEnviron([]string{n + "=x"}); err != nil {
			t.Errorf("%s (used in %s) is refused by the strict environment check: add it to extraEnv or a config key: %v", n, f, err)
		}
	}
	if err := CheckEnviron([]string{"CFBACKUP_REPOSITRY=x"}); err == nil {
		t.Error("a misspelt variable passed the strict check")
	}
}

// isPrefixStem reports names that are the stem of a family (CFBACKUP_FAULT for CFBACKUP_FAULT_*),
// written in code that builds the full name.
func isPrefixStem(n string) bool {
	for _, p := range extraEnvPrefixes {
		if n+"_" == p {
			return true
		}
	}
	return false
}
