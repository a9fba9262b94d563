package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"time"
)

// startProfiles writes Go CPU and allocation profiles and an execution trace when
// CFBACKUP_CPUPROFILE / CFBACKUP_MEMPROFILE / CFBACKUP_TRACE name files: how the benchmarks in scripts/ are taken apart (go tool pprof cfbackup FILE).
func startProfiles() (stop func()) {
	var stops []func()
	if p := os.Getenv("CFBACKUP_CPUPROFILE"); p != "" {
		f, err := os.Create(p)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "cfbackup: CFBACKUP_CPUPROFILE:", err)
		} else {
			stops = append(stops, func() { pprof.StopCPUProfile(); f.Close() })
		}
	}
	if p := os.Getenv("CFBACKUP_TRACE"); p != "" {
		f, err := os.Create(p)
		if err == nil {
			err = trace.Start(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "cfbackup: CFBACKUP_TRACE:", err)
		} else {
			stops = append(stops, func() { trace.Stop(); f.Close() })
		}
	}
	if p := os.Getenv("CFBACKUP_MEMPROFILE"); p != "" {
		runtime.MemProfileRate = 64 << 10
		// CFBACKUP_HEAPAT=2s also writes what is live at that moment to FILE.live.
		if d, err := time.ParseDuration(os.Getenv("CFBACKUP_HEAPAT")); err == nil {
			time.AfterFunc(d, func() {
				if f, err := os.Create(p + ".live"); err == nil {
					_ = pprof.Lookup("heap").WriteTo(f, 0)
					f.Close()
				}
			})
		}
		stops = append(stops, func() {
			f, err := os.Create(p)
			if err == nil {
				err = pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "cfbackup: CFBACKUP_MEMPROFILE:", err)
			}
		})
	}
	return func() {
		for _, s := range stops {
			s()
		}
	}
}
