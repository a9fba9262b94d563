// Package cftest emulates the parts of a Cloudflare account's REST API that
// cfbackup calls (D1 list/get/create/delete, export, import, query, raw, Time
// Travel) on top of real SQLite files, so tests, demos and DR drills run
// without reaching Cloudflare. Shapes follow cloudflare-go v7 and D1's docs.
package cftest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Faults makes the next N API requests fail, to exercise client retries.
type Faults struct {
	Status429  int           // next N requests get 429 + Retry-After
	Status5xx  int           // then the next N requests get 500
	RetryAfter time.Duration // Retry-After for 429s (default 1s)
}

// Options configures a Server. Zero values pick Cloudflare-like defaults.
type Options struct {
	AccountID    string
	Token        string
	DataDir      string
	Now          func() time.Time
	SignedURLTTL time.Duration // default 1h, as D1's export URLs
	ExportPolls  int           // "active" replies before "complete"; default 1
	Faults       *Faults
	ImportLimit  int64         // largest accepted upload; default 5 GB
	Retention    time.Duration // Time Travel window; default 30 days
	// ExactIntegers makes exports write integers beyond 2^53 exactly instead of
	// rounding them through a double as D1 does.
	ExactIntegers bool
}

// Server is an emulated Cloudflare account.
type Server struct {
	opts   Options
	secret []byte
	base   atomic.Value // string
	n429   atomic.Int64
	n5xx   atomic.Int64
	retry  atomic.Int64 // Retry-After in nanoseconds

	mu      sync.Mutex
	dbs     map[string]*database
	signed  map[string]signedObj
	exports map[string]*exportTask // key uuid+"/"+at_bookmark
	imports map[string]*importTask // key uuid+"/"+at_bookmark
	uploads map[string]uploadSlot  // token → slot
	do      doState
	workers workersState
	kv      kvState
	tokens  sync.Map // limited API tokens → tokenPerms (tokens.go)
}

type signedObj struct {
	path    string
	expires time.Time
}

type exportTask struct {
	polls    int
	filename string
	err      error
}

type importTask struct {
	resp map[string]any
}

type uploadSlot struct {
	uuid, etag string
	expires    time.Time
}

// New opens (or creates) an emulated account in opts.DataDir.
func New(opts Options) (*Server, error) {
	if opts.AccountID == "" {
		opts.AccountID = "023e105f4ecef8ad9ca31a8372d0c353"
	}
	if opts.DataDir == "" {
		return nil, errors.New("cftest: DataDir is required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SignedURLTTL <= 0 {
		opts.SignedURLTTL = time.Hour
	}
	if opts.ExportPolls <= 0 {
		opts.ExportPolls = 1
	}
	if opts.ImportLimit <= 0 {
		opts.ImportLimit = 5_000_000_000
	}
	if opts.Retention <= 0 {
		opts.Retention = 30 * 24 * time.Hour
	}
	if err := os.MkdirAll(filepath.Join(opts.DataDir, "d1"), 0o700); err != nil {
		return nil, fmt.Errorf("cftest: %w", err)
	}
	dbs, err := loadDatabases(filepath.Join(opts.DataDir, "d1"))
	if err != nil {
		return nil, fmt.Errorf("cftest: %w", err)
	}
	s := &Server{opts: opts, dbs: dbs, signed: map[string]signedObj{}, exports: map[string]*exportTask{},
		imports: map[string]*importTask{}, uploads: map[string]uploadSlot{}}
	s.secret = make([]byte, 32)
	_, _ = rand.Read(s.secret)
	s.base.Store("http://127.0.0.1")
	if opts.Faults != nil {
		s.InjectFaults(*opts.Faults)
	}
	return s, nil
}

// InjectFaults arms the fault counters (goroutine-safe).
func (s *Server) InjectFaults(f Faults) {
	if f.RetryAfter <= 0 {
		f.RetryAfter = time.Second
	}
	s.retry.Store(int64(f.RetryAfter))
	s.n429.Store(int64(f.Status429))
	s.n5xx.Store(int64(f.Status5xx))
}

// FaultsFromEnv reads CFEMU_FAULT_429 and CFEMU_FAULT_5XX.
func FaultsFromEnv() *Faults {
	a, _ := strconv.Atoi(os.Getenv("CFEMU_FAULT_429"))
	b, _ := strconv.Atoi(os.Getenv("CFEMU_FAULT_5XX"))
	if a == 0 && b == 0 {
		return nil
	}
	return &Faults{Status429: a, Status5xx: b}
}

// SetBaseURL sets the scheme://host[:port] used in signed and upload URLs.
func (s *Server) SetBaseURL(u string) { s.base.Store(strings.TrimRight(u, "/")) }

// AccountID returns the emulated account's ID.
func (s *Server) AccountID() string { return s.opts.AccountID }

// Close releases resources; databases stay on disk in DataDir.
func (s *Server) Close() error {
	if s.kv.db != nil {
		return s.kv.db.Close()
	}
	return nil
}

// CreateDatabase creates an empty database and returns its UUID.
func (s *Server) CreateDatabase(name string) (string, error) {
	return s.createDatabase(context.Background(), name, nil)
}

// AddDatabase creates a database from a .sqlite file (copied) or a .sql script
// (executed) and returns its UUID.
func (s *Server) AddDatabase(name, sqliteOrSQLPath string) (string, error) {
	ctx := context.Background()
	return s.createDatabase(ctx, name, func(d *database) error {
		if strings.HasSuffix(sqliteOrSQLPath, ".sql") {
			f, err := os.Open(sqliteOrSQLPath)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = s.execScript(ctx, d, f)
			return err
		}
		src, err := os.Open(sqliteOrSQLPath)
		if err != nil {
			return err
		}
		defer src.Close()
		dst, err := os.Create(d.path())
		if err != nil {
			return err
		}
		if _, err := io.Copy(dst, src); err != nil {
			dst.Close()
			return err
		}
		return dst.Close()
	})
}

func (s *Server) createDatabase(ctx context.Context, name string, fill func(*database) error) (string, error) {
	s.mu.Lock()
	for _, d := range s.dbs {
		if d.Name == name {
			s.mu.Unlock()
			return "", fmt.Errorf("%w: %s", ErrDuplicateName, name)
		}
	}
	d := &database{UUID: newUUID(), Name: name, CreatedAt: s.opts.Now().UTC()}
	for _, o := range s.dbs {
		d.Order = max(d.Order, o.Order+1)
	}
	d.dir = filepath.Join(s.opts.DataDir, "d1", d.UUID)
	s.dbs[d.UUID] = d
	d.mu.Lock()
	s.mu.Unlock()
	defer d.mu.Unlock()
	fail := func(err error) (string, error) {
		s.mu.Lock()
		delete(s.dbs, d.UUID)
		s.mu.Unlock()
		_ = os.RemoveAll(d.dir)
		return "", fmt.Errorf("cftest: create %s: %w", name, err)
	}
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return fail(err)
	}
	if fill != nil {
		if err := fill(d); err != nil {
			return fail(err)
		}
	} else {
		db, err := d.open()
		if err != nil {
			return fail(err)
		}
		_, err = db.ExecContext(ctx, "PRAGMA user_version=0")
		db.Close()
		if err != nil {
			return fail(err)
		}
	}
	if _, err := d.mark(ctx, s.opts.Now().UTC()); err != nil {
		return fail(err)
	}
	return d.UUID, nil
}

// DatabasePath returns the live SQLite file of a database ("" if unknown).
func (s *Server) DatabasePath(uuid string) string {
	if d := s.db(uuid); d != nil {
		return d.path()
	}
	return ""
}

func (s *Server) db(uuid string) *database {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dbs[uuid]
}

// ---- HTTP plumbing ----

type cfError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func ok(w http.ResponseWriter, status int, result any, info any) {
	env := map[string]any{"success": true, "errors": []cfError{}, "messages": []cfError{}, "result": result}
	if info != nil {
		env["result_info"] = info
	}
	writeJSON(w, status, env)
}

func fail(w http.ResponseWriter, status, code int, msg string) {
	writeJSON(w, status, map[string]any{"success": false, "errors": []cfError{{code, msg}}, "messages": []cfError{}, "result": nil})
}

func s3Error(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message></Error>`, code, msg)
}

// Handler returns the HTTP handler serving /client/v4 and the signed URLs.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /cfemu/signed/{token}", s.serveSigned)
	mux.HandleFunc("PUT /cfemu/upload/{token}", s.serveUpload)
	api := http.NewServeMux()
	p := "/client/v4/accounts/{acct}/d1/database"
	api.HandleFunc("GET "+p, s.list)
	api.HandleFunc("POST "+p, s.create)
	api.HandleFunc("GET "+p+"/{uuid}", s.withDB(s.get))
	api.HandleFunc("DELETE "+p+"/{uuid}", s.withDB(s.delete))
	api.HandleFunc("POST "+p+"/{uuid}/export", s.withDB(s.export))
	api.HandleFunc("POST "+p+"/{uuid}/import", s.withDB(s.importDB))
	api.HandleFunc("POST "+p+"/{uuid}/query", s.withDB(s.query(false)))
	api.HandleFunc("POST "+p+"/{uuid}/raw", s.withDB(s.query(true)))
	api.HandleFunc("GET "+p+"/{uuid}/time_travel/bookmark", s.withDB(s.getBookmark))
	api.HandleFunc("POST "+p+"/{uuid}/time_travel/restore", s.withDB(s.restore))
	dp := "/client/v4/accounts/{acct}/workers/durable_objects/namespaces"
	api.HandleFunc("GET "+dp, s.listNamespaces)
	api.HandleFunc("GET "+dp+"/{ns}/objects", s.listObjects)
	s.registerWorkers(api)
	api.HandleFunc("GET /client/v4/user/tokens/verify", s.verifyToken)
	api.HandleFunc("/client/v4/", func(w http.ResponseWriter, r *http.Request) {
		fail(w, http.StatusNotFound, 7003, "Could not route to "+r.URL.Path+", perhaps your object identifier is invalid?")
	})
	mux.Handle("/client/v4/", s.guard(api))
	return s.withKV(mux)
}

// guard applies faults, the bearer token and the account check.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.n429.Load() > 0 && s.n429.Add(-1) >= 0 {
			ra := time.Duration(s.retry.Load())
			w.Header().Set("Retry-After", strconv.Itoa(int((ra+time.Second-1)/time.Second)))
			fail(w, http.StatusTooManyRequests, 971, "Please wait and consider throttling your request speed")
			return
		}
		if s.n5xx.Load() > 0 && s.n5xx.Add(-1) >= 0 {
			fail(w, http.StatusInternalServerError, 10001, "Internal server error")
			return
		}
		if !s.authorize(w, r) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) withDB(h func(http.ResponseWriter, *http.Request, *database)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.accountOK(w, r) {
			return
		}
		d := s.db(r.PathValue("uuid"))
		if d == nil {
			fail(w, http.StatusNotFound, 7404, fmt.Sprintf("The database %s could not be found", r.PathValue("uuid")))
			return
		}
		h(w, r, d)
	}
}

func (s *Server) accountOK(w http.ResponseWriter, r *http.Request) bool {
	if r.PathValue("acct") != s.opts.AccountID {
		fail(w, http.StatusForbidden, 7003, "Could not route to "+r.URL.Path+", perhaps your object identifier is invalid?")
		return false
	}
	return true
}

// ---- list / get / create / delete ----

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	if !s.accountOK(w, r) {
		return
	}
	q := r.URL.Query()
	pg := pageOf(q, 1000, 10000)
	s.mu.Lock()
	var all []*database
	for _, d := range s.dbs {
		if n := q.Get("name"); n == "" || strings.Contains(d.Name, n) {
			all = append(all, d)
		}
	}
	s.mu.Unlock()
	sort.Slice(all, func(i, j int) bool {
		return all[i].Order < all[j].Order
	})
	items := []map[string]any{}
	lo, hi := pg.window(len(all))
	for _, d := range all[lo:hi] {
		items = append(items, map[string]any{"uuid": d.UUID, "name": d.Name, "version": "production",
			"created_at": d.CreatedAt.Format(time.RFC3339Nano), "jurisdiction": nullIfEmpty(d.Jurisdiction)})
	}
	ok(w, 200, items, pg.info(len(items), len(all)))
}

// page is a page-numbered listing request (?page=&per_page=), as Cloudflare's list endpoints take it.
type page struct{ n, per int }

// pageOf reads page and per_page, defaulting per_page to def and capping it at max.
func pageOf(q url.Values, def, max int) page {
	p := page{}
	p.n, _ = strconv.Atoi(q.Get("page"))
	p.per, _ = strconv.Atoi(q.Get("per_page"))
	if p.n < 1 {
		p.n = 1
	}
	if p.per < 1 {
		p.per = def
	}
	if p.per > max {
		p.per = max
	}
	return p
}

// window is the slice [lo, hi) of a list of n that the page covers.
func (p page) window(n int) (lo, hi int) {
	lo = min((p.n-1)*p.per, n)
	return lo, min(lo+p.per, n)
}

// info is the result_info of the page.
func (p page) info(count, total int) map[string]any {
	return map[string]any{"page": p.n, "per_page": p.per, "count": count, "total_count": total}
}

func (s *Server) describe(ctx context.Context, d *database) (map[string]any, error) {
	size, n, err := d.stats(ctx)
	if err != nil {
		return nil, err
	}
	return map[string]any{"uuid": d.UUID, "name": d.Name, "version": "production",
		"created_at": d.CreatedAt.Format(time.RFC3339Nano), "file_size": size, "num_tables": n,
		"jurisdiction": nullIfEmpty(d.Jurisdiction), "read_replication": map[string]any{"mode": "disabled"}, "running_in_region": region(d)}, nil
}

// checkPlacement validates a create request's primary_location_hint and jurisdiction as D1 does
// (the values of POST /accounts/{id}/d1/database); "" when both are acceptable.
func checkPlacement(hint, jurisdiction string) string {
	switch hint {
	case "", "wnam", "enam", "weur", "eeur", "apac", "oc":
	default:
		return fmt.Sprintf("primary_location_hint %q is not one of wnam, enam, weur, eeur, apac, oc", hint)
	}
	switch jurisdiction {
	case "", "eu", "fedramp", "us":
	default:
		return fmt.Sprintf("jurisdiction %q is not one of eu, fedramp, us", jurisdiction)
	}
	return ""
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// region is where the emulated database "runs": its hint (a jurisdiction overrides it), else WEUR.
func region(d *database) string {
	switch {
	case d.Jurisdiction == "eu":
		return "WEUR"
	case d.Jurisdiction != "":
		return "ENAM"
	case d.LocationHint != "":
		return strings.ToUpper(d.LocationHint)
	}
	return "WEUR"
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, d *database) {
	d.mu.Lock()
	defer d.mu.Unlock()
	res, err := s.describe(r.Context(), d)
	if err != nil {
		fail(w, 500, 7500, err.Error())
		return
	}
	ok(w, 200, res, nil)
}

func (s *Server) create(w http.ResponseWriter, r *http.Request) {
	if !s.accountOK(w, r) {
		return
	}
	var body struct {
		Name         string `json:"name"`
		LocationHint string `json:"primary_location_hint"`
		Jurisdiction string `json:"jurisdiction"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Name == "" {
		fail(w, 400, 7400, "The request is malformed: name is required")
		return
	}
	if msg := checkPlacement(body.LocationHint, body.Jurisdiction); msg != "" {
		fail(w, 400, 7400, "The request is malformed: "+msg)
		return
	}
	id, err := s.CreateDatabase(body.Name)
	if err == nil && (body.LocationHint != "" || body.Jurisdiction != "") {
		d := s.db(id)
		d.mu.Lock()
		d.LocationHint, d.Jurisdiction = body.LocationHint, body.Jurisdiction
		err = d.saveMeta()
		d.mu.Unlock()
	}
	if errors.Is(err, ErrDuplicateName) {
		fail(w, 400, 7502, "A database with that name already exists")
		return
	}
	if err != nil {
		fail(w, 500, 7500, err.Error())
		return
	}
	s.get(w, r, s.db(id))
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request, d *database) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s.mu.Lock()
	delete(s.dbs, d.UUID)
	s.mu.Unlock()
	if err := os.RemoveAll(d.dir); err != nil {
		fail(w, 500, 7500, err.Error())
		return
	}
	ok(w, 200, nil, nil)
}

// ---- export ----

func (s *Server) export(w http.ResponseWriter, r *http.Request, d *database) {
	var body struct {
		OutputFormat    string      `json:"output_format"`
		CurrentBookmark string      `json:"current_bookmark"`
		DumpOptions     DumpOptions `json:"dump_options"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		fail(w, 400, 7400, "The request is malformed: "+err.Error())
		return
	}
	if body.OutputFormat != "polling" {
		fail(w, 400, 7400, "The request is malformed: output_format must be \"polling\"")
		return
	}
	reply := func(t *exportTask, bm string, status int) {
		res := map[string]any{"success": true, "type": "export", "at_bookmark": bm, "messages": []string{}}
		switch {
		case t.err != nil:
			res["success"], res["status"], res["error"] = false, "error", t.err.Error()
		case t.polls < s.opts.ExportPolls:
			res["status"] = "active"
			res["messages"] = []string{fmt.Sprintf("Generating %s", t.filename)}
		default:
			res["status"] = "complete"
			res["messages"] = []string{"Uploaded part 1", "Export complete"}
			res["result"] = map[string]any{"filename": t.filename, "signed_url": s.sign("exports/" + t.filename)}
		}
		ok(w, status, res, nil)
	}
	if body.CurrentBookmark != "" {
		s.mu.Lock()
		t := s.exports[d.UUID+"/"+body.CurrentBookmark]
		if t != nil {
			t.polls++
		}
		s.mu.Unlock()
		if t == nil {
			fail(w, 404, 7404, "No export in progress for bookmark "+body.CurrentBookmark)
			return
		}
		reply(t, body.CurrentBookmark, 200)
		return
	}
	// First call: dump now under the database lock (D1 blocks the database
	// while exporting), then let the client poll ExportPolls times.
	d.mu.Lock()
	bm := d.current().Bookmark
	name := fmt.Sprintf("%s-%s.sql", d.UUID, bm[:26])
	t := &exportTask{filename: name}
	t.err = s.writeDump(r.Context(), d, body.DumpOptions, name)
	d.mu.Unlock()
	s.mu.Lock()
	s.exports[d.UUID+"/"+bm] = t
	s.mu.Unlock()
	status := http.StatusAccepted
	if t.err != nil {
		status = 200
	}
	reply(t, bm, status)
}

func (s *Server) writeDump(ctx context.Context, d *database, o DumpOptions, name string) error {
	o.ExactIntegers = s.opts.ExactIntegers
	dir := filepath.Join(s.opts.DataDir, "exports")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	db, err := d.open()
	if err != nil {
		f.Close()
		return err
	}
	defer db.Close()
	err = dumpSQL(ctx, db, o, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(filepath.Join(dir, name))
	}
	return err
}

func (s *Server) signature(token string, exp time.Time) string {
	m := hmac.New(sha256.New, s.secret)
	fmt.Fprintf(m, "%s\n%d", token, exp.Unix())
	return hex.EncodeToString(m.Sum(nil))
}

// sign registers a DataDir-relative file and returns an absolute presigned GET URL.
func (s *Server) sign(rel string) string {
	tok := randHex(16)
	exp := s.opts.Now().Add(s.opts.SignedURLTTL)
	s.mu.Lock()
	s.signed[tok] = signedObj{path: filepath.Join(s.opts.DataDir, rel), expires: exp}
	s.mu.Unlock()
	return fmt.Sprintf("%s/cfemu/signed/%s?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=%s&X-Amz-Expires=%d&X-Amz-SignedHeaders=host&X-Amz-Signature=%s",
		s.base.Load().(string), tok, s.opts.Now().UTC().Format("20060102T150405Z"), int(s.opts.SignedURLTTL/time.Second), s.signature(tok, exp))
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// checkSigned answers like S3 does for a presigned URL with a bad signature or past its expiry.
func (s *Server) checkSigned(w http.ResponseWriter, r *http.Request, tok string, found bool, expires time.Time) bool {
	if !found || !hmac.Equal([]byte(r.URL.Query().Get("X-Amz-Signature")), []byte(s.signature(tok, expires))) {
		s3Error(w, 403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided.")
		return false
	}
	if s.opts.Now().After(expires) {
		s3Error(w, 403, "AccessDenied", "Request has expired")
		return false
	}
	return true
}

func (s *Server) serveSigned(w http.ResponseWriter, r *http.Request) {
	tok := r.PathValue("token")
	s.mu.Lock()
	obj, found := s.signed[tok]
	s.mu.Unlock()
	if !s.checkSigned(w, r, tok, found, obj.expires) {
		return
	}
	f, err := os.Open(obj.path)
	if err != nil {
		s3Error(w, 404, "NoSuchKey", "The specified key does not exist.")
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		s3Error(w, 500, "InternalError", "stat failed")
		return
	}
	w.Header().Set("Content-Type", "application/sql")
	http.ServeContent(w, r, "", fi.ModTime(), f)
}

// ---- import ----

func (s *Server) importDB(w http.ResponseWriter, r *http.Request, d *database) {
	var body struct {
		Action          string `json:"action"`
		Etag            string `json:"etag"`
		Filename        string `json:"filename"`
		CurrentBookmark string `json:"current_bookmark"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		fail(w, 400, 7400, "The request is malformed: "+err.Error())
		return
	}
	uploaded := filepath.Join(d.dir, "imports", body.Etag+".sql")
	switch body.Action {
	case "init":
		if len(body.Etag) != 32 {
			fail(w, 400, 7400, "The request is malformed: etag must be an MD5 hex digest")
			return
		}
		if _, err := os.Stat(uploaded); err == nil {
			s.ingest(w, r, d, body.Etag)
			return
		}
		tok := randHex(16)
		exp := s.opts.Now().Add(time.Hour)
		s.mu.Lock()
		s.uploads[tok] = uploadSlot{uuid: d.UUID, etag: body.Etag, expires: exp}
		s.mu.Unlock()
		url := fmt.Sprintf("%s/cfemu/upload/%s?X-Amz-Expires=3600&X-Amz-Signature=%s", s.base.Load().(string), tok, s.signature(tok, exp))
		ok(w, 200, map[string]any{"success": true, "type": "import", "upload_url": url, "filename": body.Etag + ".sql", "messages": []string{}}, nil)
	case "ingest":
		if _, err := os.Stat(uploaded); err != nil {
			fail(w, 400, 7400, "No uploaded file for etag "+body.Etag)
			return
		}
		s.ingest(w, r, d, body.Etag)
	case "poll":
		s.mu.Lock()
		t := s.imports[d.UUID+"/"+body.CurrentBookmark]
		s.mu.Unlock()
		if t == nil {
			ok(w, 200, map[string]any{"success": false, "type": "import", "status": "error", "error": "Not currently importing anything.", "messages": []string{}}, nil)
			return
		}
		ok(w, 200, t.resp, nil)
	default:
		fail(w, 400, 7400, "The request is malformed: unknown action "+strconv.Quote(body.Action))
	}
}

func (s *Server) ingest(w http.ResponseWriter, r *http.Request, d *database, etag string) {
	f, err := os.Open(filepath.Join(d.dir, "imports", etag+".sql"))
	if err != nil {
		fail(w, 500, 7500, err.Error())
		return
	}
	defer f.Close()
	d.mu.Lock()
	at := d.current().Bookmark
	start := time.Now()
	n, err := s.execScript(r.Context(), d, f)
	resp := map[string]any{"success": true, "type": "import", "at_bookmark": at, "filename": etag + ".sql", "messages": []string{}}
	if err != nil {
		resp["success"], resp["status"], resp["error"] = false, "error", err.Error()
	} else {
		snap, merr := d.mark(r.Context(), s.opts.Now().UTC())
		if merr != nil {
			resp["success"], resp["status"], resp["error"] = false, "error", merr.Error()
		} else {
			size, _, _ := d.stats(r.Context())
			resp["status"] = "complete"
			resp["messages"] = []string{fmt.Sprintf("Imported %d queries", n)}
			resp["result"] = map[string]any{"final_bookmark": snap.Bookmark, "num_queries": n,
				"meta": meta(int64(n), 0, time.Since(start), size, true)}
		}
	}
	d.mu.Unlock()
	s.mu.Lock()
	s.imports[d.UUID+"/"+at] = &importTask{resp: resp}
	s.mu.Unlock()
	ok(w, 200, resp, nil)
}

// execScript runs every statement of r inside one transaction; any error rolls
// everything back. Callers hold d.mu (or own d exclusively).
func (s *Server) execScript(ctx context.Context, d *database, r io.Reader) (int, error) {
	db, err := d.open()
	if err != nil {
		return 0, err
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	sp := newSplitter(r, MaxStatementBytes)
	n := 0
	for {
		st, err := sp.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, fmt.Errorf("statement %d: %w", n+1, err)
		}
		up := strings.ToUpper(st)
		if up == "BEGIN" || up == "BEGIN TRANSACTION" || up == "COMMIT" || up == "END" || up == "END TRANSACTION" {
			return n, fmt.Errorf("statement %d: transactions are not supported in D1 imports (%s)", n+1, st)
		}
		if _, err := tx.ExecContext(ctx, st); err != nil {
			return n, fmt.Errorf("%w: SQLITE_ERROR (statement %d)", err, n+1)
		}
		n++
	}
	if err := tx.Commit(); err != nil {
		return n, err
	}
	return n, nil
}

func (s *Server) serveUpload(w http.ResponseWriter, r *http.Request) {
	tok := r.PathValue("token")
	s.mu.Lock()
	slot, found := s.uploads[tok]
	s.mu.Unlock()
	if !s.checkSigned(w, r, tok, found, slot.expires) {
		return
	}
	if r.ContentLength > s.opts.ImportLimit {
		s3Error(w, 400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size")
		return
	}
	d := s.db(slot.uuid)
	if d == nil {
		s3Error(w, 404, "NoSuchBucket", "The specified bucket does not exist")
		return
	}
	dir := filepath.Join(d.dir, "imports")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		s3Error(w, 500, "InternalError", "mkdir failed")
		return
	}
	tmp, err := os.CreateTemp(dir, "upload-*")
	if err != nil {
		s3Error(w, 500, "InternalError", "create failed")
		return
	}
	defer os.Remove(tmp.Name())
	h := md5.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(r.Body, s.opts.ImportLimit+1))
	cerr := tmp.Close()
	switch {
	case err != nil || cerr != nil:
		s3Error(w, 400, "IncompleteBody", "You did not provide the number of bytes specified by the Content-Length HTTP header.")
		return
	case n > s.opts.ImportLimit:
		s3Error(w, 400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size")
		return
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if sum != slot.etag {
		s3Error(w, 400, "BadDigest", "The Content-MD5 you specified did not match what we received.")
		return
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, slot.etag+".sql")); err != nil {
		s3Error(w, 500, "InternalError", "store failed")
		return
	}
	w.Header().Set("ETag", `"`+sum+`"`)
	w.WriteHeader(200)
}

// ---- query / raw ----

func meta(changes, lastRowID int64, dur time.Duration, size int64, changed bool) map[string]any {
	return map[string]any{"changed_db": changed, "changes": changes, "duration": float64(dur.Microseconds()) / 1000,
		"last_row_id": lastRowID, "rows_read": 0, "rows_written": changes, "served_by_colo": "LHR",
		"served_by_primary": true, "served_by_region": "WEUR", "size_after": size,
		"timings": map[string]any{"sql_duration_ms": float64(dur.Microseconds()) / 1000}}
}

type queryItem struct {
	SQL    string   `json:"sql"`
	Params []string `json:"params"`
}

func (s *Server) query(raw bool) func(http.ResponseWriter, *http.Request, *database) {
	return func(w http.ResponseWriter, r *http.Request, d *database) {
		var body struct {
			queryItem
			Batch []queryItem `json:"batch"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			fail(w, 400, 7400, "The request is malformed: "+err.Error())
			return
		}
		items := body.Batch
		if len(items) == 0 {
			sts, err := splitSQL(body.SQL)
			if err != nil || len(sts) == 0 {
				fail(w, 400, 7500, "No SQL statements detected.")
				return
			}
			if len(sts) > 1 && len(body.Params) > 0 {
				fail(w, 400, 7500, "Parameters are not supported with multiple statements")
				return
			}
			for _, st := range sts {
				items = append(items, queryItem{SQL: st, Params: body.Params})
			}
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		out, changed, err := s.runBatch(r.Context(), d, items, raw)
		if err != nil {
			fail(w, 400, 7500, err.Error())
			return
		}
		if changed {
			if _, err := d.mark(r.Context(), s.opts.Now().UTC()); err != nil {
				fail(w, 500, 7500, err.Error())
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(200)
		var buf bytes.Buffer
		buf.WriteString(`{"success":true,"errors":[],"messages":[],"result":[`)
		for i, o := range out {
			if i > 0 {
				buf.WriteByte(',')
			}
			buf.Write(o)
		}
		buf.WriteString("]}\n")
		_, _ = w.Write(buf.Bytes())
	}
}

// runBatch runs items in one transaction and renders each result as JSON.
func (s *Server) runBatch(ctx context.Context, d *database, items []queryItem, raw bool) ([][]byte, bool, error) {
	db, err := d.open()
	if err != nil {
		return nil, false, err
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, false, err
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	changedAny := false
	var out [][]byte
	for _, it := range items {
		if len(it.SQL) > MaxStatementBytes {
			return nil, false, fmt.Errorf("%w: SQLITE_TOOBIG", ErrStatementTooLong)
		}
		var before int64
		if err := tx.QueryRowContext(ctx, "SELECT total_changes()").Scan(&before); err != nil {
			return nil, false, err
		}
		args := make([]any, len(it.Params))
		for i, p := range it.Params {
			args[i] = p
		}
		start := time.Now()
		rows, err := tx.QueryContext(ctx, it.SQL, args...)
		if err != nil {
			return nil, false, fmt.Errorf("%w: SQLITE_ERROR", err)
		}
		cols, _ := rows.Columns()
		var rowsJSON bytes.Buffer
		nrows := 0
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				rows.Close()
				return nil, false, err
			}
			if nrows > 0 {
				rowsJSON.WriteByte(',')
			}
			nrows++
			if raw {
				rowsJSON.WriteByte('[')
			} else {
				rowsJSON.WriteByte('{')
			}
			for i, v := range vals {
				if i > 0 {
					rowsJSON.WriteByte(',')
				}
				if !raw {
					k, _ := json.Marshal(cols[i])
					rowsJSON.Write(k)
					rowsJSON.WriteByte(':')
				}
				rowsJSON.Write(jsonValue(v))
			}
			if raw {
				rowsJSON.WriteByte(']')
			} else {
				rowsJSON.WriteByte('}')
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, false, fmt.Errorf("%w: SQLITE_ERROR", err)
		}
		var after, lastID int64
		if err := tx.QueryRowContext(ctx, "SELECT total_changes(), last_insert_rowid()").Scan(&after, &lastID); err != nil {
			return nil, false, err
		}
		changed := after > before || !isReadOnly(it.SQL)
		changedAny = changedAny || changed
		m, _ := json.Marshal(meta(after-before, lastID, time.Since(start), 0, changed))
		var o bytes.Buffer
		o.WriteString(`{"success":true,"meta":`)
		o.Write(m)
		if raw {
			cj, _ := json.Marshal(cols)
			if cols == nil {
				cj = []byte("[]")
			}
			o.WriteString(`,"results":{"columns":`)
			o.Write(cj)
			o.WriteString(`,"rows":[`)
			o.Write(rowsJSON.Bytes())
			o.WriteString(`]}}`)
		} else {
			o.WriteString(`,"results":[`)
			o.Write(rowsJSON.Bytes())
			o.WriteString(`]}`)
		}
		out = append(out, o.Bytes())
	}
	if err := tx.Commit(); err != nil {
		return nil, false, err
	}
	return out, changedAny, nil
}

// jsonValue encodes a SQLite value; int64 is written exactly, BLOBs as byte arrays.
func jsonValue(v any) []byte {
	switch x := v.(type) {
	case nil:
		return []byte("null")
	case int64:
		return strconv.AppendInt(nil, x, 10)
	case float64:
		b, err := json.Marshal(x)
		if err != nil {
			return []byte("null")
		}
		return b
	case []byte:
		var b bytes.Buffer
		b.WriteByte('[')
		for i, c := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(int(c)))
		}
		b.WriteByte(']')
		return b.Bytes()
	case time.Time:
		b, _ := json.Marshal(x.Format("2006-01-02 15:04:05"))
		return b
	default:
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(x)
		return bytes.TrimRight(b.Bytes(), "\n")
	}
}

// ---- Time Travel ----

func (s *Server) getBookmark(w http.ResponseWriter, r *http.Request, d *database) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ts := r.URL.Query().Get("timestamp")
	if ts == "" {
		ok(w, 200, map[string]any{"bookmark": d.current().Bookmark}, nil)
		return
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		fail(w, 400, 7400, "Invalid timestamp: "+ts)
		return
	}
	snap, err := s.findInWindow(d, "", t)
	if err != nil {
		fail(w, 400, 7500, err.Error())
		return
	}
	ok(w, 200, map[string]any{"bookmark": snap.Bookmark}, nil)
}

func (s *Server) findInWindow(d *database, bm string, t time.Time) (snapshot, error) {
	oldest := s.opts.Now().Add(-s.opts.Retention)
	if bm == "" && t.Before(oldest) {
		return snapshot{}, fmt.Errorf("%w: %s is older than %s", ErrBookmarkTooOld, t.Format(time.RFC3339), s.opts.Retention)
	}
	snap, err := d.find(bm, t)
	if err != nil {
		return snapshot{}, err
	}
	// The state at snap lasts until the next point; it is restorable while
	// that moment is inside the window.
	if bm != "" && snap.At.Before(oldest) {
		for _, n := range d.Snapshots {
			if n.At.After(snap.At) && n.At.Before(oldest) {
				return snapshot{}, fmt.Errorf("%w: %s", ErrBookmarkTooOld, bm)
			}
		}
	}
	return snap, nil
}

func (s *Server) restore(w http.ResponseWriter, r *http.Request, d *database) {
	q := r.URL.Query()
	bm, ts := q.Get("bookmark"), q.Get("timestamp")
	var t time.Time
	if bm == "" {
		var err error
		if t, err = time.Parse(time.RFC3339Nano, ts); err != nil {
			fail(w, 400, 7400, "A bookmark or an RFC3339 timestamp is required")
			return
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	snap, err := s.findInWindow(d, bm, t)
	if err != nil {
		fail(w, 400, 7500, err.Error())
		return
	}
	prev := d.current().Bookmark
	if err := d.restoreTo(snap); err != nil {
		fail(w, 500, 7500, err.Error())
		return
	}
	now, err := d.mark(r.Context(), s.opts.Now().UTC())
	if err != nil {
		fail(w, 500, 7500, err.Error())
		return
	}
	ok(w, 200, map[string]any{"bookmark": now.Bookmark, "previous_bookmark": prev,
		"message": "Database restored to bookmark " + snap.Bookmark}, nil)
}
