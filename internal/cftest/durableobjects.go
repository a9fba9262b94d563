package cftest

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
)

// Namespace is an emulated Durable Object namespace.
type Namespace struct {
	ID        string `json:"id"`
	Class     string `json:"class"`
	Name      string `json:"name"`
	Script    string `json:"script"`
	UseSQLite bool   `json:"use_sqlite"`
}

// DurableObject is an emulated object listing entry.
type DurableObject struct {
	ID            string `json:"id"`
	HasStoredData bool   `json:"hasStoredData"`
}

// doState is the Durable Object side of the account: namespaces and, per namespace, its objects
// (or a function that lists them live, e.g. from a local workerd's state directory).
type doState struct {
	namespaces []Namespace
	objects    map[string][]DurableObject
	lister     map[string]func() ([]DurableObject, error)
	// legacyCursor answers with result_info.cursor instead of result_info.cursors.after.
	legacyCursor bool
}

// AddNamespace registers a namespace (replacing one with the same id).
func (s *Server) AddNamespace(ns Namespace) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, n := range s.do.namespaces {
		if n.ID == ns.ID {
			s.do.namespaces[i] = ns
			return
		}
	}
	s.do.namespaces = append(s.do.namespaces, ns)
}

// SetObjects replaces the object listing of a namespace.
func (s *Server) SetObjects(namespaceID string, objs []DurableObject) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.do.objects == nil {
		s.do.objects = map[string][]DurableObject{}
	}
	s.do.objects[namespaceID] = append([]DurableObject(nil), objs...)
}

// SetObjectLister makes the objects listing of a namespace come from fn, called on every request.
func (s *Server) SetObjectLister(namespaceID string, fn func() ([]DurableObject, error)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.do.lister == nil {
		s.do.lister = map[string]func() ([]DurableObject, error){}
	}
	s.do.lister[namespaceID] = fn
}

// UseLegacyCursor switches the objects listing to the older result_info.cursor field.
func (s *Server) UseLegacyCursor(on bool) {
	s.mu.Lock()
	s.do.legacyCursor = on
	s.mu.Unlock()
}

func (s *Server) listNamespaces(w http.ResponseWriter, r *http.Request) {
	if !s.accountOK(w, r) {
		return
	}
	pg := pageOf(r.URL.Query(), 20, 1000)
	s.mu.Lock()
	all := append([]Namespace(nil), s.do.namespaces...)
	s.mu.Unlock()
	lo, hi := pg.window(len(all))
	items := append([]Namespace{}, all[lo:hi]...)
	ok(w, 200, items, pg.info(len(items), len(all)))
}

func (s *Server) listObjects(w http.ResponseWriter, r *http.Request) {
	if !s.accountOK(w, r) {
		return
	}
	nsID := r.PathValue("ns")
	s.mu.Lock()
	found := false
	for _, n := range s.do.namespaces {
		found = found || n.ID == nsID
	}
	objs := append([]DurableObject(nil), s.do.objects[nsID]...)
	lister := s.do.lister[nsID]
	legacy := s.do.legacyCursor
	s.mu.Unlock()
	if !found {
		fail(w, http.StatusNotFound, 10090, fmt.Sprintf("namespace %s not found", nsID))
		return
	}
	if lister != nil {
		var err error
		if objs, err = lister(); err != nil {
			fail(w, http.StatusInternalServerError, 10001, "list objects: "+err.Error())
			return
		}
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].ID < objs[j].ID })
	q := r.URL.Query()
	limit := 1000
	if v := q.Get("limit"); v != "" {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil || n < 10 || n > 10000 {
			fail(w, http.StatusBadRequest, 10021, "limit must be between 10 and 10000")
			return
		}
		limit = int(n)
	}
	// The cursor is the last id of the previous page (opaque to clients).
	start := 0
	if c := q.Get("cursor"); c != "" {
		start = sort.Search(len(objs), func(i int) bool { return objs[i].ID > c })
	}
	end := min(start+limit, len(objs))
	page := objs[start:end]
	next := ""
	if end < len(objs) {
		next = objs[end-1].ID
	}
	info := map[string]any{"count": len(page)}
	if legacy {
		info["cursor"] = next
	} else {
		info["cursors"] = map[string]any{"after": next}
	}
	ok(w, 200, page, info)
}
