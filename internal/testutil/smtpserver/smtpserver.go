// Package smtpserver is a tiny real SMTP server on loopback for tests: it speaks enough of RFC 5321
// (EHLO/HELO, AUTH PLAIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT) for net/smtp, and records every message.
package smtpserver

import (
	"bufio"
	"encoding/base64"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
)

// Message is one delivered e-mail.
type Message struct {
	From string   // MAIL FROM line
	To   []string // RCPT TO lines
	Auth string   // decoded AUTH PLAIN credentials ("\x00user\x00pass"), if any
	Data string   // the message as received (CRLF line endings, dot-stuffing removed)
}

// Server is a running test SMTP server.
type Server struct {
	Addr string
	// Password, when set, makes the server offer AUTH PLAIN and accept only this password.
	password string

	mu   sync.Mutex
	msgs []Message
}

// Start listens on 127.0.0.1 and serves until the test ends. With a password, AUTH PLAIN is offered.
func Start(t testing.TB, password string) *Server {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	s := &Server{Addr: l.Addr().String(), password: password}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

// Messages returns the messages delivered so far.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

func (s *Server) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	say := func(l string) { _, _ = io.WriteString(c, l+"\r\n") }
	var m Message
	say("220 cfbackup-test ESMTP")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		switch strings.ToUpper(strings.SplitN(line, " ", 2)[0]) {
		case "EHLO":
			if s.password != "" {
				say("250-cfbackup-test")
				say("250 AUTH PLAIN")
			} else {
				say("250 cfbackup-test")
			}
		case "HELO":
			say("250 cfbackup-test")
		case "AUTH":
			b, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(line, "AUTH PLAIN "))
			m.Auth = string(b)
			if s.password != "" && strings.HasSuffix(m.Auth, "\x00"+s.password) {
				say("235 2.7.0 authenticated")
			} else {
				say("535 5.7.8 bad credentials")
			}
		case "MAIL":
			m.From = line
			say("250 ok")
		case "RCPT":
			m.To = append(m.To, line)
			say("250 ok")
		case "DATA":
			say("354 end with <CRLF>.<CRLF>")
			var b strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				b.WriteString(strings.TrimPrefix(l, "."))
			}
			m.Data = b.String()
			s.mu.Lock()
			s.msgs = append(s.msgs, m)
			s.mu.Unlock()
			m = Message{Auth: m.Auth}
			say("250 queued")
		case "RSET":
			m = Message{Auth: m.Auth}
			say("250 ok")
		case "NOOP":
			say("250 ok")
		case "QUIT":
			say("221 bye")
			return
		default:
			say("502 command not implemented")
		}
	}
}
