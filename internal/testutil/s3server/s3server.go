// Package s3server starts a real S3 server (versitygw, posix backend) on loopback for tests, so the
// S3 store is tested against real HTTP, SigV4, multipart, conditional writes and Object Lock rather
// than a mock. See /docs/PROVIDER_COMPATIBILITY.md for why versitygw.
package s3server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Version is the versitygw release the tests are written against; scripts/install-versitygw.sh installs it.
const Version = "v1.8.0"

// Server is a running versitygw; its fields are what an S3 client needs.
type Server struct {
	Endpoint  string // http://127.0.0.1:PORT
	AccessKey string
	SecretKey string
	Region    string
	// AdminEndpoint is versitygw's admin API (user accounts), set only by StartIAM.
	AdminEndpoint string

	client *s3.Client
	bin    string
}

// Start launches versitygw with its data under t.TempDir() and stops it when the test ends. It skips
// the test when the binary is missing, unless CI is set (then a missing server is a failure).
func Start(t testing.TB) *Server { t.Helper(); return startServer(t, false) }

// StartIAM is Start with versitygw's internal IAM: CreateUser adds accounts that, unlike the root
// account, are bound by bucket policies (see iam.go).
func StartIAM(t testing.TB) *Server { t.Helper(); return startServer(t, true) }

func startServer(t testing.TB, iam bool) *Server {
	t.Helper()
	bin := findBinary()
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("versitygw not installed (CI is set): run scripts/install-versitygw.sh or set CFBACKUP_VERSITYGW")
		}
		t.Skip("versitygw not installed: run scripts/install-versitygw.sh")
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // the free port can be taken between probe and bind
		s, err := start(t, bin, iam)
		if err == nil {
			return s
		}
		lastErr = err
	}
	t.Fatalf("start versitygw: %v", lastErr)
	return nil
}

func start(t testing.TB, bin string, iam bool) (*Server, error) {
	base := t.TempDir()
	data, versions := filepath.Join(base, "data"), filepath.Join(base, "versions")
	for _, d := range []string{data, versions} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{
		Endpoint:  fmt.Sprintf("http://127.0.0.1:%d", port),
		AccessKey: "test" + randHex(6),
		SecretKey: randHex(20),
		Region:    "us-east-1",
	}
	args := []string{"--port", fmt.Sprintf("127.0.0.1:%d", port), "--health", "/healthz", "--quiet"}
	if iam {
		adminPort, err := freePort()
		if err != nil {
			return nil, err
		}
		iamDir := filepath.Join(base, "iam")
		if err := os.MkdirAll(iamDir, 0o700); err != nil {
			return nil, err
		}
		s.AdminEndpoint = fmt.Sprintf("http://127.0.0.1:%d", adminPort)
		args = append(args, "--admin-port", fmt.Sprintf("127.0.0.1:%d", adminPort), "--iam-dir", iamDir)
	}
	cmd := exec.Command(bin, append(args, "posix", "--versioning-dir", versions, data)...)
	s.bin = bin
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.AccessKey, "ROOT_SECRET_KEY="+s.SecretKey)
	var logBuf syncBuffer
	cmd.Stdout, cmd.Stderr = &logBuf, &logBuf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(s.Endpoint + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-exited:
			exited <- err
			stop()
			return nil, fmt.Errorf("versitygw exited (%v): %s", err, logBuf.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("versitygw not ready after 15s: %s", logBuf.String())
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("versitygw log:\n%s", logBuf.String())
		}
	})
	s.client = s3.New(s3.Options{
		BaseEndpoint:               aws.String(s.Endpoint),
		Region:                     s.Region,
		Credentials:                credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
		UsePathStyle:               true,
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
	return s, nil
}

// CreateBucket makes a bucket, with Object Lock (and thus versioning) when objectLock is set.
func (s *Server) CreateBucket(t testing.TB, name string, objectLock bool) {
	t.Helper()
	in := &s3.CreateBucketInput{Bucket: aws.String(name)}
	if objectLock {
		in.ObjectLockEnabledForBucket = aws.Bool(true)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.client.CreateBucket(ctx, in); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
}

// Client returns an admin S3 client for assertions behind the store's back.
func (s *Server) Client() *s3.Client { return s.client }

// findBinary looks in $CFBACKUP_VERSITYGW, then .bin/versitygw in the module root, then PATH.
func findBinary() string {
	if p := os.Getenv("CFBACKUP_VERSITYGW"); p != "" {
		return p
	}
	if dir, err := os.Getwd(); err == nil {
		for {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				p := filepath.Join(dir, ".bin", "versitygw")
				if st, err := os.Stat(p); err == nil && !st.IsDir() {
					return p
				}
				break
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	return ""
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// syncBuffer collects the server's output for failure messages.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 {
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
