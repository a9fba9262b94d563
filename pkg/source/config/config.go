// Package config backs up a Cloudflare account's Workers configuration and resource inventory.
//
// What an application needs besides its data — each Worker's bindings, non-secret variables, secret
// names, compatibility settings, cron triggers, routes and custom domains, and the list of D1
// databases, R2 buckets and Durable Object namespaces it binds — is read through the REST API and kept
// as one JSON document per script plus one inventory document. Nothing is ever applied back to the
// account: restore writes the documents out as files, and Diff compares a snapshot with the live
// account, so an operator rebuilding an account knows exactly what to recreate.
//
// Secret values are never captured: the API does not return them, and any secret material a response
// might carry anyway (a secret_text binding's "text", a secret_key's key) is removed before anything is
// written. The documents keep the API's raw JSON (decoded with exact numbers and re-encoded with
// sorted keys), so fields the SDK's types do not know are kept too.
package config

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"

	"github.com/cfbackup/cfbackup/pkg/errclass"
)

// Component is the component name in manifests and flags.
const Component = "config"

// FormatVersion is the "format" field of every document this package writes.
const FormatVersion = 1

// ErrDiffers: the live account's configuration differs from the snapshot (see Diff).
var ErrDiffers = errclass.New(errclass.Differs, "configuration differs from the snapshot")

// ErrNoScript: a script asked for is not in the account or the snapshot.
var ErrNoScript = errclass.New(errclass.NotFound, "no such Workers script")

// API is the part of the Cloudflare client this package reads (pkg/cloudflare.Client).
type API interface {
	AccountID() string
	ListWorkerScripts(ctx context.Context) ([]json.RawMessage, error)
	WorkerSettings(ctx context.Context, script string) (json.RawMessage, error)
	WorkerSecrets(ctx context.Context, script string) ([]json.RawMessage, error)
	WorkerSchedules(ctx context.Context, script string) ([]json.RawMessage, error)
	WorkerSubdomain(ctx context.Context, script string) (json.RawMessage, error)
	ListWorkerDomains(ctx context.Context) ([]json.RawMessage, error)
	ListZoneWorkerRoutes(ctx context.Context, zoneID string) ([]json.RawMessage, error)
	ListR2BucketsRaw(ctx context.Context) ([]json.RawMessage, error)
	ListDatabasesRaw(ctx context.Context) ([]json.RawMessage, error)
	ListNamespacesRaw(ctx context.Context) ([]json.RawMessage, error)
}

// Options choose what Capture reads.
type Options struct {
	// Scripts limits the capture to these scripts (default: every script in the account).
	Scripts []string
	// Zones are zone IDs whose Workers routes are listed (GET /zones/{id}/workers/routes). Routes are
	// zone-scoped: without zones, routes come only from the scripts listing's "routes" field.
	Zones []string
	Log   *slog.Logger
}

// Doc is one JSON document (an object), decoded with json.Number so numbers keep their exact text.
type Doc = map[string]any

// State is one account's captured configuration: the inventory and one document per script.
type State struct {
	AccountID string
	Inventory Doc
	Scripts   map[string]Doc
	// Problems lists the optional parts that could not be read (also recorded in the documents'
	// "unavailable" field); the capture goes on without them.
	Problems []string
}

// ScriptNames lists the state's scripts, sorted.
func (st *State) ScriptNames() []string {
	out := make([]string, 0, len(st.Scripts))
	for n := range st.Scripts {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// secretFields are binding fields that can carry secret material; they are never kept.
var secretFields = []string{"text", "key_base64", "key_jwk", "value", "secret"}

// secretTypes are binding types whose values are secret.
var secretTypes = map[string]bool{"secret_text": true, "secret_key": true}

// Capture reads the live account's configuration.
func Capture(ctx context.Context, api API, o Options) (*State, error) {
	c := &capturer{api: api, log: o.Log, st: &State{AccountID: api.AccountID(), Scripts: map[string]Doc{}}}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	inv := Doc{"format": json.Number("1"), "kind": "inventory", "account_id": c.st.AccountID}
	entries, want, err := c.scripts(ctx, inv, o.Scripts)
	if err != nil {
		return nil, err
	}
	// Account-wide lists: custom domains, zone routes, inventory. Domains and the inventory are
	// optional (a token may lack R2 or D1 read permission); asked-for zones are not.
	domains, err := c.domains(ctx, inv)
	if err != nil {
		return nil, err
	}
	zoneRoutes, err := c.zoneRoutes(ctx, inv, o.Zones)
	if err != nil {
		return nil, err
	}
	if err := c.inventory(ctx, inv); err != nil {
		return nil, err
	}
	c.st.Inventory = inv
	for _, name := range want {
		doc, err := captureScript(ctx, api, name, entries[name], domains, zoneRoutes, o.Zones)
		if err != nil {
			return nil, err
		}
		if err := c.subdomain(ctx, name, doc); err != nil {
			return nil, err
		}
		if doc["custom_domains"] == nil && inv["custom_domains"] == nil {
			unavailable(doc, "custom_domains", errors.New("the account's custom domains could not be listed"))
		}
		c.st.Scripts[name] = doc
		c.log.Debug("captured Workers script configuration", "script", name)
	}
	return c.st, nil
}

// capturer reads one account's configuration into a State.
type capturer struct {
	api API
	log *slog.Logger
	st  *State
}

// unavailable records in doc that a part could not be read, and why.
func unavailable(doc Doc, part string, err error) {
	if doc["unavailable"] == nil {
		doc["unavailable"] = Doc{}
	}
	doc["unavailable"].(Doc)[part] = err.Error()
}

// optional records a part the token may not be allowed to read as a problem (nil), unless the run was
// cancelled (the context's error).
func (c *capturer) optional(ctx context.Context, doc Doc, part, problem string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	c.log.Warn("could not read "+strings.ReplaceAll(part, "_", " "), "err", err)
	c.st.Problems = append(c.st.Problems, problem+": "+err.Error())
	unavailable(doc, part, err)
	return nil
}

// scripts lists the account's scripts into the inventory and returns their list entries and the
// names to capture (all, or those asked for, each of which must exist).
func (c *capturer) scripts(ctx context.Context, inv Doc, asked []string) (map[string]Doc, []string, error) {
	rawScripts, err := c.api.ListWorkerScripts(ctx)
	if err != nil {
		return nil, nil, err
	}
	entries := map[string]Doc{}
	var all []string
	for _, raw := range rawScripts {
		e, err := decodeObject(raw)
		if err != nil {
			return nil, nil, fmt.Errorf("list Workers scripts: %w", err)
		}
		name, _ := e["id"].(string)
		if name == "" {
			return nil, nil, fmt.Errorf("list Workers scripts: an entry has no \"id\": %s", raw)
		}
		entries[name] = e
		all = append(all, name)
	}
	sort.Strings(all)
	inv["workers_scripts"] = stringsAny(all)
	if len(asked) == 0 {
		return entries, all, nil
	}
	for _, n := range asked {
		if entries[n] == nil {
			return nil, nil, fmt.Errorf("%w: %q is not in account %s (scripts: %s)", ErrNoScript, n, c.st.AccountID, strings.Join(all, ", "))
		}
	}
	return entries, asked, nil
}

// domains lists the account's Workers custom domains (optional).
func (c *capturer) domains(ctx context.Context, inv Doc) ([]Doc, error) {
	raw, err := c.api.ListWorkerDomains(ctx)
	if err != nil {
		return nil, c.optional(ctx, inv, "custom_domains", "custom domains", err)
	}
	domains, err := decodeObjects(raw)
	if err != nil {
		return nil, fmt.Errorf("list Workers custom domains: %w", err)
	}
	inv["custom_domains"] = sortDocs(domains, "hostname", "id")
	return domains, nil
}

// zoneRoutes lists the Workers routes of the zones asked for (each must be readable).
func (c *capturer) zoneRoutes(ctx context.Context, inv Doc, zones []string) (map[string][]Doc, error) {
	out := map[string][]Doc{}
	if len(zones) == 0 {
		return out, nil
	}
	byZone := Doc{}
	for _, z := range zones {
		raw, err := c.api.ListZoneWorkerRoutes(ctx, z)
		if err != nil {
			return nil, err
		}
		rs, err := decodeObjects(raw)
		if err != nil {
			return nil, fmt.Errorf("list Workers routes of zone %s: %w", z, err)
		}
		for _, r := range rs {
			r["zone_id"] = z
		}
		out[z] = rs
		byZone[z] = sortDocs(rs, "pattern", "id")
	}
	inv["zone_routes"] = byZone
	return out, nil
}

// inventory lists the account's D1 databases, R2 buckets and Durable Object namespaces (each
// optional).
func (c *capturer) inventory(ctx context.Context, inv Doc) error {
	for _, part := range []struct {
		key  string
		list func(context.Context) ([]json.RawMessage, error)
		sort []string
	}{
		{"d1_databases", c.api.ListDatabasesRaw, []string{"name", "uuid"}},
		{"r2_buckets", c.api.ListR2BucketsRaw, []string{"name", "jurisdiction"}},
		{"durable_object_namespaces", c.api.ListNamespacesRaw, []string{"name", "id"}},
	} {
		raw, err := part.list(ctx)
		if err != nil {
			if err := c.optional(ctx, inv, part.key, part.key, err); err != nil {
				return err
			}
			continue
		}
		docs, err := decodeObjects(raw)
		if err != nil {
			return fmt.Errorf("%s: %w", part.key, err)
		}
		inv[part.key] = sortDocs(docs, part.sort...)
	}
	return nil
}

// subdomain records a script's workers.dev setting (optional).
func (c *capturer) subdomain(ctx context.Context, name string, doc Doc) error {
	sub, err := c.api.WorkerSubdomain(ctx, name)
	if err != nil {
		return c.optional(ctx, doc, "workers_dev", "script "+name+" workers.dev subdomain", err)
	}
	d, err := decodeAny(sub)
	if err != nil {
		return fmt.Errorf("workers.dev subdomain of %s: %w", name, err)
	}
	doc["workers_dev"] = d
	return nil
}

func captureScript(ctx context.Context, api API, name string, entry Doc, domains []Doc, zoneRoutes map[string][]Doc, zones []string) (Doc, error) {
	doc := Doc{"format": json.Number("1"), "kind": "workers_script", "name": name}
	set, err := api.WorkerSettings(ctx, name)
	if err != nil {
		return nil, err
	}
	settings, err := decodeObject(set)
	if err != nil {
		return nil, fmt.Errorf("settings of %s: %w", name, err)
	}
	if bs, ok := settings["bindings"].([]any); ok {
		for _, b := range bs {
			if m, ok := b.(Doc); ok {
				redact(m)
			}
		}
		settings["bindings"] = sortList(bs, "name")
	}
	doc["settings"] = settings

	rawSecrets, err := api.WorkerSecrets(ctx, name)
	if err != nil {
		return nil, err
	}
	secrets, err := decodeObjects(rawSecrets)
	if err != nil {
		return nil, fmt.Errorf("secrets of %s: %w", name, err)
	}
	for _, s := range secrets {
		// The listing only has names and types; anything else that looks like a value goes.
		for _, k := range secretFields {
			delete(s, k)
		}
	}
	doc["secrets"] = sortDocs(secrets, "name")

	rawSched, err := api.WorkerSchedules(ctx, name)
	if err != nil {
		return nil, err
	}
	sched, err := decodeObjects(rawSched)
	if err != nil {
		return nil, fmt.Errorf("cron triggers of %s: %w", name, err)
	}
	doc["schedules"] = sortDocs(sched, "cron")

	// Routes: the scripts listing's own "routes", plus the asked-for zones' routes naming this script.
	routes := map[string]Doc{}
	if rs, ok := entry["routes"].([]any); ok {
		for _, r := range rs {
			if m, ok := r.(Doc); ok {
				routes[routeKey(m)] = m
			}
		}
	}
	script := Doc{}
	for k, v := range entry {
		if k != "routes" {
			script[k] = v
		}
	}
	doc["script"] = script
	for _, z := range zones {
		for _, r := range zoneRoutes[z] {
			if r["script"] == name {
				k := routeKey(r)
				if old, ok := routes[k]; ok {
					old["zone_id"] = z
				} else {
					routes[k] = r
				}
			}
		}
	}
	rl := make([]Doc, 0, len(routes))
	for _, r := range routes {
		rl = append(rl, r)
	}
	doc["routes"] = sortDocs(rl, "pattern", "id")
	if domains != nil {
		var mine []Doc
		for _, d := range domains {
			if d["service"] == name {
				mine = append(mine, d)
			}
		}
		doc["custom_domains"] = sortDocs(mine, "hostname", "id")
	}
	return doc, nil
}

func routeKey(r Doc) string {
	if id, ok := r["id"].(string); ok && id != "" {
		return id
	}
	p, _ := r["pattern"].(string)
	return "pattern:" + p
}

// redact removes secret material from a binding of a secret type.
func redact(b Doc) {
	t, _ := b["type"].(string)
	if !secretTypes[t] {
		return
	}
	for _, k := range secretFields {
		delete(b, k)
	}
}

func decodeAny(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("unexpected JSON: %w", err)
	}
	return v, nil
}

func decodeObject(raw []byte) (Doc, error) {
	v, err := decodeAny(raw)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return Doc{}, nil
	}
	m, ok := v.(Doc)
	if !ok {
		return nil, fmt.Errorf("expected a JSON object, got %.80s", raw)
	}
	return m, nil
}

func decodeObjects(raws []json.RawMessage) ([]Doc, error) {
	out := make([]Doc, 0, len(raws))
	for _, r := range raws {
		m, err := decodeObject(r)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

func stringsAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// sortDocs orders documents by the first key, then the next, so output is stable across runs.
func sortDocs(docs []Doc, keys ...string) []any {
	out := make([]any, len(docs))
	for i, d := range docs {
		out[i] = d
	}
	return sortList(out, keys...)
}

func sortList(list []any, keys ...string) []any {
	sort.SliceStable(list, func(i, j int) bool {
		a, _ := list[i].(Doc)
		b, _ := list[j].(Doc)
		for _, k := range keys {
			x, y := fmt.Sprint(a[k]), fmt.Sprint(b[k])
			if x != y {
				return x < y
			}
		}
		return false
	})
	return list
}

// Encode renders a document as stable JSON: keys sorted, two-space indent, no HTML escaping, a final
// newline. Two captures of the same configuration give identical bytes.
func Encode(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
