package cloudflare

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/cloudflare/cloudflare-go/v7/d1"
	"github.com/cloudflare/cloudflare-go/v7/durable_objects"
	"github.com/cloudflare/cloudflare-go/v7/option"
	"github.com/cloudflare/cloudflare-go/v7/r2"
	"github.com/cloudflare/cloudflare-go/v7/workers"
)

// The configuration component reads Workers settings and the account's inventory. Every call goes
// through the SDK's typed method (same retries on 429/5xx, same errors) but keeps the response's raw
// JSON: the generated types drop fields they do not know, and a configuration backup must not.

// envelope is Cloudflare's response wrapper, with the result kept raw.
type envelope struct {
	Result     json.RawMessage `json:"result"`
	ResultInfo struct {
		Page       int    `json:"page"`
		PerPage    int    `json:"per_page"`
		Count      int    `json:"count"`
		TotalCount int    `json:"total_count"`
		Cursor     string `json:"cursor"`
	} `json:"result_info"`
}

func decodeEnvelope(raw json.RawMessage, what string) (envelope, error) {
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return env, fmt.Errorf("%s: unexpected response: %w", what, err)
	}
	return env, nil
}

// classifyFor is classify with the token permission the call needs named in an auth failure.
func classifyFor(err error, what, perm string) error {
	var apiErr *workers.Error
	if errors.As(err, &apiErr) && (apiErr.StatusCode == http.StatusUnauthorized || apiErr.StatusCode == http.StatusForbidden) {
		return fmt.Errorf("%s: %w (HTTP %d: %s); check that CLOUDFLARE_API_TOKEN has %s permission on account %s", what, ErrAuth, apiErr.StatusCode, apiMessage(apiErr), perm, accountOf(apiErr))
	}
	return classify(err, what)
}

// rawArray splits a JSON array result into its elements (null is an empty list).
func rawArray(res json.RawMessage, what string) ([]json.RawMessage, error) {
	if len(res) == 0 || string(res) == "null" {
		return nil, nil
	}
	var out []json.RawMessage
	if err := json.Unmarshal(res, &out); err != nil {
		return nil, fmt.Errorf("%s: expected a JSON array: %w", what, err)
	}
	return out, nil
}

func (c *Client) workers() *workers.WorkerService { return workers.NewWorkerService(c.opts...) }

// ListWorkerScripts returns every Workers script of the account as the list endpoint returns it
// (GET /accounts/{id}/workers/scripts: one page, no pagination), each entry's raw JSON.
func (c *Client) ListWorkerScripts(ctx context.Context) ([]json.RawMessage, error) {
	const what = "list Workers scripts"
	var p workers.ScriptListParams
	p.AccountID.Value, p.AccountID.Present = c.cfg.AccountID, true
	var raw json.RawMessage
	if _, err := c.workers().Scripts.List(ctx, p, option.WithResponseBodyInto(&raw)); err != nil {
		return nil, classifyFor(err, what, "Workers Scripts Read")
	}
	env, err := decodeEnvelope(raw, what)
	if err != nil {
		return nil, err
	}
	return rawArray(env.Result, what)
}

// WorkerSettings returns a script's settings and bindings (GET …/scripts/{name}/settings), raw.
// Secret bindings come back without their values (the API never returns them).
func (c *Client) WorkerSettings(ctx context.Context, script string) (json.RawMessage, error) {
	what := fmt.Sprintf("get settings of Workers script %s", script)
	var p workers.ScriptScriptAndVersionSettingGetParams
	p.AccountID.Value, p.AccountID.Present = c.cfg.AccountID, true
	var raw json.RawMessage
	if _, err := c.workers().Scripts.ScriptAndVersionSettings.Get(ctx, script, p, option.WithResponseBodyInto(&raw)); err != nil {
		return nil, classifyFor(err, what, "Workers Scripts Read")
	}
	env, err := decodeEnvelope(raw, what)
	return env.Result, err
}

// WorkerSecrets lists a script's secrets (GET …/scripts/{name}/secrets): names and types, no values.
func (c *Client) WorkerSecrets(ctx context.Context, script string) ([]json.RawMessage, error) {
	what := fmt.Sprintf("list secrets of Workers script %s", script)
	var p workers.ScriptSecretListParams
	p.AccountID.Value, p.AccountID.Present = c.cfg.AccountID, true
	var raw json.RawMessage
	if _, err := c.workers().Scripts.Secrets.List(ctx, script, p, option.WithResponseBodyInto(&raw)); err != nil {
		return nil, classifyFor(err, what, "Workers Scripts Read")
	}
	env, err := decodeEnvelope(raw, what)
	if err != nil {
		return nil, err
	}
	return rawArray(env.Result, what)
}

// WorkerSchedules returns a script's cron triggers (GET …/scripts/{name}/schedules): the result's
// "schedules" array.
func (c *Client) WorkerSchedules(ctx context.Context, script string) ([]json.RawMessage, error) {
	what := fmt.Sprintf("get cron triggers of Workers script %s", script)
	var p workers.ScriptScheduleGetParams
	p.AccountID.Value, p.AccountID.Present = c.cfg.AccountID, true
	var raw json.RawMessage
	if _, err := c.workers().Scripts.Schedules.Get(ctx, script, p, option.WithResponseBodyInto(&raw)); err != nil {
		return nil, classifyFor(err, what, "Workers Scripts Read")
	}
	env, err := decodeEnvelope(raw, what)
	if err != nil {
		return nil, err
	}
	var res struct {
		Schedules json.RawMessage `json:"schedules"`
	}
	if len(env.Result) > 0 && string(env.Result) != "null" {
		if err := json.Unmarshal(env.Result, &res); err != nil {
			return nil, fmt.Errorf("%s: unexpected response: %w", what, err)
		}
	}
	return rawArray(res.Schedules, what)
}

// WorkerSubdomain returns whether a script is served on the account's workers.dev subdomain
// (GET …/scripts/{name}/subdomain: {enabled, previews_enabled}), raw.
func (c *Client) WorkerSubdomain(ctx context.Context, script string) (json.RawMessage, error) {
	what := fmt.Sprintf("get workers.dev subdomain of Workers script %s", script)
	var p workers.ScriptSubdomainGetParams
	p.AccountID.Value, p.AccountID.Present = c.cfg.AccountID, true
	var raw json.RawMessage
	if _, err := c.workers().Scripts.Subdomain.Get(ctx, script, p, option.WithResponseBodyInto(&raw)); err != nil {
		return nil, classifyFor(err, what, "Workers Scripts Read")
	}
	env, err := decodeEnvelope(raw, what)
	return env.Result, err
}

// ListWorkerDomains returns the account's Workers custom domains (GET /accounts/{id}/workers/domains),
// each raw; "service" names the script.
func (c *Client) ListWorkerDomains(ctx context.Context) ([]json.RawMessage, error) {
	const what = "list Workers custom domains"
	var p workers.DomainListParams
	p.AccountID.Value, p.AccountID.Present = c.cfg.AccountID, true
	var raw json.RawMessage
	if _, err := c.workers().Domains.List(ctx, p, option.WithResponseBodyInto(&raw)); err != nil {
		return nil, classifyFor(err, what, "Workers Scripts Read")
	}
	env, err := decodeEnvelope(raw, what)
	if err != nil {
		return nil, err
	}
	return rawArray(env.Result, what)
}

// ListZoneWorkerRoutes returns one zone's Workers routes (GET /zones/{zone}/workers/routes). Routes
// are zone-scoped: the token needs Workers Routes Read on that zone.
func (c *Client) ListZoneWorkerRoutes(ctx context.Context, zoneID string) ([]json.RawMessage, error) {
	what := fmt.Sprintf("list Workers routes of zone %s", zoneID)
	var p workers.RouteListParams
	p.ZoneID.Value, p.ZoneID.Present = zoneID, true
	var raw json.RawMessage
	if _, err := c.workers().Routes.List(ctx, p, option.WithResponseBodyInto(&raw)); err != nil {
		return nil, classifyFor(err, what, "Workers Routes Read on the zone")
	}
	env, err := decodeEnvelope(raw, what)
	if err != nil {
		return nil, err
	}
	return rawArray(env.Result, what)
}

// ListR2BucketsRaw returns the account's R2 buckets (GET /accounts/{id}/r2/buckets, result.buckets),
// following result_info.cursor. Only the default jurisdiction is listed (jurisdictional buckets are
// listed with the cf-r2-jurisdiction header; see docs/CONFIG_COMPONENT.md).
func (c *Client) ListR2BucketsRaw(ctx context.Context) ([]json.RawMessage, error) {
	const what = "list R2 buckets"
	svc := r2.NewBucketService(c.opts...)
	var out []json.RawMessage
	cursor := ""
	for {
		var p r2.BucketListParams
		p.AccountID.Value, p.AccountID.Present = c.cfg.AccountID, true
		p.PerPage.Value, p.PerPage.Present = 1000, true
		if cursor != "" {
			p.Cursor.Value, p.Cursor.Present = cursor, true
		}
		var raw json.RawMessage
		if _, err := svc.List(ctx, p, option.WithResponseBodyInto(&raw)); err != nil {
			return nil, classifyFor(err, what, "Workers R2 Storage Read")
		}
		env, err := decodeEnvelope(raw, what)
		if err != nil {
			return nil, err
		}
		var res struct {
			Buckets json.RawMessage `json:"buckets"`
		}
		if len(env.Result) > 0 && string(env.Result) != "null" {
			if err := json.Unmarshal(env.Result, &res); err != nil {
				return nil, fmt.Errorf("%s: unexpected response: %w", what, err)
			}
		}
		page, err := rawArray(res.Buckets, what)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		next := env.ResultInfo.Cursor
		if next == "" || next == cursor || len(page) == 0 {
			return out, nil
		}
		cursor = next
	}
}

// ListDatabasesRaw returns every D1 database list entry, raw (page-numbered pagination).
func (c *Client) ListDatabasesRaw(ctx context.Context) ([]json.RawMessage, error) {
	return pagedRaw("list D1 databases", "D1 Read", func(page int) (json.RawMessage, error) {
		var p d1.DatabaseListParams
		p.AccountID.Value, p.AccountID.Present = c.cfg.AccountID, true
		p.PerPage.Value, p.PerPage.Present = 100, true
		p.Page.Value, p.Page.Present = float64(page), true
		var raw json.RawMessage
		_, err := c.db.List(ctx, p, option.WithResponseBodyInto(&raw))
		return raw, err
	})
}

// ListNamespacesRaw returns every Durable Object namespace list entry, raw.
func (c *Client) ListNamespacesRaw(ctx context.Context) ([]json.RawMessage, error) {
	return pagedRaw("list Durable Object namespaces", "Workers Scripts Read", func(page int) (json.RawMessage, error) {
		var p durable_objects.NamespaceListParams
		p.AccountID.Value, p.AccountID.Present = c.cfg.AccountID, true
		p.PerPage.Value, p.PerPage.Present = 1000, true
		p.Page.Value, p.Page.Present = int64(page), true
		var raw json.RawMessage
		_, err := c.do.Namespaces.List(ctx, p, option.WithResponseBodyInto(&raw))
		return raw, err
	})
}

// pagedRaw follows page-numbered pagination (page, per_page, total_count) until a short or empty page.
func pagedRaw(what, perm string, fetch func(page int) (json.RawMessage, error)) ([]json.RawMessage, error) {
	var out []json.RawMessage
	for page := 1; ; page++ {
		raw, err := fetch(page)
		if err != nil {
			return nil, classifyFor(err, what, perm)
		}
		env, err := decodeEnvelope(raw, what)
		if err != nil {
			return nil, err
		}
		items, err := rawArray(env.Result, what)
		if err != nil {
			return nil, err
		}
		out = append(out, items...)
		ri := env.ResultInfo
		switch {
		case len(items) == 0:
			return out, nil
		case ri.TotalCount > 0 && len(out) >= ri.TotalCount:
			return out, nil
		case ri.PerPage > 0 && len(items) < ri.PerPage:
			return out, nil
		case page > 100000:
			return nil, fmt.Errorf("%s: pagination did not end after %s pages", what, strconv.Itoa(page))
		}
	}
}
