package cloudflare_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cfbackup/cfbackup/internal/cftest"
	"github.com/cfbackup/cfbackup/pkg/cloudflare"
)

func TestWorkersConfigCalls(t *testing.T) {
	s, url := cftest.Start(t, cftest.Options{})
	s.SeedWorkersExample()
	c := newClient(t, s, url)
	ctx := context.Background()

	scripts, err := c.ListWorkerScripts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(scripts) != 2 {
		t.Fatalf("got %d scripts, want 2", len(scripts))
	}
	var app struct {
		ID     string                     `json:"id"`
		Routes []struct{ Pattern string } `json:"routes"`
	}
	if err := json.Unmarshal(scripts[0], &app); err != nil || app.ID != "app" || len(app.Routes) != 1 || app.Routes[0].Pattern != "api.example.com/*" {
		t.Fatalf("first script = %s (%v)", scripts[0], err)
	}

	set, err := c.WorkerSettings(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(set), `"ISSUER_URL"`) || strings.Contains(string(set), "s3cr3t") {
		t.Fatalf("settings: %s", set)
	}
	secrets, err := c.WorkerSecrets(ctx, "app")
	if err != nil || len(secrets) != 2 {
		t.Fatalf("secrets %s, %v", secrets, err)
	}
	sch, err := c.WorkerSchedules(ctx, "cron")
	if err != nil || len(sch) != 2 || !strings.Contains(string(sch[0]), `"cron":"*/15 * * * *"`) {
		t.Fatalf("schedules %s, %v", sch, err)
	}
	sub, err := c.WorkerSubdomain(ctx, "app")
	if err != nil || !strings.Contains(string(sub), `"enabled":true`) {
		t.Fatalf("subdomain %s, %v", sub, err)
	}
	doms, err := c.ListWorkerDomains(ctx)
	if err != nil || len(doms) != 1 {
		t.Fatalf("domains %s, %v", doms, err)
	}
	routes, err := c.ListZoneWorkerRoutes(ctx, "3f2a9c1e0b8d4e6fa1b2c3d4e5f60718")
	if err != nil || len(routes) != 1 {
		t.Fatalf("routes %s, %v", routes, err)
	}
	if _, err := c.ListZoneWorkerRoutes(ctx, "0000"); !errors.Is(err, cloudflare.ErrNotFound) {
		t.Fatalf("unknown zone: %v, want ErrNotFound", err)
	}
	if _, err := c.WorkerSettings(ctx, "nope"); !errors.Is(err, cloudflare.ErrNotFound) {
		t.Fatalf("unknown script: %v, want ErrNotFound", err)
	}
	nss, err := c.ListNamespacesRaw(ctx)
	if err != nil || len(nss) != 1 {
		t.Fatalf("namespaces %s, %v", nss, err)
	}
}

func TestListR2BucketsFollowsCursor(t *testing.T) {
	s, url := cftest.Start(t, cftest.Options{})
	for i := range 2503 {
		s.AddR2Bucket(cftest.R2Bucket{Name: fmt.Sprintf("b%05d", i)})
	}
	s.AddR2Bucket(cftest.R2Bucket{Name: "eu-only", Jurisdiction: "eu"})
	c := newClient(t, s, url)
	got, err := c.ListR2BucketsRaw(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2503 {
		t.Fatalf("got %d buckets, want 2503 (default jurisdiction only)", len(got))
	}
	seen := map[string]bool{}
	for _, b := range got {
		var v struct{ Name string }
		_ = json.Unmarshal(b, &v)
		if seen[v.Name] {
			t.Fatalf("bucket %s listed twice", v.Name)
		}
		seen[v.Name] = true
	}
}

func TestListDatabasesRawPages(t *testing.T) {
	s, url := cftest.Start(t, cftest.Options{})
	for i := range 205 {
		if _, err := s.CreateDatabase(fmt.Sprintf("db%03d", i)); err != nil {
			t.Fatal(err)
		}
	}
	c := newClient(t, s, url)
	got, err := c.ListDatabasesRaw(context.Background())
	if err != nil || len(got) != 205 {
		t.Fatalf("got %d databases, %v; want 205", len(got), err)
	}
}

func TestWorkersCallsRetry429(t *testing.T) {
	s, url := cftest.Start(t, cftest.Options{})
	s.SeedWorkersExample()
	s.InjectFaults(cftest.Faults{Status429: 2, Status5xx: 1, RetryAfter: 10 * time.Millisecond})
	c := newClient(t, s, url)
	if _, err := c.WorkerSettings(context.Background(), "app"); err != nil {
		t.Fatalf("after 429, 429, 500 the call should succeed: %v", err)
	}
}

func TestWorkersAuthErrorNamesPermission(t *testing.T) {
	s, url := cftest.Start(t, cftest.Options{})
	c, err := cloudflare.New(cloudflare.Config{AccountID: s.AccountID(), APIToken: "wrong", BaseURL: url + "/client/v4"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ListWorkerScripts(context.Background())
	if !errors.Is(err, cloudflare.ErrAuth) || !strings.Contains(err.Error(), "Workers Scripts Read") {
		t.Fatalf("got %v, want ErrAuth naming Workers Scripts Read", err)
	}
	_, err = c.ListR2BucketsRaw(context.Background())
	if !errors.Is(err, cloudflare.ErrAuth) || !strings.Contains(err.Error(), "R2 Storage Read") {
		t.Fatalf("got %v, want ErrAuth naming R2 Storage Read", err)
	}
}
