package cftest

import (
	"net/http/httptest"
	"testing"
)

// Start runs an emulated account on an httptest server for the life of t and
// returns it with its base URL (scheme://host:port; the API is under
// base+"/client/v4/"). DataDir defaults to t.TempDir(), Token to "test-token".
func Start(t testing.TB, opts Options) (*Server, string) {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	if opts.Token == "" {
		opts.Token = "test-token"
	}
	s, err := New(opts)
	if err != nil {
		t.Fatalf("cftest.Start: %v", err)
	}
	hs := httptest.NewServer(s.Handler())
	s.SetBaseURL(hs.URL)
	t.Cleanup(func() {
		hs.Close()
		_ = s.Close()
	})
	return s, hs.URL
}
