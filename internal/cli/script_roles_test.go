package cli_test

import (
	"os"
	"sync"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/cfbackup/cfbackup/internal/testutil/s3server"
)

// s3iamServers holds each story's s3iam server (testscript takes values only at setup).
var s3iamServers sync.Map // *testscript.TestScript → *s3server.Server

func s3iam(ts *testscript.TestScript) *s3server.Server {
	v, ok := s3iamServers.Load(ts)
	if !ok {
		ts.Fatalf("run s3iam first")
	}
	return v.(*s3server.Server)
}

// rolesCmds are the story commands of roles-*.txtar: a versitygw with IAM accounts bound by bucket
// policies, to prove examples/roles/ with cfbackup itself.
var rolesCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	// s3iam BUCKET: a versitygw S3 server on loopback with internal IAM and BUCKET; the repository
	// settings point at it with the root account's keys (ROOT_ACCESS_KEY_ID / ROOT_SECRET_ACCESS_KEY
	// keep them); ROLES_DIR is examples/roles of this checkout.
	"s3iam": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 {
			ts.Fatalf("usage: s3iam BUCKET")
		}
		t := ts.Value(scriptT{}).(testing.TB)
		srv := s3server.StartIAM(t)
		srv.CreateBucket(t, args[0], false)
		s3iamServers.Store(ts, srv)
		ts.Defer(func() { s3iamServers.Delete(ts) })
		ts.Setenv("CFBACKUP_S3_ENDPOINT", srv.Endpoint)
		ts.Setenv("CFBACKUP_S3_PATH_STYLE", "true")
		ts.Setenv("CFBACKUP_S3_REGION", "us-east-1")
		ts.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
		ts.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
		ts.Setenv("ROOT_ACCESS_KEY_ID", srv.AccessKey)
		ts.Setenv("ROOT_SECRET_ACCESS_KEY", srv.SecretKey)
		wd, err := os.Getwd()
		ts.Check(err)
		ts.Setenv("ROLES_DIR", wd+"/../../examples/roles")
	},
	// s3user ACCESS SECRET: an IAM account of the s3iam server, bound by the bucket's policy.
	"s3user": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 2 {
			ts.Fatalf("usage: s3user ACCESS SECRET")
		}
		s3iam(ts).CreateUser(ts.Value(scriptT{}).(testing.TB), args[0], args[1])
	},
	// s3policy BUCKET FILE: set the bucket's policy (as root) to the JSON in FILE.
	"s3policy": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 2 {
			ts.Fatalf("usage: s3policy BUCKET FILE")
		}
		s3iam(ts).PutBucketPolicy(ts.Value(scriptT{}).(testing.TB), args[0], ts.ReadFile(args[1]))
	},
}
