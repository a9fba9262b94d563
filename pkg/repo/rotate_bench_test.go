package repo_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	. "github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/local"
)

// TestMeasureRotation measures rewrap and rotate-writer on CFBACKUP_BENCH_ROTATE_MIB MiB of
// incompressible snapshot data (segments of 64 MiB, 4 snapshots) on a local directory and on versitygw.
// It is skipped unless the variable is set: scripts/bench-rotate.sh runs it and docs/RUNBOOK.md §3
// quotes its output.
func TestMeasureRotation(t *testing.T) {
	mib, _ := strconv.Atoi(os.Getenv("CFBACKUP_BENCH_ROTATE_MIB"))
	if mib <= 0 {
		t.Skip("set CFBACKUP_BENCH_ROTATE_MIB (scripts/bench-rotate.sh)")
	}
	for _, kind := range []string{"local", "s3"} {
		t.Run(kind, func(t *testing.T) {
			var st store.Store
			if kind == "local" {
				var err error
				if st, err = local.New(t.TempDir()); err != nil {
					t.Fatal(err)
				}
			} else {
				st = s3Store(t, "bench", false)
			}
			measureRotation(t, st, mib)
		})
	}
}

func measureRotation(t *testing.T, st store.Store, mib int) {
	ctx := context.Background()
	oldID, oldR := newKey(t)
	_, newR := newKey(t)
	r, _, err := Init(ctx, st, InitOptions{Recipients: []string{oldR}})
	if err != nil {
		t.Fatal(err)
	}
	rcp, _ := r.Recipients()
	start := time.Now()
	per := mib / 4
	for s := 0; s < 4; s++ {
		w, err := archive.NewWriter(ctx, archive.WriterOptions{Store: st, Recipients: rcp, SegmentSize: 64 << 20, Concurrency: 2})
		if err != nil {
			t.Fatal(err)
		}
		var cat manifest.Catalogue
		buf := make([]byte, 1<<20)
		for i := 0; i < per; i++ {
			rand.Read(buf)
			ref, err := w.WriteItem(fmt.Sprintf("s%d/i%05d", s, i), bytes.NewReader(buf))
			if err != nil {
				t.Fatal(err)
			}
			cat.Items = append(cat.Items, manifest.Item{Component: "d1", Source: "s", Kind: "table", ItemRef: ref})
		}
		segs, err := w.Close()
		if err != nil {
			t.Fatal(err)
		}
		m := &manifest.Manifest{ID: fmt.Sprintf("dddd000%d", s), Time: time.Date(2026, 1, s+1, 0, 0, 0, 0, time.UTC), Components: []string{"d1"}, Segments: segs, Items: int64(per)}
		if err := m.SealCatalogue(&cat, rcp); err != nil {
			t.Fatal(err)
		}
		if err := r.SaveManifest(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%s: wrote %d MiB of snapshots in %s", st.Location(), mib, time.Since(start).Round(time.Millisecond))
	if err := r.SetRecipients(ctx, []string{newR}); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	res, err := r.Rewrap(ctx, RewrapOptions{Identities: []age.Identity{oldID}})
	if err != nil {
		t.Fatal(err)
	}
	d := time.Since(start)
	gib := float64(res.BytesRead) / (1 << 30)
	t.Logf("REWRAP %s: %d segments, %d manifests, read %d B, wrote %d B, grown %d, %s (%.1f s/GiB, %.0f MiB/s)",
		st.Location(), res.Rewritten, res.Manifests, res.BytesRead, res.BytesWritten, res.Grown, d.Round(time.Millisecond), d.Seconds()/gib, float64(res.BytesRead)/(1<<20)/d.Seconds())
	start = time.Now()
	wr, err := r.RotateWriter(ctx, bytes.Repeat([]byte{9}, 32), RotateWriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ROTATE-WRITER %s: %d manifests re-signed in %s (segments untouched)", st.Location(), wr.Manifests, time.Since(start).Round(time.Millisecond))
}
