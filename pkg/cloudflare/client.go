// Package cloudflare holds every Cloudflare REST call cfbackup makes, and nothing else.
//
// It sits on the generated SDK github.com/cloudflare/cloudflare-go/v7 (pinned at v7.10.0), through its
// sub-packages only (d1, durable_objects, option): importing the SDK's root package links every Cloudflare service
// (+17 MB, minutes of cold build). Minor SDK releases break APIs, so the rest of cfbackup sees only the
// small types declared here, and errors are classified into the sentinels below so the CLI can map them
// to exit codes and to messages that name the fix.
package cloudflare

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cloudflare/cloudflare-go/v7/d1"
	"github.com/cloudflare/cloudflare-go/v7/durable_objects"
	"github.com/cloudflare/cloudflare-go/v7/option"
)

// DefaultBaseURL is Cloudflare's REST API root; CFBACKUP_CLOUDFLARE_API_URL overrides it (tests, cfemu).
const DefaultBaseURL = "https://api.cloudflare.com/client/v4"

// Sentinel errors, wrapped with %w; the CLI branches on them with errors.Is.
var (
	// ErrAuth: the API token was rejected (401/403).
	ErrAuth = errclass.New(errclass.Remote, "cloudflare API token rejected")
	// ErrNotFound: the database (or other resource) does not exist in this account.
	ErrNotFound = errclass.New(errclass.NotFound, "not found in the Cloudflare account")
	// ErrUnreachable: the API could not be reached at all (DNS, refused connection, TLS).
	ErrUnreachable = errclass.New(errclass.Remote, "cloudflare API unreachable")
	// ErrSignedURLExpired: a signed download/upload URL is no longer valid; the caller starts over.
	ErrSignedURLExpired = errclass.New(errclass.Remote, "signed URL expired")
	// ErrTaskFailed: an asynchronous export or import ended with status "error".
	ErrTaskFailed = errclass.New(errclass.Remote, "cloudflare task failed")
	// ErrExists: the resource (a database name) is already taken.
	ErrExists = errclass.New(errclass.Refused, "already exists in the Cloudflare account")
	// ErrOutsideWindow: a Time Travel time or bookmark is outside the database's retention window.
	ErrOutsideWindow = errclass.New(errclass.NotFound, "outside the Time Travel retention window")
	// ErrConfig: required settings (account id, token) are missing.
	ErrConfig = errclass.New(errclass.Remote, "cloudflare settings incomplete")
)

// Config carries what the client needs; secrets come from the environment via the CLI, never flags.
type Config struct {
	AccountID string
	APIToken  string
	// BaseURL defaults to DefaultBaseURL.
	BaseURL string
	// HTTPClient is used for API calls and for signed URLs; nil means a client with sane timeouts.
	HTTPClient *http.Client
	// MaxRetries for API calls (429 with Retry-After and 5xx are retried by the SDK); default 5.
	MaxRetries int
	// PollInterval is the first wait between polls of an export or import; it doubles up to 2 s.
	PollInterval time.Duration
	// Now is the clock used to measure how long a database was blocked; default time.Now.
	Now func() time.Time
}

// Client is the account-scoped handle every component's source uses.
type Client struct {
	cfg  Config
	db   *d1.DatabaseService
	do   *durable_objects.DurableObjectService
	http *http.Client
	// opts build the SDK services the other files create on demand (workers, r2).
	opts []option.RequestOption
}

// New checks the settings and builds a client. It makes no request.
func New(cfg Config) (*Client, error) {
	if cfg.AccountID == "" {
		return nil, fmt.Errorf("%w: CLOUDFLARE_ACCOUNT_ID is not set (find it in the dashboard URL or under Workers & Pages → Account details)", ErrConfig)
	}
	if cfg.APIToken == "" {
		return nil, fmt.Errorf("%w: CLOUDFLARE_API_TOKEN is not set (create a token with D1 Edit permission)", ErrConfig)
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = 5
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 100 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	hc := cfg.HTTPClient
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.ResponseHeaderTimeout = 10 * time.Minute
		hc = &http.Client{Transport: tr}
	}
	base := strings.TrimRight(cfg.BaseURL, "/") + "/"
	opts := []option.RequestOption{
		option.WithBaseURL(base),
		option.WithAPIToken(cfg.APIToken),
		option.WithHTTPClient(hc),
		option.WithMaxRetries(cfg.MaxRetries),
	}
	return &Client{cfg: cfg, db: d1.NewDatabaseService(opts...), do: durable_objects.NewDurableObjectService(opts...), http: hc, opts: opts}, nil
}

// AccountID is the account the client is scoped to.
func (c *Client) AccountID() string { return c.cfg.AccountID }

// classify turns SDK and transport errors into the package sentinels, keeping the original text.
func classify(err error, what string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var apiErr *d1.Error
	if errors.As(err, &apiErr) {
		msg := apiMessage(apiErr)
		switch {
		case apiErr.StatusCode == http.StatusUnauthorized || apiErr.StatusCode == http.StatusForbidden:
			return fmt.Errorf("%s: %w (HTTP %d: %s); check CLOUDFLARE_API_TOKEN and its permissions on account %s (D1 Edit for d1; Workers Scripts Read for do and config; see docs/CONFIG.md)", what, ErrAuth, apiErr.StatusCode, msg, accountOf(apiErr))
		case hasCode(apiErr, 7502) || apiErr.StatusCode == http.StatusConflict:
			return fmt.Errorf("%s: %w (HTTP %d: %s)", what, ErrExists, apiErr.StatusCode, msg)
		case apiErr.StatusCode == http.StatusNotFound:
			return fmt.Errorf("%s: %w (HTTP 404: %s)", what, ErrNotFound, msg)
		default:
			return fmt.Errorf("%s: HTTP %d: %s", what, apiErr.StatusCode, msg)
		}
	}
	var netErr net.Error
	var urlErr *url.Error
	if errors.As(err, &urlErr) || errors.As(err, &netErr) {
		return fmt.Errorf("%s: %w: %v (check network access and CFBACKUP_CLOUDFLARE_API_URL)", what, ErrUnreachable, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func hasCode(e *d1.Error, code int64) bool {
	for _, ed := range e.Errors {
		if ed.Code == code {
			return true
		}
	}
	return false
}

// accountOf names the account in a request path (…/accounts/<id>/…), for error messages.
func accountOf(e *d1.Error) string {
	if e.Request != nil {
		parts := strings.Split(e.Request.URL.Path, "/")
		for i := 0; i+1 < len(parts); i++ {
			if parts[i] == "accounts" {
				return parts[i+1]
			}
		}
	}
	return "(CLOUDFLARE_ACCOUNT_ID)"
}

func apiMessage(e *d1.Error) string {
	var parts []string
	for _, ed := range e.Errors {
		parts = append(parts, fmt.Sprintf("%d %s", int64(ed.Code), ed.Message))
	}
	if len(parts) == 0 {
		return http.StatusText(e.StatusCode)
	}
	return strings.Join(parts, "; ")
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func nextPoll(d time.Duration) time.Duration {
	d *= 2
	if d > 2*time.Second {
		d = 2 * time.Second
	}
	return d
}
