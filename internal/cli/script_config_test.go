package cli_test

import (
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/cfbackup/cfbackup/internal/cftest"
)

// emuKey finds the story's emulated account in env.Values.
type emuKey struct{}

// emuWorkers changes the emulated account's Workers configuration from a story:
//
//	emu-workers seed                          the example configuration (cftest.SeedWorkersExample)
//	emu-workers set-var SCRIPT NAME VALUE     set a plain_text binding
//	emu-workers add-secret SCRIPT NAME VALUE  add a secret_text binding
//	emu-workers delete SCRIPT                 delete a script
func emuWorkers(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("emu-workers does not fail")
	}
	srv := ts.Value(emuKey{}).(*cftest.Server)
	if len(args) == 0 {
		ts.Fatalf("usage: emu-workers seed|set-var|add-secret|delete ...")
	}
	switch {
	case args[0] == "seed" && len(args) == 1:
		srv.SeedWorkersExample()
	case (args[0] == "set-var" || args[0] == "add-secret") && len(args) == 4:
		ws, ok := srv.WorkerScriptConfig(args[1])
		if !ok {
			ts.Fatalf("no script %s", args[1])
		}
		typ := "plain_text"
		if args[0] == "add-secret" {
			typ = "secret_text"
		}
		found := false
		for _, b := range ws.Bindings {
			if b["name"] == args[2] {
				b["type"], b["text"], found = typ, args[3], true
			}
		}
		if !found {
			ws.Bindings = append(ws.Bindings, map[string]any{"type": typ, "name": args[2], "text": args[3]})
		}
		srv.PutWorkerScript(ws)
	case args[0] == "delete" && len(args) == 2:
		srv.DeleteWorkerScript(args[1])
	default:
		ts.Fatalf("usage: emu-workers seed | set-var SCRIPT NAME VALUE | add-secret SCRIPT NAME VALUE | delete SCRIPT")
	}
}
