package main_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cfbackup/cfbackup/internal/testutil/s3server"
)

// TestInterruptedR2Backups: an R2 backup stopped by SIGINT or SIGKILL while it streams leaves no
// snapshot; the earlier snapshot still verifies and restores, and the next backup completes,
// resuming from the segments and journals the interrupted runs left.
func TestInterruptedR2Backups(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and seeds a bucket")
	}
	srv := s3server.Start(t)
	for _, b := range []string{"small", "big", "out"} {
		srv.CreateBucket(t, b, false)
	}
	put := func(bucket string, n, size int) {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for i := 0; i < n; i++ {
			wg.Add(1)
			sem <- struct{}{}
			go func(i int) {
				defer wg.Done()
				defer func() { <-sem }()
				b := make([]byte, size)
				rand.New(rand.NewSource(int64(i))).Read(b)
				if _, err := srv.Client().PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket),
					Key: aws.String(fmt.Sprintf("obj/%05d", i)), Body: bytes.NewReader(b)}); err != nil {
					t.Error(err)
				}
			}(i)
		}
		wg.Wait()
	}
	put("small", 50, 10<<10)
	put("big", 600, 128<<10)
	e := newEnv(t, &emu{}, "CFBACKUP_SEGMENT_SIZE=1048576", "CFBACKUP_R2_ENDPOINT="+srv.Endpoint,
		"CFBACKUP_R2_ACCESS_KEY_ID="+srv.AccessKey, "CFBACKUP_R2_SECRET_ACCESS_KEY="+srv.SecretKey)
	key := e.setup()
	e.must("backup", "--component", "r2", "--r2-bucket", "small", "--no-progress")
	good := e.list()[0].ID

	interrupt := func(t *testing.T, sig os.Signal) (*os.ProcessState, string) {
		before := journalCount(t, e.repo())
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var stderr syncBuffer
		cmd := e.command(ctx, []string{"backup", "--component", "r2", "--r2-bucket", "big", "--no-progress"})
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		for journalCount(t, e.repo()) < before+3 {
			select {
			case <-exited:
				t.Fatalf("backup finished before it could be interrupted:\n%s", stderr.String())
			default:
			}
		}
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		<-exited
		return cmd.ProcessState, stderr.String()
	}
	check := func(t *testing.T) {
		if l := e.list(); len(l) != 1 || l[0].ID != good {
			t.Fatalf("snapshots %+v, want only %s", l, good)
		}
		out, errs, code := e.runEnv([]string{"CFBACKUP_IDENTITY_FILE=" + key}, "verify", good, "--read-data", "--no-progress")
		if code != 0 || !strings.Contains(out, "OK (read-data)") {
			t.Fatalf("verify: exit %d\n%s%s", code, out, errs)
		}
	}
	t.Run("SIGINT", func(t *testing.T) {
		st, stderr := interrupt(t, os.Interrupt)
		if st.ExitCode() != 130 {
			t.Fatalf("exit %d, want 130:\n%s", st.ExitCode(), stderr)
		}
		check(t)
	})
	t.Run("SIGKILL", func(t *testing.T) {
		st, stderr := interrupt(t, syscall.SIGKILL)
		if ws, ok := st.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("process state %v:\n%s", st, stderr)
		}
		check(t)
	})
	// The next backup completes, downloading only what the interrupted runs did not journal, and the
	// first snapshot still restores.
	out, errs, code := e.run("backup", "--component", "r2", "--r2-bucket", "small", "--r2-bucket", "big", "--no-progress")
	if code != 0 {
		t.Fatalf("backup after the interruptions: exit %d\n%s%s", code, out, errs)
	}
	if l := e.list(); len(l) != 2 {
		t.Fatalf("%d snapshots after the next backup", len(l))
	}
	resumed, gets := logInt(t, errs, "big", "resumed"), logInt(t, errs, "big", "gets")
	t.Logf("the backup after SIGINT and SIGKILL resumed %d objects and fetched %d", resumed, gets)
	if resumed == 0 || resumed+gets != 600 {
		t.Fatalf("backup after the interruptions: resumed %d, GETs %d of 600 objects\n%s", resumed, gets, errs)
	}
	if n := journalCount(t, e.repo()); n != 0 {
		t.Fatalf("%d journal object(s) left after the resumed backup", n)
	}
	verified, verrs, vcode := e.runEnv([]string{"CFBACKUP_IDENTITY_FILE=" + key}, "verify", "latest", "--read-data", "--no-progress")
	if vcode != 0 || !strings.Contains(verified, "OK (read-data)") {
		t.Fatalf("verify the resumed snapshot: exit %d\n%s%s", vcode, verified, verrs)
	}
	out = e.must("restore", good, "--component", "r2", "--to-bucket", "out", "--identity-file", key)
	if !strings.Contains(out, "Restored 50 object(s)") {
		t.Fatalf("restore: %s", out)
	}
}

// journalCount counts the R2 resume journal objects in a local repository.
func journalCount(t *testing.T, root string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Join(root, "journal"), func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".idx") {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// logInt reads key=N from the "R2 bucket done" log line of bucket.
func logInt(t *testing.T, stderr, bucket, key string) int {
	t.Helper()
	for _, line := range strings.Split(stderr, "\n") {
		if !strings.Contains(line, "R2 bucket done") || !strings.Contains(line, "bucket="+bucket+" ") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, key+"="); ok {
				n, err := strconv.Atoi(v)
				if err != nil {
					t.Fatalf("%s in %q: %v", key, line, err)
				}
				return n
			}
		}
	}
	t.Fatalf("no %s= for bucket %s in:\n%s", key, bucket, stderr)
	return 0
}
