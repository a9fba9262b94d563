package s3server

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// CreateUser adds an account with role "user" to a server started with StartIAM: unlike the root
// account, its requests are checked against the bucket's policy, where it is named by its access
// key ("Principal": {"AWS": ["ACCESS"]}).
func (s *Server) CreateUser(t testing.TB, access, secret string) {
	t.Helper()
	if s.AdminEndpoint == "" {
		t.Fatal("CreateUser needs a server started with StartIAM")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, s.bin, "admin", "--access", s.AccessKey, "--secret", s.SecretKey,
		"--endpoint-url", s.AdminEndpoint, "create-user", "--access", access, "--secret", secret, "--role", "user").CombinedOutput()
	if err != nil {
		t.Fatalf("create user %s: %v: %s", access, err, out)
	}
}

// PutBucketPolicy sets a bucket's policy as the root account (replacing the one it had).
func (s *Server) PutBucketPolicy(t testing.TB, bucket, policy string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.client.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(bucket), Policy: aws.String(policy)}); err != nil {
		t.Fatalf("put bucket policy of %s: %v", bucket, err)
	}
}
