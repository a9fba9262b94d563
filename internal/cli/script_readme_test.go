package cli_test

import (
	"os"
	"strings"

	"github.com/rogpeppe/go-internal/testscript"
)

// readmeCmds give stories the README's own code blocks, so a story that runs them and the README
// cannot drift apart.
var readmeCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	// readme-block HEADING FILE: write the first ```sh block under "## HEADING" of README.md to FILE.
	"readme-block": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 2 {
			ts.Fatalf("usage: readme-block HEADING FILE")
		}
		b, err := os.ReadFile("../../README.md")
		ts.Check(err)
		block, ok := readmeBlock(string(b), args[0])
		if !ok {
			ts.Fatalf("README.md has no ```sh block under ## %s", args[0])
		}
		ts.Check(os.WriteFile(ts.MkAbs(args[1]), []byte(block), 0o644))
	},
}

// readmeBlock is the body of the first ```sh block after the line "## heading".
func readmeBlock(readme, heading string) (string, bool) {
	_, rest, ok := strings.Cut(readme, "\n## "+heading+"\n")
	if !ok {
		return "", false
	}
	_, rest, ok = strings.Cut(rest, "```sh\n")
	if !ok {
		return "", false
	}
	block, _, ok := strings.Cut(rest, "\n```")
	return block + "\n", ok
}
