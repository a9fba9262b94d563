package cli_test

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/cfbackup/cfbackup/internal/cftest"
	"github.com/cfbackup/cfbackup/internal/testutil/s3server"
)

// doctorCmds are the story commands of doctor-*.txtar.
var doctorCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	// emu-token TOKEN [PERMISSION,...]: a token of the emulated account limited to the permission
	// groups named ("D1 Read,Workers KV Storage Read").
	"emu-token": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) < 1 || len(args) > 2 {
			ts.Fatalf("usage: emu-token TOKEN [PERMISSION,...]")
		}
		var perms []cftest.Permission
		if len(args) == 2 {
			for _, p := range strings.Split(args[1], ",") {
				perms = append(perms, cftest.Permission(strings.TrimSpace(p)))
			}
		}
		emu(ts).AddToken(args[0], perms...)
	},
	// s3repo BUCKET [LOCKED_BUCKET]: a versitygw S3 server on loopback with BUCKET (and
	// LOCKED_BUCKET, with Object Lock), and the repository settings (CFBACKUP_S3_ENDPOINT, AWS_*)
	// pointing at it; S3_ENDPOINT keeps its address.
	"s3repo": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) < 1 || len(args) > 2 {
			ts.Fatalf("usage: s3repo BUCKET [LOCKED_BUCKET]")
		}
		t := ts.Value(scriptT{}).(testing.TB)
		srv := s3server.Start(t)
		srv.CreateBucket(t, args[0], false)
		if len(args) == 2 {
			srv.CreateBucket(t, args[1], true)
		}
		ts.Setenv("CFBACKUP_S3_ENDPOINT", srv.Endpoint)
		ts.Setenv("S3_ENDPOINT", srv.Endpoint)
		ts.Setenv("CFBACKUP_S3_PATH_STYLE", "true")
		ts.Setenv("CFBACKUP_S3_REGION", "us-east-1")
		ts.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
		ts.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	},
	// skewproxy OFFSET: a reverse proxy on loopback in front of $S3_ENDPOINT whose answers carry a
	// Date header OFFSET (a Go duration) off the real time, as a server with a wrong clock would send;
	// CFBACKUP_S3_ENDPOINT points at it. Requests pass unchanged, so signatures still verify.
	"skewproxy": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 {
			ts.Fatalf("usage: skewproxy OFFSET")
		}
		off, err := time.ParseDuration(args[0])
		ts.Check(err)
		target, err := url.Parse(ts.Getenv("S3_ENDPOINT"))
		ts.Check(err)
		rp := httputil.NewSingleHostReverseProxy(target)
		rp.ModifyResponse = func(r *http.Response) error {
			r.Header.Set("Date", time.Now().Add(off).UTC().Format(http.TimeFormat))
			return nil
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		ts.Check(err)
		hs := &http.Server{Handler: rp}
		go func() { _ = hs.Serve(ln) }()
		ts.Defer(func() { _ = hs.Close() })
		ts.Setenv("CFBACKUP_S3_ENDPOINT", "http://"+ln.Addr().String())
	},
}
