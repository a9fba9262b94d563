package cloudflare

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// TokenStatus is what GET /user/tokens/verify says of the API token: "active", "disabled" or
// "expired", and when it stops (or starts) being valid. It says nothing of permissions: those are
// proven only by calling the endpoints (Probe).
type TokenStatus struct {
	ID        string     `json:"id"`
	Status    string     `json:"status"`
	NotBefore *time.Time `json:"not_before,omitempty"`
	ExpiresOn *time.Time `json:"expires_on,omitempty"`
}

// probeEnvelope is the v4 API's answer around every result.
type probeEnvelope struct {
	Success bool `json:"success"`
	Errors  []struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"errors"`
	Result json.RawMessage `json:"result"`
}

// VerifyToken asks the API whether the token is valid (doctor). It needs no permission.
func (c *Client) VerifyToken(ctx context.Context) (TokenStatus, error) {
	var ts TokenStatus
	raw, err := c.get(ctx, "user/tokens/verify", nil, "verify the API token")
	if err != nil {
		return ts, err
	}
	if err := json.Unmarshal(raw, &ts); err != nil {
		return ts, fmt.Errorf("verify the API token: unexpected answer: %v", err)
	}
	return ts, nil
}

// Probe makes one harmless read of an account endpoint (a listing with per_page=1) to prove the token
// holds the permission it needs (doctor). path is relative to accounts/<id>/ ("d1/database").
// A permission missing is ErrAuth (Cloudflare answers 403 with code 10000 or 9109).
func (c *Client) Probe(ctx context.Context, path string, q url.Values) error {
	_, err := c.get(ctx, "accounts/"+url.PathEscape(c.cfg.AccountID)+"/"+path, q, "GET "+path)
	return err
}

// ProbeDelete deletes a resource that does not exist (path relative to accounts/<id>/, ending in a
// random name) to learn whether the token holds an edit permission without changing anything
// ('doctor --role'): Cloudflare checks the permission first, so ErrAuth means the token lacks it and
// ErrNotFound means it holds it.
func (c *Client) ProbeDelete(ctx context.Context, path string) error {
	_, err := c.call(ctx, http.MethodDelete, "accounts/"+url.PathEscape(c.cfg.AccountID)+"/"+path, nil, "DELETE "+path)
	return err
}

// get is one GET of the REST API outside the SDK (doctor's probes want per_page=1 and the raw error
// codes), classified like every other call.
func (c *Client) get(ctx context.Context, path string, q url.Values, what string) (json.RawMessage, error) {
	return c.call(ctx, http.MethodGet, path, q, what)
}

func (c *Client) call(ctx context.Context, method, path string, q url.Values, what string) (json.RawMessage, error) {
	u := strings.TrimRight(c.cfg.BaseURL, "/") + "/" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.cfg.APIToken)
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%s: %w: %v (check network access and CFBACKUP_CLOUDFLARE_API_URL)", what, ErrUnreachable, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %v", what, ErrUnreachable, err)
	}
	var env probeEnvelope
	_ = json.Unmarshal(b, &env)
	var parts []string
	for _, e := range env.Errors {
		parts = append(parts, fmt.Sprintf("%d %s", e.Code, e.Message))
	}
	msg := strings.Join(parts, "; ")
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return nil, fmt.Errorf("%s: %w (HTTP %d: %s)", what, ErrAuth, resp.StatusCode, msg)
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("%s: %w (HTTP 404: %s)", what, ErrNotFound, msg)
	case resp.StatusCode/100 != 2 || !env.Success:
		return nil, fmt.Errorf("%s: HTTP %d: %s", what, resp.StatusCode, msg)
	}
	return env.Result, nil
}
