// Package notify tells people how a cfbackup run ended: a webhook (JSON with a Slack-compatible "text"
// field) and/or an e-mail over SMTP. Failures are always sent; successes only when asked (On).
//
// A notification that cannot be delivered never changes the run's outcome: callers log and count the
// error and carry on (a backup that worked must not be reported as failed because a chat was down).
package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/smtp"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/cfbackup/cfbackup/pkg/errclass"
)

// When to notify.
const (
	OnFailure = "failure" // only failed runs (the default)
	OnSuccess = "success" // failed runs and successful ones (a failure is always sent)
	OnAlways  = "always"  // the same as success: every run
)

// ErrBadSetting: a notification setting is invalid; the message names it.
var ErrBadSetting = errclass.New(errclass.Usage, "invalid notification setting")

// ValidateOn checks a --notify-on value.
func ValidateOn(on string) error {
	switch on {
	case "", OnFailure, OnSuccess, OnAlways:
		return nil
	}
	return fmt.Errorf("%w: --notify-on %q: use failure, success or always", ErrBadSetting, on)
}

// Wanted reports whether a run with this outcome is notified under the policy on.
func Wanted(on string, failed bool) bool {
	return failed || on == OnSuccess || on == OnAlways
}

// Event is what a notification says. It never carries secrets, item, table or object names.
type Event struct {
	Command    string        `json:"command"`
	Status     string        `json:"status"` // "success" | "failure"
	Error      string        `json:"error,omitempty"`
	ExitCode   int           `json:"exit_code"`
	Repository string        `json:"repository"`
	Host       string        `json:"host"`
	Actor      string        `json:"actor"`
	Time       time.Time     `json:"time"`
	Duration   time.Duration `json:"-"`
	Components []string      `json:"components"`
	Snapshots  []string      `json:"snapshots"`
	Bytes      int64         `json:"bytes"`
	Items      int64         `json:"items"`
}

// StatusBreakGlass is the status of the alert a restore sends, before it runs, when it bypasses
// two-person approval with --break-glass (docs/APPROVAL.md); Error then holds the reason given.
const StatusBreakGlass = "break-glass"

// Failed reports whether the event is a failure (a break-glass alert counts: someone must look).
func (e Event) Failed() bool { return e.Status != "success" }

// Subject is a one-line summary, used as the e-mail subject and the first line of the text.
func (e Event) Subject() string {
	verdict := map[bool]string{true: "FAILED", false: "succeeded"}[e.Failed()]
	if e.Status == StatusBreakGlass {
		verdict = "BREAK-GLASS (approval bypassed)"
	}
	s := fmt.Sprintf("cfbackup %s %s on %s", e.Command, verdict, e.Host)
	if len(e.Components) > 0 {
		s += " (" + strings.Join(e.Components, ",") + ")"
	}
	return s
}

// Text is the human-readable body (Slack's "text", the e-mail body).
func (e Event) Text() string {
	var b strings.Builder
	b.WriteString(e.Subject())
	b.WriteString("\n")
	switch {
	case e.Status == StatusBreakGlass:
		fmt.Fprintf(&b, "Reason: %s\n", e.Error)
	case e.Failed():
		fmt.Fprintf(&b, "Error (exit %d): %s\n", e.ExitCode, e.Error)
	}
	fmt.Fprintf(&b, "Repository: %s\nActor: %s\nTime: %s\nDuration: %s\n", e.Repository, e.Actor, e.Time.UTC().Format(time.RFC3339), e.Duration.Round(time.Millisecond))
	if len(e.Snapshots) > 0 {
		fmt.Fprintf(&b, "Snapshots: %s\n", strings.Join(e.Snapshots, ", "))
	}
	if e.Bytes > 0 || e.Items > 0 {
		fmt.Fprintf(&b, "Items: %d, bytes: %d\n", e.Items, e.Bytes)
	}
	return b.String()
}

// Notifier delivers one event.
type Notifier interface {
	Notify(ctx context.Context, e Event) error
	// Name says where it delivers, without secrets ("webhook hooks.example.com", "smtp mail:587").
	Name() string
}

// Webhook POSTs the event as JSON: the Event fields plus "text" (Slack, Mattermost and Teams
// incoming webhooks show it) and "duration_seconds". Any 2xx status is success.
type Webhook struct {
	URL    string
	Client *http.Client
}

// Name is the webhook's host: its path and query are often the secret.
func (w Webhook) Name() string {
	if u, err := url.Parse(w.URL); err == nil {
		return "webhook " + u.Host
	}
	return "webhook"
}

// Notify sends the event.
func (w Webhook) Notify(ctx context.Context, e Event) error {
	body := struct {
		Text string `json:"text"`
		Event
		DurationSeconds float64 `json:"duration_seconds"`
	}{e.Text(), e, e.Duration.Seconds()}
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("%s: %w", w.Name(), scrub(err, w.URL))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "cfbackup")
	c := w.Client
	if c == nil {
		c = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", w.Name(), scrub(err, w.URL))
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		if word := statusWord(string(msg), w.URL); word != "" {
			return fmt.Errorf("%s: HTTP %d: %s", w.Name(), resp.StatusCode, word)
		}
		return fmt.Errorf("%s: HTTP %d (the %d-byte answer is not shown: it may repeat the webhook URL, which is a secret)", w.Name(), resp.StatusCode, len(msg))
	}
	return nil
}

// statusWordRE is the only kind of error body shown: a short phrase of words (Slack's "invalid_token",
// "no_service", "no such hook"), no URL, path or query.
var statusWordRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9 _.,:-]{0,63}$`)

// statusWord is a webhook's error answer when it is a short status phrase that holds no piece of the
// webhook URL; "" otherwise. A response body is never logged verbatim: services echo the request URL,
// whose path and query are the token.
func statusWord(body, secretURL string) string {
	body = strings.TrimSpace(body)
	if !statusWordRE.MatchString(body) {
		return ""
	}
	for _, piece := range urlPieces(secretURL) {
		if strings.Contains(strings.ToLower(body), strings.ToLower(piece)) {
			return ""
		}
	}
	return body
}

// urlPieces are the parts of a URL that may be secret: its user info, each path segment and each
// query value, at least 4 characters long.
func urlPieces(raw string) []string {
	u, err := url.Parse(raw)
	if err != nil {
		return []string{raw}
	}
	var out []string
	add := func(p string) {
		if len(p) >= 4 {
			out = append(out, p)
		}
	}
	if u.User != nil {
		add(u.User.Username())
		if pw, ok := u.User.Password(); ok {
			add(pw)
		}
	}
	for _, seg := range strings.Split(u.Path, "/") {
		add(seg)
	}
	for _, vs := range u.Query() {
		for _, v := range vs {
			add(v)
		}
	}
	return out
}

// scrub removes the webhook URL — whole, or any secret piece of it (path segments, query values, user
// info) — from an error message, and drops url.Error's copy of the URL.
func scrub(err error, secretURL string) error {
	if ue := new(url.Error); errors.As(err, &ue) {
		err = fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	msg := err.Error()
	clean := msg
	if secretURL != "" {
		clean = strings.ReplaceAll(clean, secretURL, "[webhook URL]")
		for _, piece := range urlPieces(secretURL) {
			clean = strings.ReplaceAll(clean, piece, "[REDACTED]")
		}
	}
	if clean != msg {
		return errors.New(clean)
	}
	return err
}

// SMTP sends the event as a plain-text e-mail. Port 465 uses TLS from the start; otherwise STARTTLS is
// used whenever the server offers it. With a Username, it authenticates with PLAIN, which Go only
// allows over TLS or to localhost, so a password is never sent in clear over a network.
type SMTP struct {
	Host     string
	Port     int
	Username string
	Password string // from CFBACKUP_SMTP_PASSWORD only
	From     string
	To       []string
	// TLSConfig overrides the TLS settings (tests use it for a server with a private CA).
	TLSConfig *tls.Config
	Timeout   time.Duration
}

// Name is the server address.
func (s SMTP) Name() string { return "smtp " + net.JoinHostPort(s.Host, strconv.Itoa(s.port())) }

func (s SMTP) port() int {
	if s.Port == 0 {
		return 587
	}
	return s.Port
}

// Validate checks the settings that are needed to send.
func (s SMTP) Validate() error {
	switch {
	case s.Host == "":
		return fmt.Errorf("%w: smtp_host (CFBACKUP_SMTP_HOST) is empty", ErrBadSetting)
	case s.From == "":
		return fmt.Errorf("%w: smtp_from (CFBACKUP_SMTP_FROM) is empty: set the sender address", ErrBadSetting)
	case len(s.To) == 0:
		return fmt.Errorf("%w: smtp_to (CFBACKUP_SMTP_TO) is empty: set one or more recipients, comma-separated", ErrBadSetting)
	case s.Username != "" && s.Password == "":
		return fmt.Errorf("%w: smtp_username is set but CFBACKUP_SMTP_PASSWORD is not (the password is read from the environment only)", ErrBadSetting)
	}
	for _, a := range append([]string{s.From}, s.To...) {
		if strings.ContainsAny(a, "\r\n<>") || !strings.Contains(a, "@") {
			return fmt.Errorf("%w: e-mail address %q is not valid", ErrBadSetting, a)
		}
	}
	return nil
}

// Notify sends the e-mail.
func (s SMTP) Notify(ctx context.Context, e Event) error {
	if err := s.Validate(); err != nil {
		return err
	}
	timeout := s.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	addr := net.JoinHostPort(s.Host, strconv.Itoa(s.port()))
	tcfg := s.TLSConfig
	if tcfg == nil {
		tcfg = &tls.Config{ServerName: s.Host, MinVersion: tls.VersionTLS12}
	}
	d := &net.Dialer{Timeout: timeout}
	var conn net.Conn
	var err error
	if s.port() == 465 {
		conn, err = (&tls.Dialer{NetDialer: d, Config: tcfg}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", s.Name(), err)
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	c, err := smtp.NewClient(conn, s.Host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("%s: %w", s.Name(), err)
	}
	defer c.Close()
	if err := s.send(c, tcfg, e); err != nil {
		return fmt.Errorf("%s: %w", s.Name(), err)
	}
	return nil
}

func (s SMTP) send(c *smtp.Client, tcfg *tls.Config, e Event) error {
	if err := c.Hello(localName()); err != nil {
		return err
	}
	if ok, _ := c.Extension("STARTTLS"); ok && s.port() != 465 {
		if err := c.StartTLS(tcfg); err != nil {
			return fmt.Errorf("STARTTLS: %w", err)
		}
	}
	if s.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", s.Username, s.Password, s.Host)); err != nil {
			return fmt.Errorf("authenticate as %s: %w", s.Username, err)
		}
	}
	if err := c.Mail(s.From); err != nil {
		return err
	}
	for _, to := range s.To {
		if err := c.Rcpt(to); err != nil {
			return fmt.Errorf("recipient %s: %w", to, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(s.message(e)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

func (s SMTP) message(e Event) []byte {
	var b bytes.Buffer
	hdr := func(k, v string) {
		fmt.Fprintf(&b, "%s: %s\r\n", k, strings.NewReplacer("\r", " ", "\n", " ").Replace(v))
	}
	hdr("From", s.From)
	hdr("To", strings.Join(s.To, ", "))
	hdr("Subject", e.Subject())
	hdr("Date", e.Time.Format(time.RFC1123Z))
	var id [12]byte
	_, _ = rand.Read(id[:])
	hdr("Message-ID", "<"+hex.EncodeToString(id[:])+"@cfbackup>")
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding", "8bit")
	hdr("X-Cfbackup-Status", e.Status)
	b.WriteString("\r\n")
	// smtp's Data writer dot-stuffs lines that start with ".".
	for _, line := range strings.Split(strings.TrimRight(e.Text(), "\n"), "\n") {
		b.WriteString(line + "\r\n")
	}
	return b.Bytes()
}

func localName() string {
	return "localhost"
}

// Send delivers e through every notifier, returning one error per notifier that failed.
func Send(ctx context.Context, e Event, ns []Notifier) []error {
	var errs []error
	for _, n := range ns {
		if err := n.Notify(ctx, e); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}
