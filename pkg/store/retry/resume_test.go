package retry_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/faulty"
	"github.com/cfbackup/cfbackup/pkg/store/mem"
)

func randomObject(t *testing.T, st store.Store, key string, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 7))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	if err := st.Put(context.Background(), key, bytes.NewReader(b), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOpenResumesCutStream: a stream cut mid-body (a dropped connection, a response shorter than its
// Content-Length) is resumed from the byte reached, with a ranged Open, so the caller reads exactly the
// object: a network fault is never reported as a short (damaged) object.
func TestOpenResumesCutStream(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name           string
		offset, length int64
	}{{"whole", 0, -1}, {"from offset", 1000, -1}, {"range", 1000, 70000}} {
		t.Run(c.name, func(t *testing.T) {
			f := faulty.New(mem.New())
			data := randomObject(t, f, "segments/a.age", 100000)
			s, sl := newRetry(f)
			f.CutOpen(2, 30000, io.ErrUnexpectedEOF)
			f.CutOpen(1, 20000, errTransient)
			f.FailOpen(3, errTransient) // the first resume attempt fails before any byte
			rc, err := s.Open(ctx, "segments/a.age", c.offset, c.length)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			want := data[c.offset:]
			if c.length >= 0 {
				want = want[:c.length]
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("read %d bytes, want %d (equal prefix: %v)", len(got), len(want), bytes.HasPrefix(want, got))
			}
			if n := f.Calls(faulty.OpOpen); n != 4 {
				t.Errorf("%d Opens, want 4 (first, cut at 20000; resume refused; resume cut at +30000; resume to the end)", n)
			}
			if len(sl.d) != 3 {
				t.Errorf("%d backoffs, want 3", len(sl.d))
			}
		})
	}
}

// A stream that keeps being cut without progress gives up after the attempts; one cut after the
// attempts are used up is still reported, never a silent short read.
func TestOpenResumeGivesUp(t *testing.T) {
	ctx := context.Background()
	f := faulty.New(mem.New())
	randomObject(t, f, "k", 1000)
	s, _ := newRetry(f) // 4 attempts
	f.CutOpen(1, 100, errTransient)
	for n := 2; n <= 10; n++ {
		f.CutOpen(n, 0, errTransient)
	}
	rc, err := s.Open(ctx, "k", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if !errors.Is(err, errTransient) || len(got) != 100 {
		t.Fatalf("read %d bytes, err %v; want 100 and the transient error", len(got), err)
	}
	if n := f.Calls(faulty.OpOpen); n != 4 {
		t.Errorf("%d Opens, want 4", n)
	}
}

// Errors that a retry cannot fix (the caller's cancellation) end the read at once.
func TestOpenResumeNotOnPermanent(t *testing.T) {
	ctx := context.Background()
	f := faulty.New(mem.New())
	randomObject(t, f, "k", 1000)
	s, _ := newRetry(f)
	f.CutOpen(1, 100, context.Canceled)
	rc, err := s.Open(ctx, "k", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadAll(rc); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
	if n := f.Calls(faulty.OpOpen); n != 1 {
		t.Errorf("%d Opens, want 1", n)
	}
}
