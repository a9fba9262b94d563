package archive

import (
	"bytes"
	"context"
	"io"
	"testing"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/cdc"
	"github.com/cfbackup/cfbackup/pkg/store/mem"
)

// BenchmarkReadItemChunked compares reading one 16 MiB item stored in 4 MiB chunks with the same
// item stored as content-defined chunks (cdc.Default), through OpenItem's streaming Read.
func BenchmarkReadItemChunked(b *testing.B) {
	id, recs := newKey(b)
	data := sqlText(16<<20, 9)
	for _, mode := range []string{"fixed-4MiB", "cdc-16KiB"} {
		st := mem.New()
		w, err := NewWriter(context.Background(), WriterOptions{Store: st, Recipients: recs})
		if err != nil {
			b.Fatal(err)
		}
		var ref ItemRef
		if mode == "fixed-4MiB" {
			ref, err = w.WriteItem("t/a.sql", bytes.NewReader(data))
		} else {
			ref, _, err = w.WriteChunked("t/a.sql", bytes.NewReader(data), ChunkedOptions{Params: cdc.Default, Key: testChunkKey})
		}
		if err != nil {
			b.Fatal(err)
		}
		segs, err := w.Close()
		if err != nil {
			b.Fatal(err)
		}
		sm := map[string]SegmentInfo{}
		for _, s := range segs {
			sm[s.ID] = s
		}
		b.Run(mode, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				rc, err := OpenItem(context.Background(), st, sm, []age.Identity{id}, ref)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, rc); err != nil {
					b.Fatal(err)
				}
				rc.Close()
			}
		})
	}
}
