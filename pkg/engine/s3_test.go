package engine_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/cfbackup/cfbackup/internal/testutil/s3server"
	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/source/d1"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/open"
)

// TestBackupRestoreThroughS3 runs the whole D1 story with the repository on a real S3 server
// (versitygw on loopback), opened the way the CLI opens it: an s3:// location.
func TestBackupRestoreThroughS3(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an S3 server")
	}
	srv := s3server.Start(t)
	srv.CreateBucket(t, "backups", false)
	f := newFixture(t, 20)
	ctx := context.Background()
	st, err := open.Open(ctx, "s3://backups/prod/app", open.Options{S3Endpoint: srv.Endpoint, S3Region: srv.Region,
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	rcp := []string{f.repo.Config.Recipients[0].Recipient}
	r, _, err := repo.Init(ctx, st, repo.InitOptions{Recipients: rcp, SegmentSize: 16 << 10, ChunkSize: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := repo.Init(ctx, st, repo.InitOptions{Recipients: rcp}); !errors.Is(err, repo.ErrExists) {
		t.Fatalf("second init on S3: %v", err)
	}
	f.repo, f.eng = r, &engine.Engine{Repo: r}
	m, err := f.backup(t, ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Segments) < 2 {
		t.Fatalf("want several segments, got %d", len(m.Segments))
	}
	// Reopen from scratch, as another host would.
	f.checkStandsAlone(t, ctx, st, m.ID, "S3")
}

// checkStandsAlone opens the repository at st as another host would, finds the latest d1 snapshot
// (it must be wantID), verifies it with --read-data, restores it to a file and compares every table
// with the seeded database.
func (f *fixture) checkStandsAlone(t *testing.T, ctx context.Context, st store.Store, wantID, where string) {
	t.Helper()
	r, err := repo.OpenWithIdentities(ctx, st, f.ids, repo.AuthOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e := &engine.Engine{Repo: r}
	got, err := r.FindSnapshot(ctx, "latest", d1.Component)
	if err != nil || got.ID != wantID {
		t.Fatalf("latest on %s: %v %v", where, got, err)
	}
	if _, err := e.Verify(ctx, got, engine.VerifyOptions{ReadData: true, Identities: f.ids}); err != nil {
		t.Fatal(err)
	}
	cat, err := engine.OpenCatalogue(got, f.ids)
	if err != nil {
		t.Fatal(err)
	}
	sel, _ := d1.Select(cat, f.dbUUID, nil)
	out := filepath.Join(t.TempDir(), "restored.sqlite")
	if _, err := d1.RestoreToFile(ctx, e.Opener(got, f.ids), sel, out); err != nil {
		t.Fatal(err)
	}
	for _, tbl := range seedTables {
		if a, b := tableRows(t, f.seedDB, tbl), tableRows(t, out, tbl); len(a) != len(b) || (len(a) > 0 && a[len(a)-1] != b[len(b)-1]) {
			t.Errorf("table %s differs after restore from %s (%d rows, %d restored)", tbl, where, len(a), len(b))
		}
	}

}
