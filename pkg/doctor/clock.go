package doctor

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/source"
)

// Clock skew limits: S3 refuses a signed request whose time is more than 15 minutes off the server's
// (RequestTimeTooSkewed), and locks, Object Lock retention and point-in-time restores compare this
// host's times with the store's long before that.
const (
	SkewWarn = time.Minute
	SkewFail = 15 * time.Minute
)

// ClockCheck compares this host's clock with the Date header of an S3 server's answer. The request
// is unsigned: every answer, even a 403, carries the server's Date.
type ClockCheck struct {
	// URL is the S3 endpoint (CFBACKUP_S3_ENDPOINT).
	URL    string
	Client *http.Client
	Now    func() time.Time
}

// Skew is the server's time minus this host's at the middle of the request, to the second: the Date
// header is cut to the second, so the server's time lies in [server, server+1s) and its middle is
// the best estimate.
func Skew(sent, received, server time.Time) time.Duration {
	mid := sent.Add(received.Sub(sent) / 2)
	return server.Add(500 * time.Millisecond).Sub(mid).Round(time.Second)
}

// Check asks the server for its time and grades the difference: ok within SkewWarn, warn up to
// SkewFail, fail beyond.
func (c *ClockCheck) Check(ctx context.Context) source.Finding {
	const check = "clock"
	now := c.Now
	if now == nil {
		now = time.Now
	}
	hc := c.Client
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, c.URL, nil)
	if err != nil {
		return source.Fail(Repository, check, errclass.Usage, "bad S3 endpoint "+c.URL+": "+err.Error(), "set CFBACKUP_S3_ENDPOINT to the server's URL")
	}
	sent := now()
	resp, err := hc.Do(req)
	if err != nil {
		return source.Warn(Repository, check, "cannot reach the S3 endpoint to read its clock: "+err.Error(), "check CFBACKUP_S3_ENDPOINT and the network")
	}
	received := now()
	resp.Body.Close()
	server, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		return source.Skip(Repository, check, "the S3 server sent no usable Date header; the clock could not be compared")
	}
	skew := Skew(sent, received, server)
	abs := skew
	if abs < 0 {
		abs = -abs
	}
	what := fmt.Sprintf("this host's clock is %s %s the S3 server's (%s)", abs, aheadBehind(skew), server.UTC().Format(time.RFC1123))
	if abs <= time.Second {
		what = "this host's clock agrees with the S3 server's within a second"
	}
	fix := "synchronise this host's clock (NTP: systemd-timesyncd, chrony)"
	switch {
	case abs > SkewFail:
		return source.Fail(Repository, check, errclass.Failure, what+": beyond 15 minutes S3 refuses every signed request (RequestTimeTooSkewed)", fix)
	case abs > SkewWarn:
		return source.Warn(Repository, check, what+": locks and retention times will be off, and at 15 minutes S3 refuses signed requests", fix)
	}
	return source.OK(Repository, check, what)
}

func aheadBehind(skew time.Duration) string {
	if skew > 0 {
		return "behind" // the server is later than this host
	}
	return "ahead of"
}
