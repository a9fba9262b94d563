package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/cfbackup/cfbackup/internal/testutil/s3server"
)

// scriptT is the key under which Setup keeps the script's testing.TB for commands that start servers.
type scriptT struct{}

type r2Server struct{ *s3server.Server }

// r2Cmds are the R2 stories' commands:
//
//	r2server BUCKET...            start a real S3 server (versitygw) with these buckets; point CFBACKUP_R2_* at it
//	r2seed BUCKET N               put N objects k/0000… (JSON text, some with metadata)
//	r2put BUCKET KEY FILE         put FILE's bytes under KEY
//	r2del BUCKET KEY              delete an object
//	r2get BUCKET KEY FILE         write the object's bytes to FILE (! r2get: the object must not exist)
var r2Cmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	"r2server": func(ts *testscript.TestScript, neg bool, args []string) {
		t := ts.Value(scriptT{}).(testing.TB)
		srv := s3server.Start(t)
		for _, b := range args {
			srv.CreateBucket(t, b, false)
		}
		ts.Setenv("CFBACKUP_R2_ENDPOINT", srv.Endpoint)
		ts.Setenv("CFBACKUP_R2_ACCESS_KEY_ID", srv.AccessKey)
		ts.Setenv("CFBACKUP_R2_SECRET_ACCESS_KEY", srv.SecretKey)
		r2servers.Store(ts, r2Server{srv})
	},
	"r2seed": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 2 {
			ts.Fatalf("usage: r2seed BUCKET N")
		}
		n, err := strconv.Atoi(args[1])
		ts.Check(err)
		c := r2client(ts)
		for i := 0; i < n; i++ {
			in := &s3.PutObjectInput{Bucket: aws.String(args[0]), Key: aws.String(fmt.Sprintf("k/%04d", i)),
				Body: bytes.NewReader([]byte(fmt.Sprintf(`{"id":%d,"text":"object number %d"}`+"\n", i, i))), ContentType: aws.String("application/json")}
			if i%2 == 0 {
				in.Metadata = map[string]string{"owner": "team-" + strconv.Itoa(i%3)}
				in.CacheControl = aws.String("max-age=60")
			}
			_, err := c.PutObject(context.Background(), in)
			ts.Check(err)
		}
	},
	"r2put": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 3 {
			ts.Fatalf("usage: r2put BUCKET KEY FILE")
		}
		b, err := os.ReadFile(ts.MkAbs(args[2]))
		ts.Check(err)
		_, err = r2client(ts).PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(args[0]), Key: aws.String(args[1]), Body: bytes.NewReader(b)})
		ts.Check(err)
	},
	"r2del": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 2 {
			ts.Fatalf("usage: r2del BUCKET KEY")
		}
		_, err := r2client(ts).DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String(args[0]), Key: aws.String(args[1])})
		ts.Check(err)
	},
	"r2get": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 3 {
			ts.Fatalf("usage: r2get BUCKET KEY FILE")
		}
		out, err := r2client(ts).GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(args[0]), Key: aws.String(args[1])})
		if neg {
			if err == nil {
				out.Body.Close()
				ts.Fatalf("object %s/%s exists", args[0], args[1])
			}
			return
		}
		ts.Check(err)
		defer out.Body.Close()
		b, err := io.ReadAll(out.Body)
		ts.Check(err)
		ts.Check(os.WriteFile(ts.MkAbs(args[2]), b, 0o644))
	},
}

func r2client(ts *testscript.TestScript) *s3.Client {
	v, ok := r2servers.Load(ts)
	if !ok {
		ts.Fatalf("run r2server first")
	}
	return v.(r2Server).Client()
}

var r2servers sync.Map // *testscript.TestScript → r2Server

// withCmds merges extra script commands into the base table.
func withCmds(extra, base map[string]func(ts *testscript.TestScript, neg bool, args []string)) map[string]func(ts *testscript.TestScript, neg bool, args []string) {
	for k, v := range extra {
		base[k] = v
	}
	return base
}
