package cftest_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/cfbackup/cfbackup/internal/cftest"
)

// TestLimitedTokens: a spec adds tokens that reach only what their permission groups cover (403 code
// 10000 elsewhere), and a spec naming an unknown permission is refused.
func TestLimitedTokens(t *testing.T) {
	srv, base := cftest.Start(t, cftest.Options{})
	if err := srv.AddTokensSpec("kv-only: Workers KV Storage Read ; scripts:Workers Scripts Read"); err != nil {
		t.Fatal(err)
	}
	get := func(tok, path string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, base+"/client/v4/accounts/"+srv.AccountID()+"/"+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 4096)
		n, _ := resp.Body.Read(buf)
		b.Write(buf[:n])
		return resp.StatusCode, b.String()
	}
	for _, c := range []struct {
		tok, path string
		want      int
	}{
		{"kv-only", "storage/kv/namespaces", 200},
		{"kv-only", "d1/database", 403},
		{"scripts", "workers/scripts", 200},
		{"scripts", "workers/durable_objects/namespaces", 200},
		{"scripts", "r2/buckets", 403},
		{"test-token", "r2/buckets", 200},
	} {
		code, body := get(c.tok, c.path)
		if code != c.want || code == 403 && !strings.Contains(body, `"code":10000`) {
			t.Errorf("%s %s: %d %s", c.tok, c.path, code, body)
		}
	}
	if err := srv.AddTokensSpec("x:D1 Admin"); err == nil || !strings.Contains(err.Error(), "unknown permission") {
		t.Fatalf("unknown permission: %v", err)
	}
}
