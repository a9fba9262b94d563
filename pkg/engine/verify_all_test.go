package engine_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/manifest"
)

// TestVerifyAllRotatingSlicesReadEverySegmentOnce: seven runs of verify --all --read-data-subset
// next/7 read every segment of the repository exactly once between them (shared segments too), the
// eighth starts over at 1/7, and a damaged segment is found by the one slice that holds it.
func TestVerifyAllRotatingSlicesReadEverySegmentOnce(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 60)
	var snaps []*manifest.Manifest
	for i := 0; i < 3; i++ {
		m, err := f.backup(t, ctx)
		if err != nil {
			t.Fatal(err)
		}
		snaps = append(snaps, m)
	}
	distinct := map[string]bool{}
	for _, m := range snaps {
		for _, s := range m.Segments {
			distinct[s.ID] = true
		}
	}
	if len(distinct) < 7 {
		t.Fatalf("only %d segments: the test needs more than there are slices", len(distinct))
	}
	o := engine.VerifyAllOptions{VerifyOptions: engine.VerifyOptions{ReadData: true, Subset: "next/7", Identities: f.ids, Record: true}}
	readBy := map[string]string{}
	for run := 1; run <= 8; run++ {
		res, err := f.eng.VerifyAll(ctx, snaps, o)
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		want := fmt.Sprintf("%d/7", (run-1)%7+1)
		if res.Slice != want {
			t.Fatalf("run %d read slice %q, want %q", run, res.Slice, want)
		}
		if res.SegmentsTotal != len(distinct) || res.SegmentsRead != len(res.ReadIDs) {
			t.Fatalf("run %d: total %d (want %d), read %d for %d ids", run, res.SegmentsTotal, len(distinct), res.SegmentsRead, len(res.ReadIDs))
		}
		if run == 8 {
			for _, id := range res.ReadIDs {
				if readBy[id] != "1/7" {
					t.Fatalf("run 8 (1/7 again) read %s, which %q read", id, readBy[id])
				}
			}
			break
		}
		t.Logf("slice %s: %d of %d segments, %d bytes, %d items", res.Slice, res.SegmentsRead, res.SegmentsTotal, res.BytesRead, res.Items)
		for _, id := range res.ReadIDs {
			if prev, dup := readBy[id]; dup {
				t.Fatalf("segment %s read by slice %s and again by %s", id, prev, res.Slice)
			}
			readBy[id] = res.Slice
		}
	}
	if len(readBy) != len(distinct) {
		t.Fatalf("seven slices read %d of %d segments", len(readBy), len(distinct))
	}

	// Damage one segment: exactly one of the seven explicit slices finds it.
	var victim string
	for _, s := range snaps[0].Segments {
		victim = s.Key
		break
	}
	path := filepath.Join(f.repo.Store.Location(), victim)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	_ = os.Chmod(path, 0o644)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	failed := 0
	for k := 1; k <= 7; k++ {
		o.Subset = fmt.Sprintf("%d/7", k)
		_, err := f.eng.VerifyAll(ctx, snaps, o)
		if errors.Is(err, engine.ErrIntegrity) {
			failed++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if failed != 1 {
		t.Fatalf("%d slices found the damaged segment, want 1", failed)
	}
	// Quick mode over everything finds it too.
	if _, err := f.eng.VerifyAll(ctx, snaps, engine.VerifyAllOptions{}); !errors.Is(err, engine.ErrIntegrity) {
		t.Fatalf("verify --all: %v", err)
	}
}

func TestParseSlice(t *testing.T) {
	for _, bad := range []string{"0/7", "8/7", "x/7", "next/0", "1/", "/7", "150%", "next"} {
		if _, _, err := engine.ParseSlice(bad); !errors.Is(err, engine.ErrUsage) {
			t.Errorf("%q: %v, want a usage error", bad, err)
		}
	}
	for _, good := range []string{"", "1/7", "7/7", "next/7", "10%"} {
		if _, _, err := engine.ParseSlice(good); err != nil {
			t.Errorf("%q: %v", good, err)
		}
	}
}
