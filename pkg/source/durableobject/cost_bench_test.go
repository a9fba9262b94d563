package durableobject_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cfbackup/cfbackup/internal/testutil/workerd"
	"github.com/cfbackup/cfbackup/pkg/source/durableobject"
)

// BenchmarkRequestCost measures workerd's CPU time per request (node+workerd, from /proc) for
// CFBACKUP_BENCH_DO_OBJECTS objects (default 1000): a request that reaches the Worker but no object
// (entry), info on objects not in memory (info-cold: the runtime was restarted), info again
// (info-warm), and the first export page (export). It tells what one object costs the local runtime
// apart from cfbackup: docs/DURABLE_OBJECTS.md.
func BenchmarkRequestCost(b *testing.B) {
	w := workerd.Start(b, workerd.Options{Secret: secret})
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("CFBACKUP_BENCH_DO_OBJECTS")); err == nil && v > 0 {
		n = v
	}
	ids := make([]string, n)
	each(n, func(i int) {
		mustGet(b, fmt.Sprintf("%s/sessions/name:cost-%d/__test/seed?i=%d", w.URL, i, i))
		ids[i] = string(mustGet(b, fmt.Sprintf("%s/sessions/name:cost-%d/__test/inspect", w.URL, i))[7:71])
	})
	b.ResetTimer()
	for r := 0; r < b.N; r++ {
		w.Restart(b, secret, false) // no object in memory
		c, err := durableobject.NewClient(w.URL, secret)
		if err != nil {
			b.Fatal(err)
		}
		c.NoBatch = true
		for _, kind := range []string{"entry", "info-cold", "info-warm", "export"} {
			r0, t0 := w.Stat(), time.Now()
			each(n, func(i int) {
				var err error
				switch kind {
				case "entry":
					resp, gerr := http.Get(w.URL + "/nothing")
					if err = gerr; err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				case "info-cold", "info-warm":
					_, err = c.Info(context.Background(), "SessionStore", ids[i])
				case "export":
					_, err = c.ExportPage(context.Background(), "SessionStore", ids[i], "")
				}
				if err != nil {
					b.Error(err)
				}
			})
			b.ReportMetric((w.Stat().CPU-r0.CPU).Seconds()*1000/float64(n), kind+"-runtime-ms/req")
			b.ReportMetric(float64(n)/time.Since(t0).Seconds(), kind+"-req/s")
		}
	}
}

// each runs f(0..n-1) on 8 goroutines.
func each(n int, f func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for k := 0; k < 8; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f(i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
}
