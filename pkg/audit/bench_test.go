package audit_test

import (
	"context"
	"testing"

	"github.com/cfbackup/cfbackup/pkg/audit"
	"github.com/cfbackup/cfbackup/pkg/store/local"
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
