package cloudflare_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/cfbackup/cfbackup/internal/cftest"
	"github.com/cfbackup/cfbackup/pkg/cloudflare"
)

// TestVerifyTokenAndProbe: the emulated account answers /user/tokens/verify as Cloudflare does
// (active; 401 code 1000 for an unknown token) and refuses a limited token the endpoints its
// permission groups do not cover with 403 code 10000, while the same listing works for a token
// that holds them.
func TestVerifyTokenAndProbe(t *testing.T) {
	srv, base := cftest.Start(t, cftest.Options{})
	srv.AddToken("d1-read", cftest.D1Read)
	ctx := context.Background()
	client := func(tok string) *cloudflare.Client {
		c, err := cloudflare.New(cloudflare.Config{AccountID: srv.AccountID(), APIToken: tok, BaseURL: base + "/client/v4", MaxRetries: 1})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tok := range []string{"test-token", "d1-read"} {
		ts, err := client(tok).VerifyToken(ctx)
		if err != nil || ts.Status != "active" || ts.ID == "" {
			t.Fatalf("%s: verify = %+v, %v", tok, ts, err)
		}
	}
	_, err := client("nope").VerifyToken(ctx)
	if !errors.Is(err, cloudflare.ErrAuth) || !strings.Contains(err.Error(), "HTTP 401: 1000 Invalid API Token") {
		t.Fatalf("unknown token: %v", err)
	}
	if err := client("d1-read").Probe(ctx, "d1/database", nil); err != nil {
		t.Fatalf("D1 Read listing: %v", err)
	}
	for _, path := range []string{"storage/kv/namespaces", "workers/scripts", "workers/durable_objects/namespaces", "r2/buckets"} {
		err := client("d1-read").Probe(ctx, path, nil)
		if !errors.Is(err, cloudflare.ErrAuth) || !strings.Contains(err.Error(), "HTTP 403: 10000 Authentication error") {
			t.Errorf("%s with D1 Read only: %v", path, err)
		}
		if err := client("test-token").Probe(ctx, path, nil); err != nil {
			t.Errorf("%s with the full token: %v", path, err)
		}
	}
	// D1 Read does not cover writes: creating a database needs D1 Edit.
	if _, err := client("d1-read").CreateDatabase(ctx, "new"); !errors.Is(err, cloudflare.ErrAuth) {
		t.Fatalf("create with D1 Read: %v", err)
	}
}
