package notify_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

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

// smtpServer is a tiny real SMTP server: it speaks enough of RFC 5321 (EHLO, AUTH PLAIN, MAIL, RCPT,
// DATA, QUIT) for net/smtp and records what it received.
type smtpServer struct {
	addr string
	mu   sync.Mutex
	from string
	rcpt []string
	data string
	auth string
}

func startSMTP(t *testing.T, withAuth bool) *smtpServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	s := &smtpServer{addr: l.Addr().String()}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go s.serve(c, withAuth)
		}
	}()
	return s
}

func (s *smtpServer) serve(c net.Conn, withAuth bool) {
	defer c.Close()
	r := bufio.NewReader(c)
	say := func(l string) { io.WriteString(c, l+"\r\n") }
	say("220 test ESMTP")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb := strings.ToUpper(strings.SplitN(line, " ", 2)[0])
		switch verb {
		case "EHLO", "HELO":
			if withAuth {
				say("250-test")
				say("250 AUTH PLAIN")
			} else {
				say("250 test")
			}
		case "AUTH":
			b, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(line, "AUTH PLAIN "))
			s.mu.Lock()
			s.auth = string(b)
			s.mu.Unlock()
			if strings.HasSuffix(string(b), "\x00right") {
				say("235 ok")
			} else {
				say("535 bad credentials")
			}
		case "MAIL":
			s.mu.Lock()
			s.from = line
			s.mu.Unlock()
			say("250 ok")
		case "RCPT":
			s.mu.Lock()
			s.rcpt = append(s.rcpt, line)
			s.mu.Unlock()
			say("250 ok")
		case "DATA":
			say("354 go on")
			var b strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				b.WriteString(l)
			}
			s.mu.Lock()
			s.data = b.String()
			s.mu.Unlock()
			say("250 queued")
		case "QUIT":
			say("221 bye")
			return
		default:
			say("502 unknown")
		}
	}
}

func hostPort(t *testing.T, addr string) (string, int) {
	h, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return h, n
}

func TestSMTP(t *testing.T) {
	srv := startSMTP(t, true)
	h, p := hostPort(t, srv.addr)
	m := notify.SMTP{Host: h, Port: p, Username: "bot", Password: "right", From: "cfbackup@example.com", To: []string{"ops@example.com", "cto@example.com"}}
	if err := m.Notify(context.Background(), event(true)); err != nil {
		t.Fatal(err)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.from != "MAIL FROM:<cfbackup@example.com>" && !strings.HasPrefix(srv.from, "MAIL FROM:<cfbackup@example.com>") {
		t.Fatalf("from %q", srv.from)
	}
	if len(srv.rcpt) != 2 || !strings.Contains(srv.rcpt[1], "cto@example.com") {
		t.Fatalf("rcpt %q", srv.rcpt)
	}
	if srv.auth != "\x00bot\x00right" {
		t.Fatalf("auth %q", srv.auth)
	}
	for _, want := range []string{"Subject: cfbackup backup FAILED on h1 (d1)\r\n", "To: ops@example.com, cto@example.com\r\n", "Content-Type: text/plain; charset=utf-8", "Error (exit 5): D1 export failed: token rejected\r\n", "Repository: s3://b/p\r\n"} {
		if !strings.Contains(srv.data, want) {
			t.Errorf("message lacks %q:\n%s", want, srv.data)
		}
	}
}

func TestSMTPErrors(t *testing.T) {
	srv := startSMTP(t, true)
	h, p := hostPort(t, srv.addr)
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
