package cli

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/cfbackup/cfbackup/pkg/errclass"
)

// TestEverySentinelMapsToItsDocumentedExitCode walks every sentinel error any package of this build
// declares (errclass.New registers them) and checks that, wrapped as commands wrap errors, it exits
// with its class's code, and that every code is documented in docs/EXIT_CODES.md. A component added
// later is covered without touching this test.
func TestEverySentinelMapsToItsDocumentedExitCode(t *testing.T) {
	doc, err := os.ReadFile("../../docs/EXIT_CODES.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[int]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\| (\d+) \|`).FindAllStringSubmatch(string(doc), -1) {
		n, _ := strconv.Atoi(m[1])
		documented[n] = true
	}
	for _, c := range errclass.Classes() {
		code, ok := classExit[c]
		if !ok {
			t.Errorf("class %q has no exit code in classExit", c.Name())
			continue
		}
		if !documented[code] {
			t.Errorf("class %q exits %d, which docs/EXIT_CODES.md does not list", c.Name(), code)
		}
	}
	sentinels := errclass.Sentinels()
	if len(sentinels) < 40 {
		t.Fatalf("only %d sentinels registered: packages no longer declare theirs with errclass.New?", len(sentinels))
	}
	for _, s := range sentinels {
		class := errclass.ClassOf(s)
		if class == nil {
			t.Errorf("sentinel %q has no class", s)
			continue
		}
		want := classExit[class]
		wrapped := fmt.Errorf("restore X: %w", fmt.Errorf("step: %w", s))
		if got := exitCode(wrapped); got != want {
			t.Errorf("sentinel %q (class %s) exits %d, want %d", s, class.Name(), got, want)
		}
		if got := errorClass(wrapped, exitCode(wrapped)); got != exitClasses[want]+": "+s.Error() {
			t.Errorf("audit class of %q = %q", s, got)
		}
	}
	// Wrapped classes, usage errors and plain errors.
	for _, tc := range []struct {
		err  error
		want int
	}{
		{errclass.Wrap(errclass.NotFound, fmt.Errorf("no such thing")), ExitNotFound},
		{usageError{fmt.Errorf("bad flag")}, ExitUsage},
		{fmt.Errorf("disk full"), ExitFailure},
		{fmt.Errorf("%w: %w", errclass.Usage, errclass.NotFound), ExitUsage}, // the more specific class wins
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
