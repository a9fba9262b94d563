package cloudflare

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/cloudflare/cloudflare-go/v7/durable_objects"
	"github.com/cloudflare/cloudflare-go/v7/option"
)

// Namespace is a Durable Object namespace (one class of one script).
type Namespace struct {
	ID        string `json:"id"`
	Class     string `json:"class"`
	Name      string `json:"name"`
	Script    string `json:"script"`
	UseSQLite bool   `json:"use_sqlite"`
}

// DurableObject is one object of a namespace as the REST API lists it (ids only: names are not recoverable).
type DurableObject struct {
	ID            string `json:"id"`
	HasStoredData bool   `json:"hasStoredData"`
}

// ListNamespaces returns every Durable Object namespace of the account (page-numbered pagination).
func (c *Client) ListNamespaces(ctx context.Context) ([]Namespace, error) {
	var p durable_objects.NamespaceListParams
	p.AccountID.Value, p.AccountID.Present = c.cfg.AccountID, true
	p.PerPage.Value, p.PerPage.Present = 1000, true
	it := c.do.Namespaces.ListAutoPaging(ctx, p)
	var out []Namespace
	for it.Next() {
		n := it.Current()
		out = append(out, Namespace{ID: n.ID, Class: n.Class, Name: n.Name, Script: n.Script, UseSQLite: n.UseSqlite})
	}
	if err := it.Err(); err != nil {
		return nil, classify(err, "list Durable Object namespaces")
	}
	return out, nil
}

// ResolveNamespace finds a namespace by id, name or class name.
func (c *Client) ResolveNamespace(ctx context.Context, ref string) (Namespace, error) {
	all, err := c.ListNamespaces(ctx)
	if err != nil {
		return Namespace{}, err
	}
	for _, n := range all {
		if n.ID == ref || n.Name == ref {
			return n, nil
		}
	}
	var match []Namespace
	for _, n := range all {
		if n.Class == ref {
			match = append(match, n)
		}
	}
	if len(match) == 1 {
		return match[0], nil
	}
	names := make([]string, 0, len(all))
	for _, n := range all {
		names = append(names, n.Name)
	}
	return Namespace{}, fmt.Errorf("Durable Object namespace %q: %w (namespaces in this account: %s)", ref, ErrNotFound, strings.Join(names, ", "))
}

// objectPage is one page of the objects listing. The next cursor is result_info.cursors.after in the
// current schema and result_info.cursor in the older one: both are accepted.
type objectPage struct {
	Result     []DurableObject `json:"result"`
	ResultInfo struct {
		Cursor  string `json:"cursor"`
		Cursors struct {
			After string `json:"after"`
		} `json:"cursors"`
	} `json:"result_info"`
}

// ListObjects calls fn for every object of a namespace, a page (up to limit, 10..10000) at a time.
func (c *Client) ListObjects(ctx context.Context, namespaceID string, limit int, fn func([]DurableObject) error) error {
	if limit < 10 {
		limit = 10
	}
	if limit > 10000 {
		limit = 10000
	}
	cursor := ""
	for {
		var p durable_objects.NamespaceObjectListParams
		p.AccountID.Value, p.AccountID.Present = c.cfg.AccountID, true
		p.Limit.Value, p.Limit.Present = float64(limit), true
		if cursor != "" {
			p.Cursor.Value, p.Cursor.Present = cursor, true
		}
		var raw json.RawMessage
		if _, err := c.do.Namespaces.Objects.List(ctx, namespaceID, p, option.WithResponseBodyInto(&raw)); err != nil {
			return classify(err, fmt.Sprintf("list objects of Durable Object namespace %s", namespaceID))
		}
		var page objectPage
		if err := json.Unmarshal(raw, &page); err != nil {
			return fmt.Errorf("list objects of Durable Object namespace %s: unexpected response: %w", namespaceID, err)
		}
		if len(page.Result) > 0 {
			if err := fn(page.Result); err != nil {
				return err
			}
		}
		next := page.ResultInfo.Cursors.After
		if next == "" {
			next = page.ResultInfo.Cursor
		}
		if next == "" || next == cursor || len(page.Result) == 0 {
			return nil
		}
		cursor = next
	}
}
