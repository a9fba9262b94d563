package cftest

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Workers KV: namespaces, key listings with cursors, values, metadata, bulk reads, writes and
// deletes, stored in one real SQLite file (DataDir/kv/kv.sqlite), with the documented limits
// (docs/KV.md "Limits") and expirations. Expired keys are invisible and removed lazily.

// KV limits the emulation enforces.
const (
	kvMaxKey      = 512
	kvMaxValue    = 25 << 20
	kvMaxMetadata = 1024
	kvMaxBulk     = 10000
	kvMaxBulkBody = 100_000_000
	kvMaxBulkGet  = 100
	kvMinTTL      = 60
)

// KVPair is one stored pair, as tests seed and read them.
type KVPair struct {
	Key        string
	Value      []byte
	Expiration int64           // Unix seconds; 0 = never
	Metadata   json.RawMessage // nil = none
}

type kvState struct {
	once   sync.Once
	db     *sql.DB
	err    error
	strict atomic.Bool  // bulk reads of non-UTF-8 values fail instead of returning U+FFFD
	flaky  atomic.Int64 // next N bulk writes report their last pair unsuccessful (and skip it)
	gets   atomic.Int64 // single-value GETs served
	bulks  atomic.Int64 // bulk reads served
}

func (s *Server) kvDB() (*sql.DB, error) {
	s.kv.once.Do(func() {
		dir := filepath.Join(s.opts.DataDir, "kv")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			s.kv.err = err
			return
		}
		db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "kv.sqlite")+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)")
		if err != nil {
			s.kv.err = err
			return
		}
		db.SetMaxOpenConns(1)
		_, err = db.Exec(`CREATE TABLE IF NOT EXISTS namespaces (id TEXT PRIMARY KEY, title TEXT NOT NULL UNIQUE,
				url_encoding INTEGER NOT NULL DEFAULT 1, ord INTEGER NOT NULL);
			CREATE TABLE IF NOT EXISTS pairs (ns TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
				expiration INTEGER NOT NULL DEFAULT 0, metadata TEXT, PRIMARY KEY (ns, key)) WITHOUT ROWID;`)
		if err != nil {
			db.Close()
			s.kv.err = err
			return
		}
		s.kv.db = db
	})
	return s.kv.db, s.kv.err
}

// AddKVNamespace creates a KV namespace and returns its id (32 hex digits).
func (s *Server) AddKVNamespace(title string) (string, error) {
	db, err := s.kvDB()
	if err != nil {
		return "", err
	}
	id := randHex(16)
	_, err = db.Exec(`INSERT INTO namespaces (id, title, ord) VALUES (?, ?, (SELECT COALESCE(MAX(ord), 0) + 1 FROM namespaces))`, id, title)
	if err != nil {
		return "", fmt.Errorf("create KV namespace %q: %w", title, err)
	}
	return id, nil
}

// PutKV stores pairs as a Worker's put would (limits checked, no 60-second rule on expirations).
func (s *Server) PutKV(ns string, pairs ...KVPair) error {
	db, err := s.kvDB()
	if err != nil {
		return err
	}
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	up, err := newUpserter(tx)
	if err != nil {
		return err
	}
	for _, p := range pairs {
		if msg := kvCheckKey(p.Key); msg != "" {
			return errors.New(msg)
		}
		if len(p.Value) > kvMaxValue || len(p.Metadata) > kvMaxMetadata {
			return fmt.Errorf("pair %q over the value or metadata limit", p.Key)
		}
		if err := up.put(ns, p); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// KVPairs returns a namespace's live pairs in key order.
func (s *Server) KVPairs(ns string) ([]KVPair, error) {
	db, err := s.kvDB()
	if err != nil {
		return nil, err
	}
	rows, err := db.Query(`SELECT key, value, expiration, metadata FROM pairs WHERE ns = ? AND (expiration = 0 OR expiration > ?) ORDER BY key`, ns, s.opts.Now().Unix())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []KVPair
	for rows.Next() {
		var p KVPair
		var meta sql.NullString
		if err := rows.Scan(&p.Key, &p.Value, &p.Expiration, &meta); err != nil {
			return nil, err
		}
		if meta.Valid {
			p.Metadata = json.RawMessage(meta.String)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// SetKVBulkGetStrict makes bulk reads fail (400) when a value is not UTF-8, instead of answering
// with U+FFFD in its place.
func (s *Server) SetKVBulkGetStrict(on bool) { s.kv.strict.Store(on) }

// FailKVWrites makes the next n bulk writes report their last pair as unsuccessful (not written).
func (s *Server) FailKVWrites(n int) { s.kv.flaky.Store(int64(n)) }

// KVRequests reports how many single-value GETs and bulk reads were served.
func (s *Server) KVRequests() (gets, bulkGets int64) { return s.kv.gets.Load(), s.kv.bulks.Load() }

const kvUpsertSQL = `INSERT INTO pairs (ns, key, value, expiration, metadata) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, expiration = excluded.expiration, metadata = excluded.metadata`

// kvUpserter writes pairs through one prepared statement of a transaction.
type kvUpserter struct{ st *sql.Stmt }

func newUpserter(tx *sql.Tx) (*kvUpserter, error) {
	st, err := tx.Prepare(kvUpsertSQL)
	if err != nil {
		return nil, err
	}
	return &kvUpserter{st}, nil
}

func (u *kvUpserter) put(ns string, p KVPair) error {
	var meta any
	if len(p.Metadata) > 0 && string(p.Metadata) != "null" {
		meta = string(p.Metadata)
	}
	val := p.Value
	if val == nil {
		val = []byte{}
	}
	_, err := u.st.Exec(ns, p.Key, val, p.Expiration, meta)
	return err
}

func kvUpsert(tx *sql.Tx, ns string, p KVPair) error {
	up, err := newUpserter(tx)
	if err != nil {
		return err
	}
	defer up.st.Close()
	return up.put(ns, p)
}

// kvCheckKey says what is wrong with a key name, or "".
func kvCheckKey(k string) string {
	switch {
	case k == "":
		return "key names must not be empty"
	case k == "." || k == "..":
		return "key names must not be '.' or '..'"
	case len(k) > kvMaxKey:
		return fmt.Sprintf("key names must be at most %d bytes (got %d)", kvMaxKey, len(k))
	case !utf8.ValidString(k):
		return "key names must be valid UTF-8"
	}
	return ""
}

// kvHandler serves /client/v4/accounts/{acct}/storage/kv/namespaces[/…]. It routes on the escaped
// path itself: key names may hold '/', '%', '.' segments and anything else a ServeMux would clean.
func (s *Server) kvHandler(w http.ResponseWriter, r *http.Request) {
	rest, _ := strings.CutPrefix(r.URL.EscapedPath(), "/client/v4/accounts/")
	acct, rest, _ := strings.Cut(rest, "/")
	if acct != s.opts.AccountID {
		fail(w, http.StatusForbidden, 7003, "Could not route to "+r.URL.Path+", perhaps your object identifier is invalid?")
		return
	}
	rest, _ = strings.CutPrefix(rest, "storage/kv/namespaces")
	db, err := s.kvDB()
	if err != nil {
		fail(w, 500, 10001, err.Error())
		return
	}
	if rest == "" || rest == "/" {
		switch r.Method {
		case http.MethodGet:
			s.kvListNamespaces(w, r, db)
		case http.MethodPost:
			s.kvCreateNamespace(w, r, db)
		default:
			kvNoRoute(w, r)
		}
		return
	}
	ns, sub, _ := strings.Cut(strings.TrimPrefix(rest, "/"), "/")
	var title string
	if err := db.QueryRow(`SELECT title FROM namespaces WHERE id = ?`, ns).Scan(&title); err != nil {
		fail(w, http.StatusNotFound, 10013, "get namespace: 'namespace not found'")
		return
	}
	what, key, hasKey := strings.Cut(sub, "/")
	if hasKey {
		k, err := url.PathUnescape(key)
		if err != nil {
			fail(w, 400, 10019, "invalid key name encoding")
			return
		}
		key = k
	}
	switch {
	case sub == "" && r.Method == http.MethodGet:
		ok(w, 200, map[string]any{"id": ns, "title": title, "supports_url_encoding": true}, nil)
	case what == "keys" && !hasKey && r.Method == http.MethodGet:
		s.kvListKeys(w, r, db, ns)
	case what == "values" && hasKey && r.Method == http.MethodGet:
		s.kvGetValue(w, r, db, ns, key)
	case what == "values" && hasKey && r.Method == http.MethodPut:
		s.kvPutValue(w, r, db, ns, key)
	case what == "values" && hasKey && r.Method == http.MethodDelete:
		s.kvDeleteKeys(w, db, ns, []string{key}, false)
	case what == "metadata" && hasKey && r.Method == http.MethodGet:
		s.kvGetMetadata(w, db, ns, key)
	case sub == "bulk/get" && r.Method == http.MethodPost:
		s.kvBulkGet(w, r, db, ns)
	case sub == "bulk" && r.Method == http.MethodPut:
		s.kvBulkPut(w, r, db, ns)
	case sub == "bulk/delete" && r.Method == http.MethodPost:
		var keys []string
		if err := json.NewDecoder(io.LimitReader(r.Body, kvMaxBulkBody)).Decode(&keys); err != nil {
			fail(w, 400, 10026, "could not parse request body: expected an array of key names")
			return
		}
		if len(keys) > kvMaxBulk {
			fail(w, 400, 10028, fmt.Sprintf("too many keys: at most %d per request", kvMaxBulk))
			return
		}
		s.kvDeleteKeys(w, db, ns, keys, true)
	default:
		kvNoRoute(w, r)
	}
}

func kvNoRoute(w http.ResponseWriter, r *http.Request) {
	fail(w, http.StatusNotFound, 7003, "Could not route to "+r.URL.Path+", perhaps your object identifier is invalid?")
}

func (s *Server) kvListNamespaces(w http.ResponseWriter, r *http.Request, db *sql.DB) {
	pg := pageOf(r.URL.Query(), 20, 1000)
	var total int
	if err := db.QueryRow(`SELECT COUNT(*) FROM namespaces`).Scan(&total); err != nil {
		fail(w, 500, 10001, err.Error())
		return
	}
	rows, err := db.Query(`SELECT id, title, url_encoding FROM namespaces ORDER BY ord LIMIT ? OFFSET ?`, pg.per, (pg.n-1)*pg.per)
	if err != nil {
		fail(w, 500, 10001, err.Error())
		return
	}
	defer rows.Close()
	items := []map[string]any{}
	for rows.Next() {
		var id, title string
		var enc bool
		if err := rows.Scan(&id, &title, &enc); err != nil {
			fail(w, 500, 10001, err.Error())
			return
		}
		items = append(items, map[string]any{"id": id, "title": title, "supports_url_encoding": enc})
	}
	ok(w, 200, items, pg.info(len(items), total))
}

func (s *Server) kvCreateNamespace(w http.ResponseWriter, r *http.Request, db *sql.DB) {
	var body struct {
		Title string `json:"title"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil || body.Title == "" {
		fail(w, 400, 10019, "a namespace title is required")
		return
	}
	var n int
	_ = db.QueryRow(`SELECT COUNT(*) FROM namespaces WHERE title = ?`, body.Title).Scan(&n)
	if n > 0 {
		fail(w, 400, 10014, "create namespace: 'a namespace with this account ID and title already exists'")
		return
	}
	id, err := s.AddKVNamespace(body.Title)
	if err != nil {
		fail(w, 500, 10001, err.Error())
		return
	}
	ok(w, 200, map[string]any{"id": id, "title": body.Title, "supports_url_encoding": true}, nil)
}

// kvCursor is the opaque listing cursor: the last key returned, base64url.
func kvCursor(last string) string { return base64.RawURLEncoding.EncodeToString([]byte(last)) }

func (s *Server) kvListKeys(w http.ResponseWriter, r *http.Request, db *sql.DB, ns string) {
	q := r.URL.Query()
	limit := 1000
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 10 || n > 1000 {
			fail(w, 400, 10036, "invalid limit: must be between 10 and 1000")
			return
		}
		limit = n
	}
	after := ""
	if c := q.Get("cursor"); c != "" {
		b, err := base64.RawURLEncoding.DecodeString(c)
		if err != nil {
			fail(w, 400, 10037, "invalid cursor")
			return
		}
		after = string(b)
	}
	prefix := q.Get("prefix")
	now := s.opts.Now().Unix()
	// Keys are compared as bytes (BINARY collation); the prefix range is [prefix, prefix+0xff…).
	rows, err := db.Query(`SELECT key, expiration, metadata FROM pairs WHERE ns = ? AND key > ? AND key >= ? AND substr(key, 1, ?) = ?
		AND (expiration = 0 OR expiration > ?) ORDER BY key LIMIT ?`, ns, after, prefix, utf8.RuneCountInString(prefix), prefix, now, limit+1)
	if err != nil {
		fail(w, 500, 10001, err.Error())
		return
	}
	defer rows.Close()
	items := []map[string]any{}
	last := ""
	more := false
	for rows.Next() {
		var key string
		var exp int64
		var meta sql.NullString
		if err := rows.Scan(&key, &exp, &meta); err != nil {
			fail(w, 500, 10001, err.Error())
			return
		}
		if len(items) == limit {
			more = true
			break
		}
		it := map[string]any{"name": key}
		if exp != 0 {
			it["expiration"] = exp
		}
		if meta.Valid {
			it["metadata"] = json.RawMessage(meta.String)
		}
		items = append(items, it)
		last = key
	}
	if err := rows.Err(); err != nil {
		fail(w, 500, 10001, err.Error())
		return
	}
	cursor := ""
	if more {
		cursor = kvCursor(last)
	}
	ok(w, 200, items, map[string]any{"count": len(items), "cursor": cursor})
}

// kvRead reads a live pair; found is false for a missing or expired key.
func (s *Server) kvRead(ctx context.Context, db *sql.DB, ns, key string) (p KVPair, found bool, err error) {
	var meta sql.NullString
	err = db.QueryRowContext(ctx, `SELECT value, expiration, metadata FROM pairs WHERE ns = ? AND key = ? AND (expiration = 0 OR expiration > ?)`,
		ns, key, s.opts.Now().Unix()).Scan(&p.Value, &p.Expiration, &meta)
	if errors.Is(err, sql.ErrNoRows) {
		return p, false, nil
	}
	if err != nil {
		return p, false, err
	}
	p.Key = key
	if meta.Valid {
		p.Metadata = json.RawMessage(meta.String)
	}
	return p, true, nil
}

// kvReadMany reads the live pairs among keys.
func (s *Server) kvReadMany(ctx context.Context, db *sql.DB, ns string, keys []string) (map[string]KVPair, error) {
	args := []any{ns, s.opts.Now().Unix()}
	for _, k := range keys {
		args = append(args, k)
	}
	rows, err := db.QueryContext(ctx, `SELECT key, value, expiration, metadata FROM pairs WHERE ns = ? AND (expiration = 0 OR expiration > ?)
		AND key IN (?`+strings.Repeat(", ?", len(keys)-1)+`)`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string]KVPair, len(keys))
	for rows.Next() {
		var p KVPair
		var meta sql.NullString
		if err := rows.Scan(&p.Key, &p.Value, &p.Expiration, &meta); err != nil {
			return nil, err
		}
		if meta.Valid {
			p.Metadata = json.RawMessage(meta.String)
		}
		out[p.Key] = p
	}
	return out, rows.Err()
}

func (s *Server) kvGetValue(w http.ResponseWriter, r *http.Request, db *sql.DB, ns, key string) {
	s.kv.gets.Add(1)
	p, found, err := s.kvRead(r.Context(), db, ns, key)
	if err != nil {
		fail(w, 500, 10001, err.Error())
		return
	}
	if !found {
		fail(w, http.StatusNotFound, 10009, "get: 'key not found'")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(p.Value)))
	if p.Expiration != 0 {
		w.Header().Set("Expiration", strconv.FormatInt(p.Expiration, 10))
	}
	w.WriteHeader(200)
	_, _ = w.Write(p.Value)
}

func (s *Server) kvGetMetadata(w http.ResponseWriter, db *sql.DB, ns, key string) {
	p, found, err := s.kvRead(context.Background(), db, ns, key)
	if err != nil {
		fail(w, 500, 10001, err.Error())
		return
	}
	if !found {
		fail(w, http.StatusNotFound, 10009, "get: 'key not found'")
		return
	}
	var res any
	if p.Metadata != nil {
		res = p.Metadata
	}
	ok(w, 200, res, nil)
}

// kvCheckExpiry validates an expiration or TTL as a write gets it and returns the expiration.
func (s *Server) kvCheckExpiry(exp, ttl int64) (int64, string) {
	now := s.opts.Now().Unix()
	if ttl != 0 {
		if ttl < kvMinTTL {
			return 0, fmt.Sprintf("Invalid expiration_ttl of %d. Expiration TTL must be at least %d.", ttl, kvMinTTL)
		}
		return now + ttl, ""
	}
	if exp != 0 && exp < now+kvMinTTL {
		return 0, fmt.Sprintf("Invalid expiration of %d. Please specify integer greater than the current number of seconds since the UNIX epoch plus %d.", exp, kvMinTTL)
	}
	return exp, ""
}

func (s *Server) kvPutValue(w http.ResponseWriter, r *http.Request, db *sql.DB, ns, key string) {
	if msg := kvCheckKey(key); msg != "" {
		fail(w, 400, 10019, msg)
		return
	}
	q := r.URL.Query()
	exp, _ := strconv.ParseInt(q.Get("expiration"), 10, 64)
	ttl, _ := strconv.ParseInt(q.Get("expiration_ttl"), 10, 64)
	exp, msg := s.kvCheckExpiry(exp, ttl)
	if msg != "" {
		fail(w, 400, 10033, msg)
		return
	}
	p := KVPair{Key: key, Expiration: exp}
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "multipart/form-data" {
		mr := multipart.NewReader(r.Body, params["boundary"])
		for {
			part, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				fail(w, 400, 10019, "malformed multipart body")
				return
			}
			b, err := io.ReadAll(io.LimitReader(part, kvMaxValue+1))
			if err != nil {
				fail(w, 400, 10019, "malformed multipart body")
				return
			}
			switch part.FormName() {
			case "value":
				p.Value = b
			case "metadata":
				p.Metadata = json.RawMessage(b)
			}
		}
	} else {
		b, err := io.ReadAll(io.LimitReader(r.Body, kvMaxValue+1))
		if err != nil {
			fail(w, 400, 10019, "could not read the value")
			return
		}
		p.Value = b
	}
	if len(p.Value) > kvMaxValue {
		fail(w, http.StatusRequestEntityTooLarge, 10011, fmt.Sprintf("value length of %d exceeds limit of %d", len(p.Value), kvMaxValue))
		return
	}
	if len(p.Metadata) > kvMaxMetadata || (len(p.Metadata) > 0 && !json.Valid(p.Metadata)) {
		fail(w, 400, 10020, fmt.Sprintf("metadata must be JSON of at most %d bytes", kvMaxMetadata))
		return
	}
	tx, err := db.Begin()
	if err == nil {
		err = kvUpsert(tx, ns, p)
		if err == nil {
			err = tx.Commit()
		} else {
			tx.Rollback()
		}
	}
	if err != nil {
		fail(w, 500, 10001, err.Error())
		return
	}
	ok(w, 200, map[string]any{}, nil)
}

func (s *Server) kvBulkGet(w http.ResponseWriter, r *http.Request, db *sql.DB, ns string) {
	s.kv.bulks.Add(1)
	var body struct {
		Keys         []string `json:"keys"`
		Type         string   `json:"type"`
		WithMetadata bool     `json:"withMetadata"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil {
		fail(w, 400, 10026, "could not parse request body")
		return
	}
	if len(body.Keys) == 0 || len(body.Keys) > kvMaxBulkGet {
		fail(w, 400, 10028, fmt.Sprintf("keys: between 1 and %d keys per request", kvMaxBulkGet))
		return
	}
	if body.Type == "" {
		body.Type = "text"
	}
	if body.Type != "text" && body.Type != "json" {
		fail(w, 400, 10019, "type must be text or json")
		return
	}
	found, err := s.kvReadMany(r.Context(), db, ns, body.Keys)
	if err != nil {
		fail(w, 500, 10001, err.Error())
		return
	}
	values := make(map[string]any, len(body.Keys))
	for _, k := range body.Keys {
		p, ok := found[k]
		if !ok {
			values[k] = nil
			continue
		}
		var v any
		if !utf8.Valid(p.Value) && s.kv.strict.Load() {
			fail(w, 400, 10019, "bulk get: a value is not valid UTF-8 text")
			return
		}
		text := strings.ToValidUTF8(string(p.Value), "\uFFFD")
		if body.Type == "json" {
			var j any
			if err := json.Unmarshal([]byte(text), &j); err != nil {
				fail(w, 400, 10019, "bulk get: a value is not JSON")
				return
			}
			v = j
		} else {
			v = text
		}
		if body.WithMetadata {
			e := map[string]any{"value": v, "metadata": nil}
			if p.Metadata != nil {
				e["metadata"] = p.Metadata
			}
			if p.Expiration != 0 {
				e["expiration"] = p.Expiration
			}
			v = e
		}
		values[k] = v
	}
	ok(w, 200, map[string]any{"values": values}, nil)
}

func (s *Server) kvBulkPut(w http.ResponseWriter, r *http.Request, db *sql.DB, ns string) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, kvMaxBulkBody+1))
	if err != nil {
		fail(w, 400, 10026, "could not read request body")
		return
	}
	if len(raw) > kvMaxBulkBody {
		fail(w, http.StatusRequestEntityTooLarge, 10011, fmt.Sprintf("request body over %d bytes", kvMaxBulkBody))
		return
	}
	var pairs []struct {
		Key           string          `json:"key"`
		Value         *string         `json:"value"`
		Base64        bool            `json:"base64"`
		Expiration    int64           `json:"expiration"`
		ExpirationTTL int64           `json:"expiration_ttl"`
		Metadata      json.RawMessage `json:"metadata"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&pairs); err != nil {
		fail(w, 400, 10026, "could not parse request body: expected an array of key-value pairs")
		return
	}
	if len(pairs) > kvMaxBulk {
		fail(w, 400, 10028, fmt.Sprintf("too many pairs: at most %d per request", kvMaxBulk))
		return
	}
	out := make([]KVPair, 0, len(pairs))
	for _, p := range pairs {
		if msg := kvCheckKey(p.Key); msg != "" {
			fail(w, 400, 10019, msg)
			return
		}
		if p.Value == nil {
			fail(w, 400, 10019, "a value is required for every pair")
			return
		}
		val := []byte(*p.Value)
		if p.Base64 {
			if val, err = base64.StdEncoding.DecodeString(*p.Value); err != nil {
				fail(w, 400, 10019, "a base64 value does not decode")
				return
			}
		}
		if len(val) > kvMaxValue {
			fail(w, http.StatusRequestEntityTooLarge, 10011, fmt.Sprintf("value length of %d exceeds limit of %d", len(val), kvMaxValue))
			return
		}
		meta := p.Metadata
		if string(meta) == "null" {
			meta = nil
		}
		if len(meta) > 0 {
			var c bytes.Buffer
			if err := json.Compact(&c, meta); err != nil {
				fail(w, 400, 10020, "metadata is not JSON")
				return
			}
			meta = c.Bytes()
		}
		if len(meta) > kvMaxMetadata {
			fail(w, 400, 10020, fmt.Sprintf("metadata length of %d exceeds limit of %d", len(meta), kvMaxMetadata))
			return
		}
		exp, msg := s.kvCheckExpiry(p.Expiration, p.ExpirationTTL)
		if msg != "" {
			fail(w, 400, 10033, msg)
			return
		}
		out = append(out, KVPair{Key: p.Key, Value: val, Expiration: exp, Metadata: meta})
	}
	var unsuccessful []string
	if len(out) > 0 && s.kv.flaky.Load() > 0 && s.kv.flaky.Add(-1) >= 0 {
		unsuccessful = append(unsuccessful, out[len(out)-1].Key)
		out = out[:len(out)-1]
	}
	tx, err := db.Begin()
	if err != nil {
		fail(w, 500, 10001, err.Error())
		return
	}
	up, err := newUpserter(tx)
	if err != nil {
		tx.Rollback()
		fail(w, 500, 10001, err.Error())
		return
	}
	for _, p := range out {
		if err := up.put(ns, p); err != nil {
			tx.Rollback()
			fail(w, 500, 10001, err.Error())
			return
		}
	}
	if err := tx.Commit(); err != nil {
		fail(w, 500, 10001, err.Error())
		return
	}
	if unsuccessful == nil {
		unsuccessful = []string{}
	}
	ok(w, 200, map[string]any{"successful_key_count": len(out), "unsuccessful_keys": unsuccessful}, nil)
}

func (s *Server) kvDeleteKeys(w http.ResponseWriter, db *sql.DB, ns string, keys []string, bulk bool) {
	tx, err := db.Begin()
	if err != nil {
		fail(w, 500, 10001, err.Error())
		return
	}
	for _, k := range keys {
		if _, err := tx.Exec(`DELETE FROM pairs WHERE ns = ? AND key = ?`, ns, k); err != nil {
			tx.Rollback()
			fail(w, 500, 10001, err.Error())
			return
		}
	}
	if err := tx.Commit(); err != nil {
		fail(w, 500, 10001, err.Error())
		return
	}
	if bulk {
		ok(w, 200, map[string]any{"successful_key_count": len(keys), "unsuccessful_keys": []string{}}, nil)
		return
	}
	ok(w, 200, map[string]any{}, nil)
}

// isKVPath reports whether r is a KV request (routed by kvHandler, not the ServeMux).
func isKVPath(r *http.Request) bool {
	p := r.URL.EscapedPath()
	if !strings.HasPrefix(p, "/client/v4/accounts/") {
		return false
	}
	_, rest, _ := strings.Cut(strings.TrimPrefix(p, "/client/v4/accounts/"), "/")
	return rest == "storage/kv/namespaces" || strings.HasPrefix(rest, "storage/kv/namespaces/")
}

// withKV sends KV requests (through the guard: faults, token) to kvHandler and the rest to next.
func (s *Server) withKV(next http.Handler) http.Handler {
	kv := s.guard(http.HandlerFunc(s.kvHandler))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isKVPath(r) {
			kv.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// KVNamespaceID finds a namespace's id by title.
func (s *Server) KVNamespaceID(title string) (string, error) {
	db, err := s.kvDB()
	if err != nil {
		return "", err
	}
	var id string
	if err := db.QueryRow(`SELECT id FROM namespaces WHERE title = ?`, title).Scan(&id); err != nil {
		return "", fmt.Errorf("KV namespace %q: %w", title, err)
	}
	return id, nil
}

// SeedKV creates a namespace titled title (or reuses it) and, when it is empty, fills it with n
// generated pairs, deterministic for a seed: keys "<prefix>/<i>" under a few prefixes, text values
// of 40–600 bytes, every 10th value binary, every 3rd pair with metadata, every 10th expiring in a
// year. It returns the namespace id.
func (s *Server) SeedKV(title string, n int, seed uint64) (string, error) {
	id, err := s.KVNamespaceID(title)
	if err != nil {
		if id, err = s.AddKVNamespace(title); err != nil {
			return "", err
		}
	}
	db, err := s.kvDB()
	if err != nil {
		return "", err
	}
	var have int
	if err := db.QueryRow(`SELECT COUNT(*) FROM pairs WHERE ns = ?`, id).Scan(&have); err != nil || have > 0 {
		return id, err
	}
	rng := rand.New(rand.NewPCG(seed, uint64(n)))
	prefixes := []string{"user", "session", "config", "cache/img", "flags"}
	exp := s.opts.Now().Add(365 * 24 * time.Hour).Unix()
	for lo := 0; lo < n; lo += 10000 {
		var batch []KVPair
		for i := lo; i < min(lo+10000, n); i++ {
			p := KVPair{Key: fmt.Sprintf("%s/%08d", prefixes[i%len(prefixes)], i)}
			if i%10 == 9 {
				p.Value = make([]byte, 40+rng.IntN(560))
				for j := range p.Value {
					p.Value[j] = byte(rng.UintN(256))
				}
				p.Value[0] = 0xff
			} else {
				p.Value = []byte(strings.Repeat(fmt.Sprintf("value %d of %s; ", i, title), 1+rng.IntN(20)))
			}
			if i%3 == 0 {
				p.Metadata = json.RawMessage(fmt.Sprintf(`{"v":%d,"owner":"u%d"}`, rng.IntN(100), i))
			}
			if i%10 == 4 {
				p.Expiration = exp
			}
			batch = append(batch, p)
		}
		if err := s.PutKV(id, batch...); err != nil {
			return "", err
		}
	}
	return id, nil
}

// DeleteKV deletes keys of a namespace.
func (s *Server) DeleteKV(ns string, keys ...string) error {
	db, err := s.kvDB()
	if err != nil {
		return err
	}
	for _, k := range keys {
		if _, err := db.Exec(`DELETE FROM pairs WHERE ns = ? AND key = ?`, ns, k); err != nil {
			return err
		}
	}
	return nil
}
