package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cfbackup/cfbackup/internal/cli"
	"github.com/cfbackup/cfbackup/internal/testutil/s3server"
)

// TestShardJSONMatchesSchemas: the documents of a real sharded run — a shard that leaves the merge
// pending, the shard that completes and merges the run, a merge that finds it merged — each validate
// against their schemas in docs/JSON.md.
func TestShardJSONMatchesSchemas(t *testing.T) {
	h := newHookEnv(t)
	srv := s3server.Start(t)
	srv.CreateBucket(t, "src", false)
	for i := range 12 {
		if _, err := srv.Client().PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("src"), Key: aws.String(fmt.Sprintf("k/%03d", i)),
			Body: bytes.NewReader([]byte(strings.Repeat("x", 100+i)))}); err != nil {
			t.Fatal(err)
		}
	}
	h.env["CFBACKUP_R2_ENDPOINT"] = srv.Endpoint
	h.env["CFBACKUP_R2_ACCESS_KEY_ID"] = srv.AccessKey
	h.env["CFBACKUP_R2_SECRET_ACCESS_KEY"] = srv.SecretKey
	schemas := map[string]map[string]any{}
	for _, m := range cli.JSONMessages() {
		schemas[m.Name] = cli.JSONSchemaOf(m)
	}
	key := filepath.Join(h.dir, "key.txt")
	steps := []struct {
		schema, want string
		args         []string
	}{
		{"ShardBackupMessage", `"merge_pending"`, []string{"backup", "--component", "r2", "--r2-bucket", "src", "--shard", "1/2", "--run", "j1"}},
		{"ShardBackupMessage", `"merge": {`, []string{"backup", "--component", "r2", "--r2-bucket", "src", "--shard", "2/2", "--run", "j1", "--identity-file", key}},
		{"ShardMergeMessage", `"already_merged": true`, []string{"shard", "merge", "--run", "j1", "--shards", "2", "--identity-file", key}},
		{"ShardBackupMessage", `"already_merged"`, []string{"backup", "--component", "r2", "--r2-bucket", "src", "--shard", "1/2", "--run", "j1"}},
	}
	for _, s := range steps {
		out, errOut, code := h.run(t, append(s.args, "--json")...)
		name := strings.Join(s.args, " ")
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s", name, code, errOut)
		}
		if probs := cli.ValidateJSON(schemas[s.schema], []byte(out)); len(probs) > 0 {
			t.Errorf("%s: does not match %s:\n  %s\n%s", name, s.schema, strings.Join(probs, "\n  "), out)
		}
		if !strings.Contains(out, s.want) {
			t.Errorf("%s: no %s in\n%s", name, s.want, out)
		}
	}
}
