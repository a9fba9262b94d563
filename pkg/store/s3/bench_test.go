package s3_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"testing"

	"github.com/cfbackup/cfbackup/internal/testutil/s3server"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/s3"
)

// BenchmarkPut measures streaming Put throughput (MB/s) against versitygw on loopback:
//
//	go test -run '^$' -bench Put -benchtime 10x ./pkg/store/s3
func BenchmarkPut(b *testing.B) {
	srv := s3server.Start(b)
	srv.CreateBucket(b, "bench", false)
	data := make([]byte, 64<<20)
	rand.Read(data)
	for _, c := range []struct {
		size     int
		partSize int64
		conc     int
	}{
		{1 << 20, s3.DefaultPartSize, 4},
		{64 << 20, 8 << 20, 4},
		{64 << 20, 16 << 20, 2},
	} {
		b.Run(fmt.Sprintf("size=%dMiB/part=%dMiB/conc=%d", c.size>>20, c.partSize>>20, c.conc), func(b *testing.B) {
			s, err := s3.New(context.Background(), s3.Config{
				Bucket: "bench", Endpoint: srv.Endpoint, Region: srv.Region,
				AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey,
				PartSize: c.partSize, Concurrency: c.conc,
			})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(c.size))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				r := struct{ io.Reader }{bytes.NewReader(data[:c.size])}
				if err := s.Put(context.Background(), fmt.Sprintf("obj/%d", i%4), r, store.PutOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
