package doctor_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cfbackup/cfbackup/pkg/doctor"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/source"
)

// TestClockSkew grades a real HTTP server's Date header against the host's clock: within a minute
// ok, up to 15 minutes warn, beyond fail. The server's clock is offset, not the host's.
func TestClockSkew(t *testing.T) {
	var offset time.Duration
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", time.Now().Add(offset).UTC().Format(http.TimeFormat))
		w.WriteHeader(http.StatusForbidden) // an unsigned request to S3: refused, but dated
	}))
	defer srv.Close()
	cases := []struct {
		offset time.Duration
		status source.Status
		text   string
	}{
		{0, source.StatusOK, "within a second"},
		{40 * time.Second, source.StatusOK, "40s behind"},
		{-2 * time.Minute, source.StatusWarn, "2m0s ahead of"},
		{14 * time.Minute, source.StatusWarn, "14m0s behind"},
		{16 * time.Minute, source.StatusFail, "RequestTimeTooSkewed"},
		{-3 * time.Hour, source.StatusFail, "3h0m0s ahead of"},
	}
	for _, c := range cases {
		offset = c.offset
		f := (&doctor.ClockCheck{URL: srv.URL}).Check(context.Background())
		if f.Status != c.status || !strings.Contains(f.Detail, c.text) {
			t.Errorf("offset %v: got %s %q, want %s containing %q", c.offset, f.Status, f.Detail, c.status, c.text)
		}
		if f.Status == source.StatusFail && f.Class != errclass.Failure {
			t.Errorf("offset %v: class %v", c.offset, f.Class)
		}
		if f.Status != source.StatusOK && f.Fix == "" {
			t.Errorf("offset %v: no fix", c.offset)
		}
	}
}

// TestClockNoDate: a server without a Date header proves nothing either way.
func TestClockNoDate(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Date"] = nil // net/http adds one unless told not to
	}))
	defer srv.Close()
	if f := (&doctor.ClockCheck{URL: srv.URL}).Check(context.Background()); f.Status != source.StatusSkip {
		t.Fatalf("got %s %q, want skip", f.Status, f.Detail)
	}
}

func TestSkewUsesMidpointAndDateResolution(t *testing.T) {
	sent := time.Date(2026, 12, 3, 10, 0, 0, 200e6, time.UTC)
	received := sent.Add(600 * time.Millisecond) // midpoint 10:00:00.5
	// The server's clock agrees: its Date says 10:00:00 (cut to the second).
	if got := doctor.Skew(sent, received, time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)); got != 0 {
		t.Fatalf("agreeing clocks: skew %v", got)
	}
	if got := doctor.Skew(sent, received, time.Date(2026, 12, 3, 9, 58, 0, 0, time.UTC)); got != -2*time.Minute {
		t.Fatalf("server 2 min behind: skew %v", got)
	}
}
