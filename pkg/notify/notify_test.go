package notify_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cfbackup/cfbackup/internal/testutil/smtpserver"
	"github.com/cfbackup/cfbackup/pkg/notify"
)

func event(failed bool) notify.Event {
	e := notify.Event{Command: "backup", Status: "success", Repository: "s3://b/p", Host: "h1", Actor: "ops@h1",
		Time: time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC), Duration: 1500 * time.Millisecond, Components: []string{"d1"},
		Snapshots: []string{"abcd1234"}, Bytes: 42, Items: 3}
	if failed {
		e.Status, e.Error, e.ExitCode, e.Snapshots = "failure", "D1 export failed: token rejected", 5, nil
	}
	return e
}

func TestWanted(t *testing.T) {
	for _, c := range []struct {
		on     string
		failed bool
		want   bool
	}{{"", true, true}, {"", false, false}, {"failure", false, false}, {"success", false, true}, {"success", true, true}, {"always", false, true}} {
		if got := notify.Wanted(c.on, c.failed); got != c.want {
			t.Errorf("Wanted(%q,%v)=%v", c.on, c.failed, got)
		}
	}
	if err := notify.ValidateOn("sometimes"); err == nil || !strings.Contains(err.Error(), "failure, success or always") {
		t.Fatal(err)
	}
}

func TestWebhook(t *testing.T) {
	var got map[string]any
	var ctype string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctype = r.Header.Get("Content-Type")
		_ = json.NewDecoder(r.Body).Decode(&got)
	}))
	defer srv.Close()
	w := notify.Webhook{URL: srv.URL + "/services/T000/B000/secret"}
	if err := w.Notify(context.Background(), event(true)); err != nil {
		t.Fatal(err)
	}
	if ctype != "application/json" {
		t.Fatal(ctype)
	}
	text, _ := got["text"].(string)
	if !strings.Contains(text, "cfbackup backup FAILED on h1 (d1)") || !strings.Contains(text, "token rejected") {
		t.Fatalf("text %q", text)
	}
	if got["status"] != "failure" || got["exit_code"].(float64) != 5 || got["duration_seconds"].(float64) != 1.5 {
		t.Fatalf("body %v", got)
	}
	if strings.Contains(w.Name(), "secret") {
		t.Fatal("name leaks the path")
	}
}

func TestWebhookErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such hook", http.StatusNotFound)
	}))
	defer srv.Close()
	err := notify.Webhook{URL: srv.URL + "/hook/secret-token"}.Notify(context.Background(), event(false))
	if err == nil || !strings.Contains(err.Error(), "HTTP 404") || strings.Contains(err.Error(), "secret-token") {
		t.Fatalf("err %v", err)
	}
	// Unreachable: a closed port. The error must not print the URL's secret path.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	err = notify.Webhook{URL: "http://" + addr + "/hook/secret-token"}.Notify(context.Background(), event(false))
	if err == nil || strings.Contains(err.Error(), "secret-token") {
		t.Fatalf("err %v", err)
	}
}

func hostPort(t *testing.T, addr string) (string, int) {
	h, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return h, n
}

func TestSMTP(t *testing.T) {
	srv := smtpserver.Start(t, "right")
	h, p := hostPort(t, srv.Addr)
	m := notify.SMTP{Host: h, Port: p, Username: "bot", Password: "right", From: "cfbackup@example.com", To: []string{"ops@example.com", "cto@example.com"}}
	if err := m.Notify(context.Background(), event(true)); err != nil {
		t.Fatal(err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	msg := msgs[0]
	if !strings.HasPrefix(msg.From, "MAIL FROM:<cfbackup@example.com>") {
		t.Fatalf("from %q", msg.From)
	}
	if len(msg.To) != 2 || !strings.Contains(msg.To[1], "cto@example.com") {
		t.Fatalf("rcpt %q", msg.To)
	}
	if msg.Auth != "\x00bot\x00right" {
		t.Fatalf("auth %q", msg.Auth)
	}
	for _, want := range []string{"Subject: cfbackup backup FAILED on h1 (d1)\r\n", "To: ops@example.com, cto@example.com\r\n", "Content-Type: text/plain; charset=utf-8", "Error (exit 5): D1 export failed: token rejected\r\n", "Repository: s3://b/p\r\n"} {
		if !strings.Contains(msg.Data, want) {
			t.Errorf("message lacks %q:\n%s", want, msg.Data)
		}
	}
}

func TestSMTPErrors(t *testing.T) {
	srv := smtpserver.Start(t, "right")
	h, p := hostPort(t, srv.Addr)
	m := notify.SMTP{Host: h, Port: p, Username: "bot", Password: "wrong", From: "a@b.c", To: []string{"d@e.f"}}
	if err := m.Notify(context.Background(), event(false)); err == nil || !strings.Contains(err.Error(), "authenticate as bot") || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("err %v", err)
	}
	for _, bad := range []notify.SMTP{{From: "a@b.c", To: []string{"d@e.f"}}, {Host: h, To: []string{"d@e.f"}}, {Host: h, From: "a@b.c"}, {Host: h, From: "a@b.c", To: []string{"x"}}, {Host: h, From: "a@b.c", To: []string{"d@e.f"}, Username: "u"}} {
		if err := bad.Notify(context.Background(), event(false)); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}

// A webhook that answers an error with a body echoing the request URL (its path and query are the
// token) must not put the token into the error, which is logged: the body is never shown verbatim.
func TestWebhookErrorBodyEchoingTheURL(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "invalid hook "+r.URL.String()+" (token "+r.URL.Query().Get("token")+")", http.StatusForbidden)
	}))
	defer srv.Close()
	err := notify.Webhook{URL: srv.URL + "/hook/T0/B0/secret-path?token=qs-secret-42"}.Notify(context.Background(), event(false))
	if err == nil || !strings.Contains(err.Error(), "HTTP 403") {
		t.Fatalf("err %v", err)
	}
	for _, leak := range []string{"secret-path", "qs-secret-42", "T0/B0"} {
		if strings.Contains(err.Error(), leak) {
			t.Errorf("the error holds %q: %v", leak, err)
		}
	}
	// A short answer that is only a status word still helps the operator, and is kept.
	srv2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "invalid_token", http.StatusForbidden)
	}))
	defer srv2.Close()
	err = notify.Webhook{URL: srv2.URL + "/hook/secret-path"}.Notify(context.Background(), event(false))
	if err == nil || !strings.Contains(err.Error(), "invalid_token") {
		t.Fatalf("err %v", err)
	}
	// A body that repeats a bare piece of the URL's path is not shown either.
	srv3 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "unknown hook secretpath99", http.StatusNotFound)
	}))
	defer srv3.Close()
	err = notify.Webhook{URL: srv3.URL + "/hooks/secretpath99"}.Notify(context.Background(), event(false))
	if err == nil || strings.Contains(err.Error(), "secretpath99") {
		t.Fatalf("err %v", err)
	}
}
