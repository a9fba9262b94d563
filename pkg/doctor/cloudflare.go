package doctor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/source"
)

// Cloudflare is the component name of the API token's findings.
const Cloudflare = "cloudflare"

// CloudflareOptions is what the token checks need: whether the settings are there (never their
// values) and the client.
type CloudflareOptions struct {
	TokenSet, AccountSet bool
	Client               func() (*cloudflare.Client, error)
	Now                  func() time.Time
}

// TokenExpiryWarn is how long before its expiry a token is reported (a warning): time to roll it
// before the scheduled backups start failing.
const TokenExpiryWarn = 14 * 24 * time.Hour

// CheckCloudflare checks that the API token is set and that Cloudflare calls it valid and active
// (/user/tokens/verify, which needs no permission). ok is false when the components should not probe
// their permissions with it.
func CheckCloudflare(ctx context.Context, o CloudflareOptions) (findings []source.Finding, ok bool) {
	if !o.TokenSet {
		return []source.Finding{source.Fail(Cloudflare, "token.present", errclass.Remote, "CLOUDFLARE_API_TOKEN is not set",
			"create an API token (dashboard → My Profile → API Tokens) with the permissions the components need (docs/DOCTOR.md) and export CLOUDFLARE_API_TOKEN; it is never a flag")}, false
	}
	out := []source.Finding{source.OK(Cloudflare, "token.present", "CLOUDFLARE_API_TOKEN is set (from the environment)")}
	if !o.AccountSet {
		return append(out, source.Fail(Cloudflare, "account", errclass.Remote, "CLOUDFLARE_ACCOUNT_ID is not set",
			"export CLOUDFLARE_ACCOUNT_ID (in the dashboard URL, or Workers & Pages → Account details)")), false
	}
	cl, err := o.Client()
	if err != nil {
		return append(out, source.Fail(Cloudflare, "token.verify", errclass.Remote, err.Error(), "check CLOUDFLARE_API_TOKEN and CLOUDFLARE_ACCOUNT_ID")), false
	}
	ts, err := cl.VerifyToken(ctx)
	switch {
	case errors.Is(err, cloudflare.ErrAuth):
		return append(out, source.Fail(Cloudflare, "token.verify", errclass.Remote, "Cloudflare rejects the token: "+err.Error(),
			"the token was deleted, rolled or mistyped: create a new one and update CLOUDFLARE_API_TOKEN")), false
	case err != nil:
		return append(out, source.Fail(Cloudflare, "token.verify", errclass.Remote, "cannot verify the token: "+err.Error(),
			"check network access to the Cloudflare API (CFBACKUP_CLOUDFLARE_API_URL for an emulator)")), false
	case ts.Status != "active":
		return append(out, source.Fail(Cloudflare, "token.verify", errclass.Remote, fmt.Sprintf("the token is %s, not active", ts.Status),
			"re-enable the token or create a new one")), false
	}
	detail := "Cloudflare says the token is valid and active"
	if ts.ExpiresOn != nil {
		detail += ", until " + ts.ExpiresOn.UTC().Format("2006-01-02 15:04 UTC")
		now := time.Now
		if o.Now != nil {
			now = o.Now
		}
		if left := ts.ExpiresOn.Sub(now()); left < TokenExpiryWarn {
			return append(out, source.Warn(Cloudflare, "token.verify", fmt.Sprintf("%s: it expires in %s", detail, left.Round(time.Hour)),
				"roll the token or create a new one before it expires, and update CLOUDFLARE_API_TOKEN")), true
		}
	}
	return append(out, source.OK(Cloudflare, "token.verify", detail)), true
}
