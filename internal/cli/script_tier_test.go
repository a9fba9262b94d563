package cli_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/rogpeppe/go-internal/testscript"
)

var coldProxies sync.Map // *testscript.TestScript → *atomic.Bool

// tierCmds are the storage-class story's commands (testdata/script/storage-class.txtar):
//
//	classproxy LOGFILE      a reverse proxy in front of $S3_ENDPOINT (s3repo) that appends one line per
//	                        object PUT or multipart create: "KEY CLASS" (CLASS is the request's
//	                        x-amz-storage-class, or "-"); CFBACKUP_S3_ENDPOINT points at it
//	coldsegments on|off     from now on the proxy answers GETs of segments/ as S3 does for an object in
//	                        GLACIER that was not restored: 403 InvalidObjectState (no server the tests
//	                        run has archive classes)
//	s3meta BUCKET PREFIX    one line per object under PREFIX: "KEY class=SERVER_CLASS meta=RECORDED",
//	                        from ListObjectsV2 and HeadObject as the S3 server answers them
var tierCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	"classproxy": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 {
			ts.Fatalf("usage: classproxy LOGFILE")
		}
		target, err := url.Parse(ts.Getenv("S3_ENDPOINT"))
		ts.Check(err)
		logf, err := os.OpenFile(ts.MkAbs(args[0]), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		ts.Check(err)
		var mu sync.Mutex
		rp := httputil.NewSingleHostReverseProxy(target)
		cold := &atomic.Bool{}
		coldProxies.Store(ts, cold)
		inner := rp.Director
		rp.Director = func(r *http.Request) {
			q := r.URL.Query()
			create := (r.Method == http.MethodPut && !q.Has("partNumber") && !q.Has("legal-hold") && !q.Has("retention")) ||
				(r.Method == http.MethodPost && q.Has("uploads"))
			if create {
				class := r.Header.Get("X-Amz-Storage-Class")
				if class == "" {
					class = "-"
				}
				mu.Lock()
				fmt.Fprintf(logf, "%s %s\n", strings.TrimPrefix(r.URL.Path, "/"), class)
				mu.Unlock()
			}
			inner(r)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		ts.Check(err)
		hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if cold.Load() && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/segments/") {
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(http.StatusForbidden)
				_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?>`+
					`<Error><Code>InvalidObjectState</Code><Message>The operation is not valid for the object's storage class</Message>`+
					`<StorageClass>GLACIER</StorageClass><RequestId>R</RequestId><HostId>H</HostId></Error>`)
				return
			}
			rp.ServeHTTP(w, r)
		})}
		go func() { _ = hs.Serve(ln) }()
		ts.Defer(func() { _ = hs.Close(); _ = logf.Close(); coldProxies.Delete(ts) })
		ts.Setenv("CFBACKUP_S3_ENDPOINT", "http://"+ln.Addr().String())
	},
	"coldsegments": func(ts *testscript.TestScript, neg bool, args []string) {
		v, ok := coldProxies.Load(ts)
		if !ok || len(args) != 1 {
			ts.Fatalf("usage: coldsegments on|off, after classproxy")
		}
		v.(*atomic.Bool).Store(args[0] == "on")
	},
	"s3meta": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 2 {
			ts.Fatalf("usage: s3meta BUCKET PREFIX")
		}
		ctx := context.Background()
		cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion("us-east-1"),
			config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(ts.Getenv("AWS_ACCESS_KEY_ID"), ts.Getenv("AWS_SECRET_ACCESS_KEY"), "")))
		ts.Check(err)
		c := s3.NewFromConfig(cfg, func(o *s3.Options) {
			o.BaseEndpoint = aws.String(ts.Getenv("S3_ENDPOINT"))
			o.UsePathStyle = true
		})
		out, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(args[0]), Prefix: aws.String(args[1])})
		ts.Check(err)
		for _, o := range out.Contents {
			h, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(args[0]), Key: o.Key})
			ts.Check(err)
			meta := h.Metadata["cfbackup-storage-class"]
			if meta == "" {
				meta = "-"
			}
			fmt.Fprintf(ts.Stdout(), "%s class=%s meta=%s\n", aws.ToString(o.Key), o.StorageClass, meta)
		}
	},
}
