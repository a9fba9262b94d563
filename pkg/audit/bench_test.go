package audit_test

import (
	"context"
	"testing"

	"github.com/cfbackup/cfbackup/pkg/audit"
	"github.com/cfbackup/cfbackup/pkg/store/local"
	"github.com/cfbackup/cfbackup/pkg/store/mem"
)

// BenchmarkAppendVerify measures one append and one full verification of a 1,000-record trail on the
// local store (each append lists audit/ once; verify reads every record).
func BenchmarkAppendVerify(b *testing.B) {
	st, err := local.New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	l := &audit.Log{Store: st}
	ctx := context.Background()
	for range 1000 {
		if err := l.Append(ctx, &audit.Record{Command: "backup", Result: audit.ResultOK, Args: []string{"backup"}}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("append", func(b *testing.B) {
		for b.Loop() {
			if err := l.Append(ctx, &audit.Record{Command: "backup", Result: audit.ResultOK}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("verify", func(b *testing.B) {
		for b.Loop() {
			if _, s, err := l.Verify(ctx); err != nil || !s.OK {
				b.Fatal(err, s.Problems)
			}
		}
	})
}

// BenchmarkWalk reads a 1,000-record trail the way the report does: each record handed on, none kept.
func BenchmarkWalk(b *testing.B) {
	st := mem.New()
	l := &audit.Log{Store: st}
	ctx := context.Background()
	for range 1000 {
		if err := l.Append(ctx, &audit.Record{Command: "backup", Result: audit.ResultOK, Args: []string{"backup"}}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		if s, err := l.Walk(ctx, func(audit.Record) error { n++; return nil }); err != nil || !s.OK || n != 1000 {
			b.Fatal(err, s.Problems, n)
		}
	}
}
