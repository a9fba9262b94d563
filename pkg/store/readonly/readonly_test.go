package readonly_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/mem"
	"github.com/cfbackup/cfbackup/pkg/store/readonly"
)

func TestReadOnly(t *testing.T) {
	ctx := context.Background()
	inner := mem.New()
	if err := inner.Put(ctx, "k", strings.NewReader("v"), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	s := readonly.New(inner)
	r := strings.NewReader("new")
	if err := s.Put(ctx, "k2", r, store.PutOptions{}); !errors.Is(err, store.ErrReadOnly) {
		t.Fatalf("Put = %v", err)
	}
	if r.Len() != 3 {
		t.Fatal("refused Put consumed its reader")
	}
	if err := s.Delete(ctx, "k"); !errors.Is(err, store.ErrReadOnly) {
		t.Fatalf("Delete = %v", err)
	}
	rc, err := s.Open(ctx, "k", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "v" {
		t.Fatalf("read %q", b)
	}
	if _, err := s.Stat(ctx, "k2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Stat(k2) = %v: refused Put stored something", err)
	}
	n := 0
	if err := s.List(ctx, "", func(store.ObjectInfo) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("List: %d objects, %v", n, err)
	}
	if s.Location() != inner.Location() {
		t.Fatalf("Location = %q", s.Location())
	}
}
