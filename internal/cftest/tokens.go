package cftest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Permission is a Cloudflare API token permission group, as the dashboard names it. The emulator
// checks them only for tokens added with AddToken; Options.Token may do everything.
type Permission string

// The permission groups the endpoints cfbackup calls need.
const (
	D1Read             Permission = "D1 Read"
	D1Edit             Permission = "D1 Edit"
	WorkersScriptsRead Permission = "Workers Scripts Read"
	WorkersScriptsEdit Permission = "Workers Scripts Edit"
	KVRead             Permission = "Workers KV Storage Read"
	KVWrite            Permission = "Workers KV Storage Write"
	R2Read             Permission = "Workers R2 Storage Read"
	R2Write            Permission = "Workers R2 Storage Write"
)

// tokenPerms is what a limited token may do, and until when (zero: no expiry).
type tokenPerms struct {
	perms   map[Permission]bool
	expires time.Time
}

// AddToken makes token a valid API token of the account holding only perms (an edit permission does
// not imply the read one, as in the dashboard a token lists both), so tests can show what a missing
// permission looks like: Cloudflare answers 403 with code 10000 "Authentication error".
func (s *Server) AddToken(token string, perms ...Permission) {
	s.AddExpiringToken(token, time.Time{}, perms...)
}

// AddExpiringToken is AddToken for a token that expires at expires (its expires_on): after it, the
// token is refused like an unknown one.
func (s *Server) AddExpiringToken(token string, expires time.Time, perms ...Permission) {
	p := tokenPerms{perms: map[Permission]bool{}, expires: expires}
	for _, x := range perms {
		p.perms[x] = true
	}
	s.tokens.Store(token, p)
}

// authorize checks the bearer token and, for a limited token, the permission the request needs.
// An unknown token is refused with 403/10000 on account endpoints and 401/1000 on
// /user/tokens/verify, as Cloudflare answers them.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) bool {
	tok, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	verify := r.URL.Path == "/client/v4/user/tokens/verify"
	if found && hmac.Equal([]byte(tok), []byte(s.opts.Token)) {
		return true
	}
	v, limited := s.tokens.Load(tok)
	if limited && !v.(tokenPerms).expires.IsZero() && !s.opts.Now().Before(v.(tokenPerms).expires) {
		limited = false
	}
	if !found || !limited {
		if verify {
			fail(w, http.StatusUnauthorized, 1000, "Invalid API Token")
		} else {
			fail(w, http.StatusForbidden, 10000, "Authentication error")
		}
		return false
	}
	need := permissionFor(r.Method, r.URL.Path)
	if need != "" && !v.(tokenPerms).perms[need] {
		fail(w, http.StatusForbidden, 10000, "Authentication error")
		return false
	}
	return true
}

// permissionFor is the permission group an endpoint needs ("" for none: /user/tokens/verify).
func permissionFor(method, path string) Permission {
	read := method == http.MethodGet || method == http.MethodHead
	pick := func(r, w Permission) Permission {
		if read {
			return r
		}
		return w
	}
	switch {
	case strings.HasPrefix(path, "/client/v4/user/"):
		return ""
	case strings.Contains(path, "/d1/"):
		return pick(D1Read, D1Edit)
	case strings.Contains(path, "/storage/kv/"):
		if strings.HasSuffix(path, "/bulk/get") { // a POST that reads
			return KVRead
		}
		return pick(KVRead, KVWrite)
	case strings.Contains(path, "/r2/"):
		return pick(R2Read, R2Write)
	case strings.Contains(path, "/workers/"):
		return pick(WorkersScriptsRead, WorkersScriptsEdit)
	}
	return ""
}

// verifyToken answers GET /user/tokens/verify for a token authorize accepted.
func (s *Server) verifyToken(w http.ResponseWriter, r *http.Request) {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte("token:" + tok))
	sum := hex.EncodeToString(m.Sum(nil))
	result := map[string]any{"id": sum[:32], "status": "active"}
	if v, ok := s.tokens.Load(tok); ok && !v.(tokenPerms).expires.IsZero() {
		result["expires_on"] = v.(tokenPerms).expires.UTC().Format(time.RFC3339)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"success": true, "errors": []cfError{},
		"messages": []cfError{{10000, "This API Token is valid and active"}},
		"result":   result,
	})
}

// Permissions lists the permission groups the emulator knows.
var Permissions = []Permission{D1Read, D1Edit, WorkersScriptsRead, WorkersScriptsEdit, KVRead, KVWrite, R2Read, R2Write}

// AddTokensSpec adds limited tokens from a spec "TOKEN:PERMISSION,PERMISSION;TOKEN2:…"
// (CFEMU_LIMITED_TOKENS of cmd/cfemu), so a demo can show what a token lacking a permission does.
func (s *Server) AddTokensSpec(spec string) error {
	known := map[Permission]bool{}
	for _, p := range Permissions {
		known[p] = true
	}
	for _, entry := range strings.Split(spec, ";") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		tok, list, ok := strings.Cut(entry, ":")
		if !ok || strings.TrimSpace(tok) == "" {
			return fmt.Errorf("%q: want TOKEN:PERMISSION,…", entry)
		}
		var perms []Permission
		for _, p := range strings.Split(list, ",") {
			p = strings.TrimSpace(p)
			if p == "" {
				continue
			}
			if !known[Permission(p)] {
				return fmt.Errorf("unknown permission %q (known: %v)", p, Permissions)
			}
			perms = append(perms, Permission(p))
		}
		s.AddToken(strings.TrimSpace(tok), perms...)
	}
	return nil
}
