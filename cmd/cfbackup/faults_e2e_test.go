package main_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cfbackup/cfbackup/internal/testutil/faultproxy"
	"github.com/cfbackup/cfbackup/internal/testutil/s3server"
)

// envInt reads a test knob (CFBACKUP_FAULT_*) with a default small enough for the default test run.
func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

func envFloat(t *testing.T, name string, def float64) float64 {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 || f >= 1 {
		t.Fatalf("%s=%q: want a rate in [0, 1)", name, v)
	}
	return f
}

// s3Run is the outcome of one pass of the CLI flows over an S3 repository.
type s3Run struct {
	restored string         // SHA-256 of the restored database file
	objects  map[string]int // objects per top-level prefix at the end
	outputs  []string
}

// runS3Flows runs the operator's flows — init, two backups, list, verify --read-data, restore to a
// file, prune (grace 0), audit verify — against the repository s3://repo/PREFIX at endpoint, every
// command required to exit 0.
func runS3Flows(t *testing.T, e *env, srv *s3server.Server, endpoint, prefix, key, rcp string) s3Run {
	t.Helper()
	extra := []string{"CFBACKUP_REPOSITORY=s3://repo/" + prefix, "CFBACKUP_S3_ENDPOINT=" + endpoint,
		"AWS_ACCESS_KEY_ID=" + srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey, "AWS_REGION=" + srv.Region,
		"CFBACKUP_WRITER_KEY_FILE=" + filepath.Join(e.dir, prefix+".writer.key")}
	var res s3Run
	must := func(args ...string) string {
		t.Helper()
		out, errs, code := e.runEnv(extra, args...)
		if code != 0 {
			t.Fatalf("cfbackup %v over %s: exit %d\nstdout: %s\nstderr: %s", args, prefix, code, out, errs)
		}
		res.outputs = append(res.outputs, out)
		return out
	}
	must("init", "--recipient", rcp)
	must("backup", "--no-progress", "--label", "run=one")
	must("backup", "--no-progress", "--label", "run=two")
	count := func() int {
		t.Helper()
		var l []listEntry
		if err := json.Unmarshal([]byte(must("list", "--json")), &l); err != nil {
			t.Fatalf("list --json over %s: %v", prefix, err)
		}
		return len(l)
	}
	if n := count(); n != 2 {
		t.Fatalf("list over %s: %d snapshots, want 2", prefix, n)
	}
	if out := must("verify", "latest", "--read-data", "--no-progress", "--identity-file", key); !strings.Contains(out, "OK (read-data)") {
		t.Fatalf("verify over %s: %s", prefix, out)
	}
	dst := filepath.Join(e.dir, prefix+".sqlite")
	must("restore", "latest", "--to-file", dst, "--identity-file", key, "--no-progress")
	b, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	res.restored = hex.EncodeToString(sum[:])
	must("prune", "--keep-last", "1", "--grace", "0")
	if n := count(); n != 1 {
		t.Fatalf("list after prune over %s: %d snapshots, want 1", prefix, n)
	}
	must("audit", "verify")
	res.objects = map[string]int{}
	p := s3.NewListObjectsV2Paginator(srv.Client(), &s3.ListObjectsV2Input{Bucket: aws.String("repo"), Prefix: aws.String(prefix + "/")})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			k := strings.TrimPrefix(aws.ToString(o.Key), prefix+"/")
			top, _, _ := strings.Cut(k, "/")
			res.objects[top]++
		}
	}
	return res
}

func objectSummary(m map[string]int) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var out []string
	for _, k := range ks {
		out = append(out, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(out, " ")
}

// TestCLIOverFaultyNetwork: the CLI flows run through a proxy that fails a share of S3 requests
// (500, 503, connections dropped, answers cut mid-body, answers lost after the server acted) and
// answers a share of Cloudflare API calls with 429. Every command must succeed, and the outcome — the
// restored database, the objects left in the repository — must equal a fault-free run's (invariant:
// faults are not damage). CFBACKUP_FAULT_SEEDS (default 1) runs more seeds; CFBACKUP_FAULT_RATE (default
// 0.10) and CFBACKUP_FAULT_429_RATE (default 0.12) set the rates.
func TestCLIOverFaultyNetwork(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and runs an S3 server")
	}
	srv := s3server.Start(t)
	srv.CreateBucket(t, "repo", false)
	em := startEmu(t, 3000)
	e := newEnv(t, em, "CFBACKUP_SEGMENT_SIZE=1048576")
	key := filepath.Join(e.dir, "key.txt")
	rcp := strings.TrimSpace(e.must("key", "generate", "-o", key))

	clean := runS3Flows(t, e, srv, srv.Endpoint, "clean", key, rcp)
	t.Logf("fault-free run: restored %s…, objects %s", clean.restored[:12], objectSummary(clean.objects))

	rate, rate429 := envFloat(t, "CFBACKUP_FAULT_RATE", 0.10), envFloat(t, "CFBACKUP_FAULT_429_RATE", 0.12)
	seeds := envInt(t, "CFBACKUP_FAULT_SEEDS", 1)
	var apiURL string
	for _, v := range em.env {
		if u, ok := strings.CutPrefix(v, "CFBACKUP_CLOUDFLARE_API_URL="); ok {
			apiURL = u
		}
	}
	if apiURL == "" {
		t.Fatalf("no CFBACKUP_CLOUDFLARE_API_URL in the emulator's environment %v", em.env)
	}
	for seed := 1; seed <= seeds; seed++ {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			s3p := faultproxy.Start(t, faultproxy.Options{Target: srv.Endpoint, Seed: uint64(seed), Rate: rate})
			cfp := faultproxy.Start(t, faultproxy.Options{Target: apiURL, Seed: uint64(seed) + 1000, Rate: rate429,
				Kinds: []faultproxy.Kind{faultproxy.Status429}})
			fe := *e
			fe.t = t
			fe.vars = append(append([]string{}, e.vars...), "CFBACKUP_CLOUDFLARE_API_URL="+cfp.URL+apiPath(apiURL))
			got := runS3Flows(t, &fe, srv, s3p.URL, fmt.Sprintf("faulty%d", seed), key, rcp)
			t.Logf("seed %d: S3 %s; Cloudflare API %s", seed, s3p.Summary(), cfp.Summary())
			if got.restored != clean.restored {
				t.Errorf("restored database differs from the fault-free run's")
			}
			if objectSummary(got.objects) != objectSummary(clean.objects) {
				t.Errorf("objects left: %s, fault-free run: %s", objectSummary(got.objects), objectSummary(clean.objects))
			}
			c, _ := s3p.Counts()
			if c[faultproxy.Pass] == 0 || len(s3p.Log()) == 0 {
				t.Errorf("no faults injected: %s", s3p.Summary())
			}
		})
	}
}

// apiPath is the path part of the emulator's API URL (the proxy serves the same paths).
func apiPath(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		if j := strings.Index(u[i+3:], "/"); j >= 0 {
			return u[i+3+j:]
		}
	}
	return ""
}
