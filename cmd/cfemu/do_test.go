package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDONamespacesFromLocalState: --do serves a namespace whose object listing follows a local
// workerd's persisted state (wrangler's v3/do layout), and --worker-url lands in the env file.
func TestDONamespacesFromLocalState(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	objDir := filepath.Join(state, "v3", "do", "app-Sessions")
	if err := os.MkdirAll(objDir, 0o755); err != nil {
		t.Fatal(err)
	}
	id := strings.Repeat("ab", 32)
	for _, f := range []string{id + ".sqlite", id + ".sqlite-wal", "metadata.sqlite"} {
		if err := os.WriteFile(filepath.Join(objDir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	envFile := filepath.Join(dir, "emu.env")
	t.Setenv("CFEMU_TOKEN", "tok")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, options{listen: "127.0.0.1:0", dataDir: filepath.Join(dir, "data"), accountID: "acct", envFile: envFile,
			do: []string{"app/Sessions=" + state, "app/Limits=" + state + ",kv"}, workerURL: "http://127.0.0.1:9"}, &bytes.Buffer{}, io.Discard)
	}()
	var env map[string]string
	for deadline := time.Now().Add(30 * time.Second); ; {
		if b, err := os.ReadFile(envFile); err == nil {
			env = parseEnv(string(b))
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("env file never appeared")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if env["CFBACKUP_WORKER_URL"] != "http://127.0.0.1:9" {
		t.Fatalf("env = %v", env)
	}
	call := func(path string, into any) {
		req, _ := http.NewRequest("GET", env["CFBACKUP_CLOUDFLARE_API_URL"]+path, nil)
		req.Header.Set("Authorization", "Bearer tok")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
			t.Fatal(err)
		}
	}
	var nss struct {
		Result []struct {
			ID, Class, Name, Script string
			UseSQLite               bool `json:"use_sqlite"`
		}
	}
	call("/accounts/acct/workers/durable_objects/namespaces", &nss)
	if len(nss.Result) != 2 || nss.Result[0].Name != "app_Sessions" || !nss.Result[0].UseSQLite || nss.Result[1].UseSQLite {
		t.Fatalf("namespaces = %+v", nss.Result)
	}
	var objs struct {
		Result []struct {
			ID            string
			HasStoredData bool
		}
	}
	call("/accounts/acct/workers/durable_objects/namespaces/"+nss.Result[0].ID+"/objects", &objs)
	if len(objs.Result) != 1 || objs.Result[0].ID != id || !objs.Result[0].HasStoredData {
		t.Fatalf("objects = %+v", objs.Result)
	}
	if _, _, err := parseDOSpec("nope"); err == nil {
		t.Fatal("a malformed --do was accepted")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
