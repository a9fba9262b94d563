package cloudflare_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/cfbackup/cfbackup/internal/cftest"
	"github.com/cfbackup/cfbackup/pkg/cloudflare"
)

func newClient(t *testing.T, s *cftest.Server, url string) *cloudflare.Client {
	t.Helper()
	c, err := cloudflare.New(cloudflare.Config{AccountID: s.AccountID(), APIToken: "test-token", BaseURL: url + "/client/v4"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestListObjectsFollowsBothCursorShapes(t *testing.T) {
	s, url := cftest.Start(t, cftest.Options{})
	s.AddNamespace(cftest.Namespace{ID: "ns1", Class: "Sessions", Name: "app_Sessions", Script: "app", UseSQLite: true})
	var objs []cftest.DurableObject
	for i := range 2345 {
		objs = append(objs, cftest.DurableObject{ID: fmt.Sprintf("%064x", i), HasStoredData: i%3 != 0})
	}
	s.SetObjects("ns1", objs)
	c := newClient(t, s, url)
	ctx := context.Background()
	for _, legacy := range []bool{false, true} {
		s.UseLegacyCursor(legacy)
		seen := map[string]bool{}
		pages := 0
		err := c.ListObjects(ctx, "ns1", 1000, func(page []cloudflare.DurableObject) error {
			pages++
			for _, o := range page {
				if seen[o.ID] {
					t.Fatalf("legacy=%v: object %s listed twice", legacy, o.ID)
				}
				seen[o.ID] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(seen) != len(objs) || pages != 3 {
			t.Fatalf("legacy=%v: got %d objects in %d pages, want %d in 3", legacy, len(seen), pages, len(objs))
		}
	}
}

func TestResolveNamespace(t *testing.T) {
	s, url := cftest.Start(t, cftest.Options{})
	s.AddNamespace(cftest.Namespace{ID: "ns1", Class: "Sessions", Name: "app_Sessions", Script: "app"})
	s.AddNamespace(cftest.Namespace{ID: "ns2", Class: "Limiter", Name: "app_Limiter", Script: "app"})
	c := newClient(t, s, url)
	ctx := context.Background()
	for _, ref := range []string{"ns2", "app_Limiter", "Limiter"} {
		n, err := c.ResolveNamespace(ctx, ref)
		if err != nil || n.ID != "ns2" {
			t.Fatalf("ResolveNamespace(%q) = %+v, %v", ref, n, err)
		}
	}
	if _, err := c.ResolveNamespace(ctx, "nope"); !errors.Is(err, cloudflare.ErrNotFound) {
		t.Fatalf("unknown namespace: %v", err)
	}
	if err := c.ListObjects(ctx, "missing", 100, func([]cloudflare.DurableObject) error { return nil }); !errors.Is(err, cloudflare.ErrNotFound) {
		t.Fatalf("objects of a missing namespace: %v", err)
	}
}
