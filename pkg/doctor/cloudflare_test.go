package doctor_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cfbackup/cfbackup/internal/cftest"
	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/doctor"
	"github.com/cfbackup/cfbackup/pkg/source"
)

// TestCheckCloudflare runs the token checks against the emulated account: a token that is not set, an
// unknown one, one about to expire (a warning, still usable) and a healthy one.
func TestCheckCloudflare(t *testing.T) {
	srv, base := cftest.Start(t, cftest.Options{})
	srv.AddExpiringToken("short-lived", time.Now().Add(3*24*time.Hour), cftest.D1Read)
	srv.AddExpiringToken("long-lived", time.Now().Add(90*24*time.Hour), cftest.D1Read)
	srv.AddExpiringToken("expired", time.Now().Add(-time.Hour), cftest.D1Read)
	ctx := context.Background()
	opts := func(tok string) doctor.CloudflareOptions {
		return doctor.CloudflareOptions{TokenSet: tok != "", AccountSet: true, Client: func() (*cloudflare.Client, error) {
			return cloudflare.New(cloudflare.Config{AccountID: srv.AccountID(), APIToken: tok, BaseURL: base + "/client/v4", MaxRetries: 1})
		}}
	}
	last := func(fs []source.Finding) source.Finding { return fs[len(fs)-1] }
	cases := []struct {
		token  string
		ok     bool
		status source.Status
		text   string
	}{
		{"", false, source.StatusFail, "CLOUDFLARE_API_TOKEN is not set"},
		{"unknown", false, source.StatusFail, "1000 Invalid API Token"},
		{"expired", false, source.StatusFail, "Cloudflare rejects the token"},
		{"short-lived", true, source.StatusWarn, "it expires in 72h"},
		{"long-lived", true, source.StatusOK, "valid and active, until"},
		{"test-token", true, source.StatusOK, "valid and active"},
	}
	for _, c := range cases {
		fs, ok := doctor.CheckCloudflare(ctx, opts(c.token))
		f := last(fs)
		if ok != c.ok || f.Status != c.status || !strings.Contains(f.Detail, c.text) {
			t.Errorf("token %q: ok %v, %s %q; want %v, %s containing %q", c.token, ok, f.Status, f.Detail, c.ok, c.status, c.text)
		}
		if c.token != "" && strings.Contains(f.Detail+f.Fix, c.token) {
			t.Errorf("token %q printed", c.token)
		}
	}
	o := opts("test-token")
	o.AccountSet = false
	if fs, ok := doctor.CheckCloudflare(ctx, o); ok || last(fs).Check != "account" {
		t.Fatalf("no account id: %v", fs)
	}
}
