// Command r2seed fills (or mutates) an S3 bucket for scripts/bench-r2.sh: N objects totalling about
// SIZE bytes, ~63 % JSON/SQL text and ~37 % random bytes, with content types and some custom
// metadata, sizes skewed like a real bucket (many small objects, a few large ones).
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log"
	"math/rand"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func main() {
	endpoint := flag.String("endpoint", "", "S3 endpoint")
	access := flag.String("access-key", "", "access key id")
	secret := flag.String("secret-key", "", "secret access key")
	bucket := flag.String("bucket", "src", "bucket")
	n := flag.Int("objects", 2000, "objects")
	size := flag.Int64("size", 1<<30, "total bytes")
	create := flag.Bool("create", false, "create the bucket first")
	mutate := flag.Float64("mutate", 0, "instead of seeding: rewrite this percentage of the objects")
	seed := flag.Int64("seed", 1, "random seed")
	flag.Parse()
	ctx := context.Background()
	c := s3.New(s3.Options{BaseEndpoint: aws.String(*endpoint), Region: "us-east-1", UsePathStyle: true,
		Credentials:                credentials.NewStaticCredentialsProvider(*access, *secret, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired, ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired})
	if *create {
		if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: bucket}); err != nil {
			log.Fatal(err)
		}
	}
	// Sizes: a log-uniform spread scaled so they add up to size.
	rng := rand.New(rand.NewSource(*seed))
	w := make([]float64, *n)
	var tw float64
	for i := range w {
		w[i] = float64(int(1)<<rng.Intn(12)) * (0.5 + rng.Float64())
		tw += w[i]
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := 0; i < *n; i++ {
		if *mutate > 0 && rng.Float64()*100 >= *mutate {
			continue
		}
		sz := int(float64(*size) * w[i] / tw)
		text := i%100 < 63
		wg.Add(1)
		sem <- struct{}{}
		go func(i, sz int, text bool, s int64) {
			defer wg.Done()
			defer func() { <-sem }()
			r := rand.New(rand.NewSource(s))
			var b []byte
			ct := "application/octet-stream"
			if text {
				var buf bytes.Buffer
				for buf.Len() < sz {
					if i%2 == 0 {
						fmt.Fprintf(&buf, `{"id":%d,"user":"user%d@example.com","score":%.3f,"active":%t,"tags":["t%d","t%d"]}`+"\n", r.Intn(1e7), r.Intn(1e5), r.Float64()*1000, r.Intn(2) == 0, r.Intn(50), r.Intn(50))
					} else {
						fmt.Fprintf(&buf, "INSERT INTO \"events\" VALUES(%d,'session-%x','2026-%02d-%02dT%02d:%02d:00Z',%d);\n", r.Intn(1e8), r.Int63(), r.Intn(12)+1, r.Intn(28)+1, r.Intn(24), r.Intn(60), r.Intn(1e4))
					}
				}
				b = buf.Bytes()[:sz]
				ct = "application/json"
			} else {
				b = make([]byte, sz)
				r.Read(b)
			}
			in := &s3.PutObjectInput{Bucket: bucket, Key: aws.String(fmt.Sprintf("data/%02d/object-%05d", i%20, i)), Body: bytes.NewReader(b), ContentType: aws.String(ct)}
			if i%5 == 0 {
				in.Metadata = map[string]string{"source": "bench", "n": fmt.Sprint(i)}
			}
			if _, err := c.PutObject(context.Background(), in, s3.WithAPIOptions()); err != nil {
				log.Fatal(err)
			}
		}(i, sz, text, *seed*1e6+int64(i)+int64(*mutate*1e9))
	}
	wg.Wait()
}
