package audit_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/cfbackup/cfbackup/pkg/audit"
	"github.com/cfbackup/cfbackup/pkg/store/mem"
)

// Walk hands each record on and keeps none: at the last record, the heap holds no more than a
// fraction of what the records it passed weigh, while a caller that keeps them (as Verify does) holds
// them all. Unfinished runs and the chain verdict are the same as Verify's.
func TestWalkKeepsNoRecords(t *testing.T) {
	ctx := context.Background()
	l := &audit.Log{Store: mem.New()}
	const n = 1000
	bulk := strings.Repeat("x", 8000)
	for i := range n {
		rec := &audit.Record{Command: "backup", Result: audit.ResultOK, Run: fmt.Sprint(i), Args: []string{"backup", "--label=n=" + bulk}}
		if i == 10 {
			rec.Result = audit.ResultStarted // killed: never ends
		}
		if err := l.Append(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	heapAtEnd := func(keep bool) (int64, audit.Status) {
		var kept []audit.Record
		var base runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&base)
		var at int64
		seen := 0
		st, err := l.Walk(ctx, func(r audit.Record) error {
			if keep {
				kept = append(kept, r)
			}
			if seen++; seen == n {
				var m runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&m)
				at = int64(m.HeapAlloc) - int64(base.HeapAlloc)
			}
			return nil
		})
		if err != nil || !st.OK {
			t.Fatal(err, st.Problems)
		}
		runtime.KeepAlive(kept)
		return at, st
	}
	walked, st := heapAtEnd(false)
	kept, _ := heapAtEnd(true)
	t.Logf("heap at the last of %d records (8 KB each): walking %d bytes, keeping them %d bytes", n, walked, kept)
	if kept < n*8000 || walked > kept/4 {
		t.Fatalf("walk holds %d bytes at the end, keeping the records %d", walked, kept)
	}
	if len(st.Unfinished) != 1 || st.Unfinished[0].Seq != 11 || st.Records != n {
		t.Fatalf("status %+v", st)
	}
	_, vst, err := l.Verify(ctx)
	if err != nil || len(vst.Unfinished) != 1 || vst.Unfinished[0].Seq != 11 {
		t.Fatalf("verify %v %+v", err, vst.Unfinished)
	}
	stop := errors.New("stop")
	seen := 0
	if _, err := l.Walk(ctx, func(audit.Record) error { seen++; return stop }); !errors.Is(err, stop) || seen != 1 {
		t.Fatalf("an error from fn stops the walk: %v after %d", err, seen)
	}
}
