package cli_test

import (
	"regexp"

	"github.com/rogpeppe/go-internal/testscript"
)

// approvalCmds are the approval stories' commands (testdata/script/approval-*.txtar).
var approvalCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	// capture VAR FILE REGEXP: set $VAR to REGEXP's first group in FILE (stdout and stderr are the
	// last command's), so a story can pass a printed plan id to the next command.
	"capture": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 3 {
			ts.Fatalf("usage: capture VAR FILE REGEXP")
		}
		m := regexp.MustCompile(args[2]).FindStringSubmatch(ts.ReadFile(args[1]))
		if len(m) < 2 {
			ts.Fatalf("capture: %q not found in %s", args[2], args[1])
		}
		ts.Setenv(args[0], m[1])
	},
}
