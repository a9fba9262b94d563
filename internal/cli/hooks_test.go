package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cfbackup/cfbackup/internal/cftest"
	"github.com/cfbackup/cfbackup/internal/cli"
	"github.com/cfbackup/cfbackup/internal/seed"
	"github.com/cfbackup/cfbackup/internal/testutil/smtpserver"
)

// hookEnv is an emulated account with a repository, and an environment for cli.Run.
type hookEnv struct {
	env map[string]string
	dir string
}

func newHookEnv(t *testing.T) *hookEnv {
	t.Helper()
	dir := t.TempDir()
	seedPath := filepath.Join(dir, "seed.sqlite")
	if _, err := seed.Generate(context.Background(), seedPath, seed.Options{Users: 10, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	srv, base := cftest.Start(t, cftest.Options{DataDir: filepath.Join(dir, "emu")})
	if _, err := srv.AddDatabase("app", seedPath); err != nil {
		t.Fatal(err)
	}
	h := &hookEnv{dir: dir, env: map[string]string{
		"CFBACKUP_CLOUDFLARE_API_URL": base + "/client/v4",
		"CLOUDFLARE_ACCOUNT_ID":       srv.AccountID(),
		"CLOUDFLARE_API_TOKEN":        "test-token",
		"CFBACKUP_REPOSITORY":         filepath.Join(dir, "repo"),
		"HOME":                        dir,
		"XDG_CONFIG_HOME":             filepath.Join(dir, ".config"),
		"CFBACKUP_ACTOR":              "cron",
		"CFBACKUP_WRITER_KEY_FILE":    filepath.Join(dir, "w.key"),
	}}
	out, _, code := h.run(t, "key", "generate", "-o", filepath.Join(dir, "key.txt"))
	if code != 0 {
		t.Fatal("key generate failed")
	}
	if _, errOut, code := h.run(t, "init", "--recipient", strings.TrimSpace(out), "--writer-key-file", filepath.Join(dir, "w.key")); code != 0 {
		t.Fatalf("init: %s", errOut)
	}
	return h
}

func (h *hookEnv) run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := cli.Run(context.Background(), args, cli.IO{In: strings.NewReader(""), Out: &out, Err: &errOut}, func(k string) string { return h.env[k] })
	return out.String(), errOut.String(), code
}

// receiver is a webhook and Pushgateway endpoint on a real HTTP server.
type receiver struct {
	mu       sync.Mutex
	webhooks []map[string]any
	pushes   []string
}

func startReceiver(t *testing.T) (*receiver, *httptest.Server) {
	rc := &receiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if strings.HasPrefix(r.URL.Path, "/metrics/") {
			rc.pushes = append(rc.pushes, r.Method+" "+r.URL.Path)
			return
		}
		var m map[string]any
		_ = json.NewDecoder(r.Body).Decode(&m)
		rc.webhooks = append(rc.webhooks, m)
	}))
	t.Cleanup(srv.Close)
	return rc, srv
}

func TestHooksAfterBackup(t *testing.T) {
	h := newHookEnv(t)
	rc, srv := startReceiver(t)
	mail := smtpserver.Start(t, "")
	host, port, _ := net.SplitHostPort(mail.Addr)
	prom := filepath.Join(h.dir, "cfbackup.prom")
	h.env["CFBACKUP_NOTIFY_WEBHOOK"] = srv.URL + "/hooks/T0/B0/secret"
	h.env["CFBACKUP_SMTP_HOST"] = host
	h.env["CFBACKUP_SMTP_PORT"] = port
	h.env["CFBACKUP_SMTP_FROM"] = "cfbackup@example.com"
	h.env["CFBACKUP_SMTP_TO"] = "ops@example.com"

	// Success, notified because asked; metrics to a textfile and a Pushgateway.
	out, errOut, code := h.run(t, "backup", "--notify-on", "success", "--metrics-textfile", prom, "--metrics-push", srv.URL, "--json")
	if code != 0 {
		t.Fatalf("backup: %d %s", code, errOut)
	}
	var sum map[string]any
	_ = json.Unmarshal([]byte(out), &sum)
	snap, _ := sum["snapshot"].(string)
	rc.mu.Lock()
	if len(rc.webhooks) != 1 || rc.webhooks[0]["status"] != "success" || !strings.Contains(rc.webhooks[0]["text"].(string), "cfbackup backup succeeded") ||
		rc.webhooks[0]["snapshots"].([]any)[0] != snap || rc.webhooks[0]["actor"] != "cron" {
		t.Fatalf("webhook %v", rc.webhooks)
	}
	// The Pushgateway client orders grouping labels as it likes: check each is there.
	if len(rc.pushes) != 1 || !strings.HasPrefix(rc.pushes[0], "POST /metrics/job/cfbackup/") ||
		!strings.Contains(rc.pushes[0]+"/", "/command/backup/") || !strings.Contains(rc.pushes[0], "/instance/") {
		t.Fatalf("pushes %v", rc.pushes)
	}
	rc.mu.Unlock()
	if msgs := mail.Messages(); len(msgs) != 1 || !strings.Contains(msgs[0].Data, "Subject: cfbackup backup succeeded") || !strings.Contains(msgs[0].Data, "Snapshots: "+snap) {
		t.Fatalf("mail %+v", msgs)
	}
	text, err := os.ReadFile(prom)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`cfbackup_last_success_timestamp_seconds{command="backup",component="d1"}`, `cfbackup_last_run_success{command="backup",component="d1"} 1`, `cfbackup_last_run_items{command="backup",component="d1"}`} {
		if !strings.Contains(string(text), want) {
			t.Errorf("textfile lacks %s:\n%s", want, text)
		}
	}

	// Failure: notified by default, counted in the metrics; the last success time stays.
	h.env["CLOUDFLARE_API_TOKEN"] = "wrong"
	if _, _, code := h.run(t, "backup", "--metrics-textfile", prom); code != 5 {
		t.Fatalf("exit %d", code)
	}
	rc.mu.Lock()
	if len(rc.webhooks) != 2 || rc.webhooks[1]["status"] != "failure" || rc.webhooks[1]["exit_code"].(float64) != 5 || !strings.Contains(rc.webhooks[1]["error"].(string), "token rejected") {
		t.Fatalf("webhook %v", rc.webhooks)
	}
	rc.mu.Unlock()
	if msgs := mail.Messages(); len(msgs) != 2 || !strings.Contains(msgs[1].Data, "FAILED") {
		t.Fatalf("mail %d", len(msgs))
	}
	text, _ = os.ReadFile(prom)
	for _, want := range []string{`cfbackup_failures_total{command="backup",component="d1"} 1`, `cfbackup_last_run_success{command="backup",component="d1"} 0`, `cfbackup_last_success_timestamp_seconds{command="backup",component="d1"}`} {
		if !strings.Contains(string(text), want) {
			t.Errorf("textfile lacks %s:\n%s", want, text)
		}
	}

	// A success is not notified unless asked.
	h.env["CLOUDFLARE_API_TOKEN"] = "test-token"
	if _, _, code := h.run(t, "verify", "--metrics-textfile", prom); code != 0 {
		t.Fatal("verify failed")
	}
	rc.mu.Lock()
	n := len(rc.webhooks)
	rc.mu.Unlock()
	if n != 2 {
		t.Fatalf("%d webhooks", n)
	}
	text, _ = os.ReadFile(prom)
	if !strings.Contains(string(text), `cfbackup_last_run_success{command="verify",component="d1"} 1`) || !strings.Contains(string(text), `command="backup"`) {
		t.Fatalf("textfile:\n%s", text)
	}
}

// A webhook that can't be reached doesn't fail the backup: the failure is logged and counted.
func TestUnreachableWebhook(t *testing.T) {
	h := newHookEnv(t)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	h.env["CFBACKUP_NOTIFY_WEBHOOK"] = "http://" + addr + "/hooks/secret-path"
	prom := filepath.Join(h.dir, "m.prom")
	_, errOut, code := h.run(t, "backup", "--notify-on", "always", "--metrics-textfile", prom)
	if code != 0 {
		t.Fatalf("backup exited %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, "notification failed") || strings.Contains(errOut, "secret-path") {
		t.Fatalf("stderr: %s", errOut)
	}
	text, _ := os.ReadFile(prom)
	if !strings.Contains(string(text), `cfbackup_notification_failures{command="backup"} 1`) {
		t.Fatalf("textfile:\n%s", text)
	}
	// Bad SMTP settings are a usage error before anything runs.
	h.env["CFBACKUP_SMTP_HOST"] = "127.0.0.1"
	if _, errOut, code := h.run(t, "backup"); code != 2 || !strings.Contains(errOut, "smtp_from") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}
