package cftest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The Workers configuration side of the emulated account: scripts with their settings and bindings,
// secrets (stored, never returned), cron triggers, zone routes, custom domains, workers.dev
// subdomain flags, and R2 buckets. Shapes follow cloudflare-go v7.10.0 (workers.ScriptListResponse,
// ScriptScriptAndVersionSettingGetResponse, ScriptSecretListResponse, ScriptScheduleGetResponse,
// ScriptSubdomainGetResponse, DomainListResponse, RouteListResponse; r2.BucketListResponse).

// WorkerScript is an emulated Workers script's configuration.
type WorkerScript struct {
	Name               string
	CompatibilityDate  string
	CompatibilityFlags []string
	UsageModel         string // "standard" when empty
	Logpush            bool
	Tags               []string
	Handlers           []string // default ["fetch"], plus "scheduled" when it has schedules
	// Bindings as the settings endpoint returns them ({"type":"plain_text","name":"X","text":"…"}, …).
	// A secret_text binding's "text" (or a secret_key's key material) is kept here but never returned.
	Bindings []map[string]any
	// Schedules are cron expressions.
	Schedules []string
	// WorkersDev: served on the account's workers.dev subdomain.
	WorkersDev bool

	created, modified time.Time
}

// WorkerRoute is an emulated zone route.
type WorkerRoute struct {
	ID      string `json:"id"`
	Pattern string `json:"pattern"`
	Script  string `json:"script,omitempty"`
}

// WorkerDomain is an emulated Workers custom domain.
type WorkerDomain struct {
	ID          string `json:"id"`
	CertID      string `json:"cert_id"`
	Environment string `json:"environment"`
	Hostname    string `json:"hostname"`
	Service     string `json:"service"`
	ZoneID      string `json:"zone_id"`
	ZoneName    string `json:"zone_name"`
}

// R2Bucket is an emulated R2 bucket listing entry.
type R2Bucket struct {
	Name         string `json:"name"`
	CreationDate string `json:"creation_date"`
	Location     string `json:"location,omitempty"`
	Jurisdiction string `json:"jurisdiction"`
	StorageClass string `json:"storage_class"`
}

type workersState struct {
	scripts map[string]*WorkerScript
	routes  map[string][]WorkerRoute // zone id → routes
	domains []WorkerDomain
	buckets []R2Bucket
	// leakSecrets makes the settings endpoint return secret values (a misbehaving API), so tests can
	// prove cfbackup strips them anyway.
	leakSecrets bool
}

// PutWorkerScript creates or replaces a script's configuration (its modified_on moves forward).
func (s *Server) PutWorkerScript(ws WorkerScript) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.workers.scripts == nil {
		s.workers.scripts = map[string]*WorkerScript{}
	}
	now := s.opts.Now().UTC()
	c := ws
	c.Bindings = cloneBindings(ws.Bindings)
	c.created, c.modified = now, now
	if old := s.workers.scripts[ws.Name]; old != nil {
		c.created = old.created
	}
	s.workers.scripts[ws.Name] = &c
}

// WorkerScriptConfig returns a copy of a script's configuration.
func (s *Server) WorkerScriptConfig(name string) (WorkerScript, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ws := s.workers.scripts[name]
	if ws == nil {
		return WorkerScript{}, false
	}
	c := *ws
	c.Bindings = cloneBindings(ws.Bindings)
	return c, true
}

// DeleteWorkerScript removes a script and its custom domains and routes.
func (s *Server) DeleteWorkerScript(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.workers.scripts, name)
	var keep []WorkerDomain
	for _, d := range s.workers.domains {
		if d.Service != name {
			keep = append(keep, d)
		}
	}
	s.workers.domains = keep
	for z, rs := range s.workers.routes {
		var kr []WorkerRoute
		for _, r := range rs {
			if r.Script != name {
				kr = append(kr, r)
			}
		}
		s.workers.routes[z] = kr
	}
}

// AddWorkerRoute adds a route in a zone (script may be empty: a route that disables Workers) and
// returns its id.
func (s *Server) AddWorkerRoute(zoneID, pattern, script string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.workers.routes == nil {
		s.workers.routes = map[string][]WorkerRoute{}
	}
	id := stableID("route", zoneID, pattern)
	s.workers.routes[zoneID] = append(s.workers.routes[zoneID], WorkerRoute{ID: id, Pattern: pattern, Script: script})
	return id
}

// AddWorkerDomain attaches a custom domain to a script.
func (s *Server) AddWorkerDomain(hostname, script, zoneID, zoneName string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.workers.domains = append(s.workers.domains, WorkerDomain{ID: stableID("domain", hostname), CertID: uuidFrom(stableID("cert", hostname)),
		Environment: "production", Hostname: hostname, Service: script, ZoneID: zoneID, ZoneName: zoneName})
}

// AddR2Bucket registers a bucket in the listing (replacing one with the same name and jurisdiction).
func (s *Server) AddR2Bucket(b R2Bucket) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b.Jurisdiction == "" {
		b.Jurisdiction = "default"
	}
	if b.StorageClass == "" {
		b.StorageClass = "Standard"
	}
	if b.CreationDate == "" {
		b.CreationDate = s.opts.Now().UTC().Format(time.RFC3339Nano)
	}
	for i, o := range s.workers.buckets {
		if o.Name == b.Name && o.Jurisdiction == b.Jurisdiction {
			s.workers.buckets[i] = b
			return
		}
	}
	s.workers.buckets = append(s.workers.buckets, b)
}

// DeleteR2Bucket removes a bucket from the listing.
func (s *Server) DeleteR2Bucket(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keep []R2Bucket
	for _, b := range s.workers.buckets {
		if b.Name != name {
			keep = append(keep, b)
		}
	}
	s.workers.buckets = keep
}

// LeakSecretValues makes the settings and secrets endpoints return secret values, as a buggy or
// future API might; cfbackup must still never store them.
func (s *Server) LeakSecretValues(on bool) {
	s.mu.Lock()
	s.workers.leakSecrets = on
	s.mu.Unlock()
}

// SeedWorkersExample adds a demo configuration: an "app" Worker (vars, a JSON var, two secrets, D1,
// R2 and Durable Object bindings, a route and a custom domain) and a "cron" Worker with two schedules,
// plus the R2 bucket and Durable Object namespace they bind.
func (s *Server) SeedWorkersExample() {
	const zone, zoneName = "3f2a9c1e0b8d4e6fa1b2c3d4e5f60718", "example.com"
	nsID := stableID("ns", "app", "SessionStore")
	s.AddNamespace(Namespace{ID: nsID, Class: "SessionStore", Name: "app_SessionStore", Script: "app", UseSQLite: true})
	s.AddR2Bucket(R2Bucket{Name: "app-uploads", Location: "WEUR"})
	dbID := ""
	s.mu.Lock()
	for _, d := range s.dbs {
		if dbID == "" || d.Name < dbID {
			dbID = d.UUID
		}
	}
	s.mu.Unlock()
	if dbID == "" {
		dbID = uuidFrom(stableID("d1", "appdb"))
	}
	s.PutWorkerScript(WorkerScript{
		Name: "app", CompatibilityDate: "2026-07-01", CompatibilityFlags: []string{"nodejs_compat"}, WorkersDev: true,
		Tags: []string{"team:identity"},
		Bindings: []map[string]any{
			{"type": "plain_text", "name": "ISSUER_URL", "text": "https://login.example.com"},
			{"type": "json", "name": "FEATURE_FLAGS", "json": map[string]any{"mfa": true, "max_sessions": 5}},
			{"type": "secret_text", "name": "OIDC_CLIENT_SECRET", "text": "s3cr3t-client-value"},
			{"type": "secret_text", "name": "CFBACKUP_SECRET", "text": "s3cr3t-hmac-value"},
			{"type": "d1", "name": "DB", "id": dbID},
			{"type": "r2_bucket", "name": "UPLOADS", "bucket_name": "app-uploads"},
			{"type": "durable_object_namespace", "name": "SESSIONS", "class_name": "SessionStore", "namespace_id": nsID},
		},
	})
	s.PutWorkerScript(WorkerScript{
		Name: "cron", CompatibilityDate: "2026-07-01", Schedules: []string{"*/15 * * * *", "0 3 * * mon"},
		Bindings: []map[string]any{{"type": "service", "name": "APP", "service": "app", "environment": "production"}},
	})
	s.AddWorkerRoute(zone, "api.example.com/*", "app")
	s.AddWorkerDomain("login.example.com", "app", zone, zoneName)
}

func cloneBindings(in []map[string]any) []map[string]any {
	out := make([]map[string]any, 0, len(in))
	for _, b := range in {
		c := make(map[string]any, len(b))
		for k, v := range b {
			c[k] = v
		}
		out = append(out, c)
	}
	return out
}

func stableID(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:16])
}

func uuidFrom(hex32 string) string {
	return hex32[0:8] + "-" + hex32[8:12] + "-" + hex32[12:16] + "-" + hex32[16:20] + "-" + hex32[20:32]
}

// secretKeys are the binding fields that carry secret material.
var secretKeys = []string{"text", "key_base64", "key_jwk"}

func isSecretBinding(b map[string]any) bool {
	t, _ := b["type"].(string)
	return t == "secret_text" || t == "secret_key"
}

func (s *Server) script(w http.ResponseWriter, r *http.Request) (WorkerScript, bool) {
	if !s.accountOK(w, r) {
		return WorkerScript{}, false
	}
	ws, ok := s.WorkerScriptConfig(r.PathValue("script"))
	if !ok {
		fail(w, http.StatusNotFound, 10007, "This Worker does not exist on your account.")
	}
	return ws, ok
}

func (s *Server) routesOf(script string) []WorkerRoute {
	s.mu.Lock()
	defer s.mu.Unlock()
	zones := make([]string, 0, len(s.workers.routes))
	for z := range s.workers.routes {
		zones = append(zones, z)
	}
	sort.Strings(zones)
	var out []WorkerRoute
	for _, z := range zones {
		for _, rt := range s.workers.routes[z] {
			if rt.Script == script {
				out = append(out, rt)
			}
		}
	}
	return out
}

func (s *Server) listWorkerScripts(w http.ResponseWriter, r *http.Request) {
	if !s.accountOK(w, r) {
		return
	}
	s.mu.Lock()
	names := make([]string, 0, len(s.workers.scripts))
	for n := range s.workers.scripts {
		names = append(names, n)
	}
	s.mu.Unlock()
	sort.Strings(names)
	out := []map[string]any{}
	for _, n := range names {
		ws, ok := s.WorkerScriptConfig(n)
		if !ok {
			continue
		}
		handlers := ws.Handlers
		if handlers == nil {
			handlers = []string{"fetch"}
			if len(ws.Schedules) > 0 {
				handlers = append(handlers, "scheduled")
			}
		}
		var routes any
		if rs := s.routesOf(n); len(rs) > 0 {
			routes = rs
		}
		out = append(out, map[string]any{
			"id": n, "tag": stableID("tag", n), "etag": stableID("etag", n, ws.modified.String()),
			"created_on": ws.created.Format(time.RFC3339Nano), "modified_on": ws.modified.Format(time.RFC3339Nano),
			"compatibility_date": ws.CompatibilityDate, "compatibility_flags": nonNil(ws.CompatibilityFlags),
			"handlers": handlers, "has_assets": false, "has_modules": true, "logpush": ws.Logpush,
			"last_deployed_from": "wrangler", "usage_model": usageModel(ws), "placement": map[string]any{},
			"routes": routes, "tags": nilIfEmpty(ws.Tags), "tail_consumers": nil,
		})
	}
	ok(w, 200, out, nil)
}

func (s *Server) getWorkerSettings(w http.ResponseWriter, r *http.Request) {
	ws, found := s.script(w, r)
	if !found {
		return
	}
	s.mu.Lock()
	leak := s.workers.leakSecrets
	s.mu.Unlock()
	bindings := cloneBindings(ws.Bindings)
	for _, b := range bindings {
		if isSecretBinding(b) && !leak {
			for _, k := range secretKeys {
				delete(b, k)
			}
		}
	}
	ok(w, 200, map[string]any{
		"bindings": bindings, "compatibility_date": ws.CompatibilityDate, "compatibility_flags": nonNil(ws.CompatibilityFlags),
		"logpush": ws.Logpush, "observability": map[string]any{"enabled": false, "head_sampling_rate": 1},
		"placement": map[string]any{}, "tags": nilIfEmpty(ws.Tags), "tail_consumers": nil, "usage_model": usageModel(ws),
		"limits": map[string]any{"cpu_ms": 30000},
	}, nil)
}

func (s *Server) listWorkerSecrets(w http.ResponseWriter, r *http.Request) {
	ws, found := s.script(w, r)
	if !found {
		return
	}
	s.mu.Lock()
	leak := s.workers.leakSecrets
	s.mu.Unlock()
	out := []map[string]any{}
	for _, b := range ws.Bindings {
		if !isSecretBinding(b) {
			continue
		}
		e := map[string]any{"name": b["name"], "type": b["type"]}
		if leak {
			e["text"] = b["text"]
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return fmt.Sprint(out[i]["name"]) < fmt.Sprint(out[j]["name"]) })
	ok(w, 200, out, nil)
}

func (s *Server) getWorkerSchedules(w http.ResponseWriter, r *http.Request) {
	ws, found := s.script(w, r)
	if !found {
		return
	}
	scheds := []map[string]any{}
	for _, c := range ws.Schedules {
		scheds = append(scheds, map[string]any{"cron": c, "created_on": ws.modified.Format(time.RFC3339Nano), "modified_on": ws.modified.Format(time.RFC3339Nano)})
	}
	ok(w, 200, map[string]any{"schedules": scheds}, nil)
}

func (s *Server) getWorkerSubdomain(w http.ResponseWriter, r *http.Request) {
	ws, found := s.script(w, r)
	if !found {
		return
	}
	ok(w, 200, map[string]any{"enabled": ws.WorkersDev, "previews_enabled": ws.WorkersDev}, nil)
}

func (s *Server) listWorkerDomains(w http.ResponseWriter, r *http.Request) {
	if !s.accountOK(w, r) {
		return
	}
	q := r.URL.Query()
	s.mu.Lock()
	all := append([]WorkerDomain(nil), s.workers.domains...)
	s.mu.Unlock()
	out := []WorkerDomain{}
	for _, d := range all {
		if (q.Get("service") == "" || d.Service == q.Get("service")) && (q.Get("hostname") == "" || d.Hostname == q.Get("hostname")) &&
			(q.Get("zone_id") == "" || d.ZoneID == q.Get("zone_id")) && (q.Get("environment") == "" || d.Environment == q.Get("environment")) {
			out = append(out, d)
		}
	}
	ok(w, 200, out, nil)
}

func (s *Server) listZoneWorkerRoutes(w http.ResponseWriter, r *http.Request) {
	zone := r.PathValue("zone")
	s.mu.Lock()
	rs, found := s.workers.routes[zone]
	rs = append([]WorkerRoute{}, rs...)
	s.mu.Unlock()
	if !found {
		fail(w, http.StatusNotFound, 7003, "Could not route to "+r.URL.Path+", perhaps your object identifier is invalid?")
		return
	}
	ok(w, 200, rs, nil)
}

// listR2Buckets pages with an opaque cursor (the last name of the previous page) in result_info.cursor.
func (s *Server) listR2Buckets(w http.ResponseWriter, r *http.Request) {
	if !s.accountOK(w, r) {
		return
	}
	q := r.URL.Query()
	per := 20
	if v := q.Get("per_page"); v != "" {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil || n < 1 || n > 1000 {
			fail(w, http.StatusBadRequest, 10040, "per_page must be between 1 and 1000")
			return
		}
		per = int(n)
	}
	jur := r.Header.Get("cf-r2-jurisdiction")
	if jur == "" {
		jur = "default"
	}
	s.mu.Lock()
	var all []R2Bucket
	for _, b := range s.workers.buckets {
		if b.Jurisdiction == jur && (q.Get("name_contains") == "" || strings.Contains(b.Name, q.Get("name_contains"))) {
			all = append(all, b)
		}
	}
	s.mu.Unlock()
	sort.Slice(all, func(i, j int) bool { return all[i].Name < all[j].Name })
	after := q.Get("cursor")
	if after == "" {
		after = q.Get("start_after")
	}
	start := 0
	if after != "" {
		start = sort.Search(len(all), func(i int) bool { return all[i].Name > after })
	}
	end := min(start+per, len(all))
	page := append([]R2Bucket{}, all[start:end]...)
	info := map[string]any{"per_page": per}
	if end < len(all) {
		info["cursor"] = all[end-1].Name
	}
	ok(w, 200, map[string]any{"buckets": page}, info)
}

func usageModel(ws WorkerScript) string {
	if ws.UsageModel == "" {
		return "standard"
	}
	return ws.UsageModel
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nilIfEmpty(s []string) any {
	if len(s) == 0 {
		return nil
	}
	return s
}

// registerWorkers adds the Workers configuration and R2 bucket endpoints to the API mux.
func (s *Server) registerWorkers(api *http.ServeMux) {
	wp := "/client/v4/accounts/{acct}/workers"
	api.HandleFunc("GET "+wp+"/scripts", s.listWorkerScripts)
	api.HandleFunc("GET "+wp+"/scripts/{script}/settings", s.getWorkerSettings)
	api.HandleFunc("GET "+wp+"/scripts/{script}/secrets", s.listWorkerSecrets)
	api.HandleFunc("GET "+wp+"/scripts/{script}/schedules", s.getWorkerSchedules)
	api.HandleFunc("GET "+wp+"/scripts/{script}/subdomain", s.getWorkerSubdomain)
	api.HandleFunc("GET "+wp+"/domains", s.listWorkerDomains)
	api.HandleFunc("GET /client/v4/zones/{zone}/workers/routes", s.listZoneWorkerRoutes)
	api.HandleFunc("GET /client/v4/accounts/{acct}/r2/buckets", s.listR2Buckets)
}
