package kv_test

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/cfbackup/cfbackup/internal/cftest"
	"github.com/cfbackup/cfbackup/pkg/engine"
)

// BenchmarkBackupRestore backs up a namespace of KV_BENCH_KEYS (default 10,000) generated keys
// (cftest.SeedKV) on the emulated account and restores it into an empty namespace, reporting keys
// per second of each. scripts/bench-kv.sh measures the CLI in its own process (with peak RSS).
func BenchmarkBackupRestore(b *testing.B) {
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("KV_BENCH_KEYS")); err == nil && v > 0 {
		n = v
	}
	f := newFx(b, cftest.Options{})
	if _, err := f.srv.SeedKV("bench", n, 1); err != nil {
		b.Fatal(err)
	}
	var backup, restore time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		m := f.backup(b, "--kv-namespace", "bench")
		t1 := time.Now()
		dst := "restored-" + strconv.Itoa(i)
		if _, err := f.srv.AddKVNamespace(dst); err != nil {
			b.Fatal(err)
		}
		if _, err := f.restore(m.ID, engine.RestoreOptions{}, "--kv-namespace", "bench", "--to-namespace", dst); err != nil {
			b.Fatal(err)
		}
		backup += t1.Sub(t0)
		restore += time.Since(t1)
	}
	b.ReportMetric(float64(n*b.N)/backup.Seconds(), "backup-keys/s")
	b.ReportMetric(float64(n*b.N)/restore.Seconds(), "restore-keys/s")
}
