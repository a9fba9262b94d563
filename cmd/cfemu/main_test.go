package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRunServesAndWritesEnvFile(t *testing.T) {
	dir := t.TempDir()
	envFile := filepath.Join(dir, "emu.env")
	script := filepath.Join(dir, "s.sql")
	if err := os.WriteFile(script, []byte("CREATE TABLE t(x); INSERT INTO t VALUES(1);"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CFEMU_TOKEN", "tok-123")
	t.Setenv("CFEMU_FAULT_429", "1")
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, options{listen: "127.0.0.1:0", dataDir: filepath.Join(dir, "data"), accountID: "acct1",
			envFile: envFile, d1: []string{"small=" + script}, seedName: "demo", seedUsers: 20}, &out, io.Discard)
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
	if env["CLOUDFLARE_ACCOUNT_ID"] != "acct1" || env["CLOUDFLARE_API_TOKEN"] != "tok-123" ||
		!strings.HasSuffix(env["CFBACKUP_CLOUDFLARE_API_URL"], "/client/v4") {
		t.Fatalf("env = %v", env)
	}
	get := func() (int, string) {
		req, _ := http.NewRequest("GET", env["CFBACKUP_CLOUDFLARE_API_URL"]+"/accounts/acct1/d1/database", nil)
		req.Header.Set("Authorization", "Bearer "+env["CLOUDFLARE_API_TOKEN"])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get(); code != 429 {
		t.Fatalf("first request should hit the CFEMU_FAULT_429 fault, got %d", code)
	}
	code, body := get()
	if code != 200 || !strings.Contains(body, `"name":"small"`) || !strings.Contains(body, `"name":"demo"`) {
		t.Fatalf("list: %d %s", code, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "export CLOUDFLARE_API_TOKEN=tok-123") {
		t.Fatalf("stdout: %q", out.String())
	}
}

func parseEnv(s string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(strings.TrimPrefix(l, "export "), "=")
		if ok {
			m[k] = v
		}
	}
	return m
}

func TestBadUsage(t *testing.T) {
	if code := Main([]string{"--nope"}, io.Discard, io.Discard); code != 2 {
		t.Fatalf("unknown flag exit = %d", code)
	}
	if code := Main([]string{"--d1", "noequals", "--data-dir", t.TempDir()}, io.Discard, io.Discard); code != 2 {
		t.Fatalf("bad --d1 exit = %d", code)
	}
}
