package cli_test

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/cfbackup/cfbackup/internal/cftest"
)

// kvCmds change the emulated account's Workers KV from a story:
//
//	kvns TITLE                 create a namespace
//	kvseed TITLE N             create a namespace with N keys k/0000…: text values "value number i",
//	                           every 5th binary, every 3rd with metadata, every 7th expiring in a day
//	kvput TITLE KEY FILE       write FILE's bytes under KEY
//	[!] kvget TITLE KEY FILE   read KEY's value into FILE (! expects the key to be absent)
//	kvdel TITLE KEY            delete KEY
var kvCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	"kvns": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 {
			ts.Fatalf("usage: kvns TITLE")
		}
		_, err := emu(ts).AddKVNamespace(args[0])
		ts.Check(err)
	},
	"kvseed": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 2 {
			ts.Fatalf("usage: kvseed TITLE N")
		}
		n, err := strconv.Atoi(args[1])
		ts.Check(err)
		id, err := emu(ts).AddKVNamespace(args[0])
		ts.Check(err)
		var pairs []cftest.KVPair
		for i := range n {
			p := cftest.KVPair{Key: fmt.Sprintf("k/%04d", i), Value: []byte(fmt.Sprintf("value number %d\n", i))}
			if i%5 == 4 {
				p.Value = []byte{0xff, 0x00, byte(i), 0x80}
			}
			if i%3 == 0 {
				p.Metadata, _ = json.Marshal(map[string]int{"i": i})
			}
			if i%7 == 6 {
				p.Expiration = 4102444800 // 2100-01-01
			}
			pairs = append(pairs, p)
		}
		ts.Check(emu(ts).PutKV(id, pairs...))
	},
	"kvput": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 3 {
			ts.Fatalf("usage: kvput TITLE KEY FILE")
		}
		b, err := os.ReadFile(ts.MkAbs(args[2]))
		ts.Check(err)
		ts.Check(emu(ts).PutKV(kvID(ts, args[0]), cftest.KVPair{Key: args[1], Value: b}))
	},
	"kvdel": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 2 {
			ts.Fatalf("usage: kvdel TITLE KEY")
		}
		ts.Check(emu(ts).DeleteKV(kvID(ts, args[0]), args[1]))
	},
	"kvget": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 3 {
			ts.Fatalf("usage: kvget TITLE KEY FILE")
		}
		pairs, err := emu(ts).KVPairs(kvID(ts, args[0]))
		ts.Check(err)
		for _, p := range pairs {
			if p.Key == args[1] {
				if neg {
					ts.Fatalf("key %s exists", args[1])
				}
				ts.Check(os.WriteFile(ts.MkAbs(args[2]), p.Value, 0o644))
				return
			}
		}
		if !neg {
			ts.Fatalf("no key %s", args[1])
		}
	},
}

func emu(ts *testscript.TestScript) *cftest.Server { return ts.Value(emuKey{}).(*cftest.Server) }

// kvID finds a namespace id by title.
func kvID(ts *testscript.TestScript, title string) string {
	id, err := emu(ts).KVNamespaceID(title)
	ts.Check(err)
	return id
}
