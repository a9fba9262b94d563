package durableobject_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cfbackup/cfbackup/pkg/source/durableobject"
)

// TestClientReusesConnections: a Client's requests share keep-alive connections. A new connection per
// request cost a TCP handshake each and left one idle socket per request open at the Worker, which
// slowed a restore of 10,000 objects.
func TestClientReusesConnections(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/info") || r.Header.Get("cfbackup-signature") == "" {
			http.Error(w, "unexpected request", http.StatusBadRequest)
			return
		}
		w.Header().Set("content-type", "application/json")
		_, _ = w.Write([]byte(`{"id":"x","format":"cfbackup-do/2","backend":"sqlite","has_data":true}`))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	c, err := durableobject.NewClient(srv.URL, secret)
	if err != nil {
		t.Fatal(err)
	}
	id := strings.Repeat("ab", 32)
	for i := 0; i < 20; i++ {
		in, err := c.Info(context.Background(), "SessionStore", id)
		if err != nil {
			t.Fatal(err)
		}
		if !in.HasData {
			t.Fatalf("info %d: %+v", i, in)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("20 sequential requests opened %d connections, want 1 (the client's connections are not reused)", n)
	}
}
