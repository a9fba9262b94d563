package faulty_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/faulty"
	"github.com/cfbackup/cfbackup/pkg/store/mem"
	"github.com/cfbackup/cfbackup/pkg/store/storetest"
)

// With no rules the decorator is transparent.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return faulty.New(mem.New()) })
}

var errInjected = errors.New("injected")

func readAll(t *testing.T, s store.Store, key string, off, n int64) ([]byte, error) {
	t.Helper()
	rc, err := s.Open(context.Background(), key, off, n)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func TestFaults(t *testing.T) {
	ctx := context.Background()
	inner := mem.New()
	f := faulty.New(inner)
	data := []byte("0123456789abcdef")

	f.FailPut(2, errInjected)
	if err := f.Put(ctx, "a", bytes.NewReader(data), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := f.Put(ctx, "b", bytes.NewReader(data), store.PutOptions{}); !errors.Is(err, errInjected) {
		t.Fatalf("2nd Put = %v", err)
	}
	if _, err := inner.Stat(ctx, "b"); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("failed Put reached the inner store")
	}

	f.FailAfter(faulty.OpPut, 3, errInjected) // lost acknowledgement: stored, but reported failed
	if err := f.Put(ctx, "c", bytes.NewReader(data), store.PutOptions{}); !errors.Is(err, errInjected) {
		t.Fatalf("3rd Put = %v", err)
	}
	if _, err := inner.Stat(ctx, "c"); err != nil {
		t.Fatalf("FailAfter Put did not store: %v", err)
	}

	f.FailPutMidway(4, 5, errInjected)
	if err := f.Put(ctx, "d", bytes.NewReader(data), store.PutOptions{}); !errors.Is(err, errInjected) {
		t.Fatalf("4th Put = %v", err)
	}
	if _, err := inner.Stat(ctx, "d"); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("midway-failed Put left an object")
	}
	if f.Calls(faulty.OpPut) != 4 {
		t.Fatalf("Calls(put) = %d", f.Calls(faulty.OpPut))
	}

	f.FailOpen(1, errInjected)
	if _, err := readAll(t, f, "a", 0, -1); !errors.Is(err, errInjected) {
		t.Fatalf("1st Open = %v", err)
	}
	f.FlipByte("a", 3)
	got, err := readAll(t, f, "a", 2, 4)
	if err != nil || !bytes.Equal(got, []byte{'2', '3' ^ 0xff, '4', '5'}) {
		t.Fatalf("flipped range read %q, %v", got, err)
	}
	if got, _ := readAll(t, f, "a", 4, -1); !bytes.Equal(got, data[4:]) {
		t.Fatalf("range without the flipped byte changed: %q", got)
	}
	if f.BytesRead("a") != 4+12 || f.TotalBytesRead() != 16 {
		t.Fatalf("BytesRead = %d, total %d", f.BytesRead("a"), f.TotalBytesRead())
	}

	f.TruncateReads("a", 5, nil)
	if got, err := readAll(t, f, "a", 0, -1); err != nil || len(got) != 5 {
		t.Fatalf("silently truncated read = %d bytes, %v", len(got), err)
	}
	f.TruncateReads("", 2, io.ErrUnexpectedEOF)
	if got, err := readAll(t, f, "c", 0, -1); !errors.Is(err, io.ErrUnexpectedEOF) || len(got) != 2 {
		t.Fatalf("truncated read with error = %d bytes, %v", len(got), err)
	}
	f.Reset()
	if got, _ := readAll(t, f, "a", 0, -1); !bytes.Equal(got, data) {
		t.Fatalf("after Reset read %q", got)
	}

	f.FailDelete(1, errInjected)
	if err := f.Delete(ctx, "a"); !errors.Is(err, errInjected) {
		t.Fatalf("Delete = %v", err)
	}
	if _, err := inner.Stat(ctx, "a"); err != nil {
		t.Fatal("failed Delete deleted")
	}

	f.FailListMidway(1, 1, errInjected)
	var keys []string
	err = f.List(ctx, "", func(oi store.ObjectInfo) error { keys = append(keys, oi.Key); return nil })
	if !errors.Is(err, errInjected) || len(keys) != 1 || keys[0] != "a" {
		t.Fatalf("List midway = %q, %v", keys, err)
	}
}
