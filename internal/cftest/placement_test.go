package cftest_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudflare/cloudflare-go/v7"
	"github.com/cloudflare/cloudflare-go/v7/d1"

	"github.com/cfbackup/cfbackup/internal/cftest"
)

// The create request's primary_location_hint and jurisdiction are validated as D1 does, refused in
// Cloudflare's error shape, and recorded where a test can read them.
func TestCreatePlacement(t *testing.T) {
	dir := t.TempDir()
	_, _, c, _ := start(t, cftest.Options{DataDir: dir})
	ctx := context.Background()
	create := func(name, hint, jur string) (*d1.D1, error) {
		var p d1.DatabaseNewParams
		p.AccountID.Value, p.AccountID.Present = acct, true
		p.Name.Value, p.Name.Present = name, true
		if hint != "" {
			p.PrimaryLocationHint.Value, p.PrimaryLocationHint.Present = d1.DatabaseNewParamsPrimaryLocationHint(hint), true
		}
		if jur != "" {
			p.Jurisdiction.Value, p.Jurisdiction.Present = d1.DatabaseNewParamsJurisdiction(jur), true
		}
		return c.New(ctx, p)
	}
	r, err := create("apac-db", "apac", "")
	if err != nil {
		t.Fatal(err)
	}
	meta, err := os.ReadFile(filepath.Join(dir, "d1", r.UUID, "meta.json"))
	if err != nil || !strings.Contains(string(meta), `"primary_location_hint": "apac"`) {
		t.Fatalf("meta.json %s (%v)", meta, err)
	}
	if r, err = create("eu-db", "", "eu"); err != nil || string(r.Jurisdiction) != "eu" {
		t.Fatalf("jurisdiction: %+v %v", r, err)
	}
	for _, bad := range [][2]string{{"mars", ""}, {"", "moon"}} {
		_, err := create("bad-"+bad[0]+bad[1], bad[0], bad[1])
		var apiErr *cloudflare.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || len(apiErr.Errors) != 1 || apiErr.Errors[0].Code != 7400 {
			t.Fatalf("create with %q/%q: %v, want a 400 with code 7400", bad[0], bad[1], err)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "d1"))
	if len(ents) != 2 {
		t.Fatalf("%d databases on disk, want 2 (a refused create leaves none)", len(ents))
	}
}
