package doctor_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cfbackup/cfbackup/pkg/doctor"
	"github.com/cfbackup/cfbackup/pkg/layout"
	"github.com/cfbackup/cfbackup/pkg/source"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/faulty"
	"github.com/cfbackup/cfbackup/pkg/store/local"
)

func statuses(fs []source.Finding) map[string]source.Status {
	m := map[string]source.Status{}
	for _, f := range fs {
		m[f.Check] = f.Status
	}
	return m
}

func scratchLeft(t *testing.T, st store.Store) []string {
	t.Helper()
	var keys []string
	if err := st.List(context.Background(), layout.Doctor, func(oi store.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return keys
}

func localStore(t *testing.T) (*local.Store, string) {
	dir := t.TempDir()
	st, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return st, dir
}

// TestStoreFindingsLocal: a healthy store passes every operation and keeps no scratch object; one
// left by a killed run over an hour ago is removed, a fresh one (another host's run) is not.
func TestStoreFindingsLocal(t *testing.T) {
	st, dir := localStore(t)
	ctx := context.Background()
	for _, k := range []string{layout.DoctorKey("old"), layout.DoctorKey("fresh")} {
		if err := st.Put(ctx, k, bytes.NewReader([]byte("x")), store.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(filepath.Join(dir, layout.DoctorKey("old")), old, old); err != nil {
		t.Fatal(err)
	}
	fs := doctor.StoreFindings(ctx, st, time.Now)
	for _, c := range []string{"store.put", "store.conditional_create", "store.get", "store.list", "store.delete"} {
		if s := statuses(fs)[c]; s != source.StatusOK {
			t.Errorf("%s: %s (%v)", c, s, fs)
		}
	}
	if left := scratchLeft(t, st); len(left) != 1 || left[0] != layout.DoctorKey("fresh") {
		t.Fatalf("left %v, want only the fresh one", left)
	}
}

// blindStore ignores If-None-Match, as some S3 gateways do.
type blindStore struct{ store.Store }

func (b blindStore) Put(ctx context.Context, key string, r io.Reader, o store.PutOptions) error {
	return b.Store.Put(ctx, key, r, store.PutOptions{})
}

func TestStoreFindingsConditionalCreateIgnored(t *testing.T) {
	st, _ := localStore(t)
	fs := doctor.StoreFindings(context.Background(), blindStore{st}, time.Now)
	if s := statuses(fs)["store.conditional_create"]; s != source.StatusFail {
		t.Fatalf("conditional_create %s, want fail: %v", s, fs)
	}
	if left := scratchLeft(t, st); len(left) != 0 {
		t.Fatalf("scratch left: %v", left)
	}
}

// TestStoreFindingsDeleteDenied: credentials without delete fail store.delete, and the leftover is
// reported with what to do.
func TestStoreFindingsDeleteDenied(t *testing.T) {
	st, _ := localStore(t)
	fst := faulty.New(st)
	denied := errors.New("AccessDenied")
	fst.FailDelete(1, denied)
	fst.FailDelete(2, denied)
	fs := doctor.StoreFindings(context.Background(), fst, time.Now)
	m := statuses(fs)
	if m["store.delete"] != source.StatusFail || m["store.cleanup"] != source.StatusWarn {
		t.Fatalf("got %v", fs)
	}
	for _, f := range fs {
		if f.Status != source.StatusOK && f.Fix == "" {
			t.Errorf("%s without a fix", f.Check)
		}
	}
}

func TestStoreFindingsPutDenied(t *testing.T) {
	st, _ := localStore(t)
	fst := faulty.New(st)
	fst.FailPut(1, errors.New("AccessDenied"))
	fs := doctor.StoreFindings(context.Background(), fst, time.Now)
	if len(fs) != 1 || fs[0].Check != "store.put" || fs[0].Status != source.StatusFail {
		t.Fatalf("got %v", fs)
	}
}
