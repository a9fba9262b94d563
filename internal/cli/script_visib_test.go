package cli_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"

	"github.com/rogpeppe/go-internal/testscript"
)

// visibCmds are the story commands of the day-2 visibility stories (notifications, metrics).
var visibCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	// webhook NAME: start a real HTTP receiver on loopback, set $NAME_URL to it, and append every JSON
	// body POSTed to it as one line to $WORK/NAME.jsonl (a Pushgateway push lands there too, as
	// {"push": "METHOD PATH"}), so a story can grep what was notified.
	"webhook": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 {
			ts.Fatalf("usage: webhook NAME")
		}
		path := ts.MkAbs(args[0] + ".jsonl")
		ts.Check(os.WriteFile(path, nil, 0o644))
		var mu sync.Mutex
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			body, _ := io.ReadAll(r.Body)
			var line []byte
			if len(r.URL.Path) > 9 && r.URL.Path[:9] == "/metrics/" {
				line, _ = json.Marshal(map[string]string{"push": r.Method + " " + r.URL.Path, "body": string(body)})
			} else {
				var m map[string]any
				if err := json.Unmarshal(body, &m); err != nil {
					http.Error(w, "not JSON", http.StatusBadRequest)
					return
				}
				line, _ = json.Marshal(m)
			}
			f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o644)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			defer f.Close()
			_, _ = f.Write(append(line, '\n'))
		}))
		ts.Defer(srv.Close)
		ts.Setenv(args[0]+"_URL", srv.URL)
	},
}
