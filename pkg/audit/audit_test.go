package audit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cfbackup/cfbackup/pkg/audit"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/local"
)

func newLog(t *testing.T) (*audit.Log, store.Store) {
	t.Helper()
	st, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return &audit.Log{Store: st, Now: func() time.Time { clock = clock.Add(time.Second); return clock }}, st
}

func appendN(t *testing.T, l *audit.Log, n int) {
	t.Helper()
	for i := range n {
		r := &audit.Record{Actor: "ops@host", Host: "host", Command: "backup", Args: []string{"backup", "--component", "d1"}, Result: audit.ResultOK, Snapshots: []string{fmt.Sprintf("snap%d", i)}}
		if err := l.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
}

func keys(t *testing.T, st store.Store) []string {
	t.Helper()
	var out []string
	if err := st.List(context.Background(), audit.Prefix, func(oi store.ObjectInfo) error {
		if strings.HasSuffix(oi.Key, ".json") {
			out = append(out, oi.Key)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func read(t *testing.T, st store.Store, key string) []byte {
	t.Helper()
	rc, err := st.Open(context.Background(), key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return b
}

func put(t *testing.T, st store.Store, key string, b []byte) {
	t.Helper()
	if err := st.Put(context.Background(), key, bytes.NewReader(b), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

func verify(t *testing.T, l *audit.Log) audit.Status {
	t.Helper()
	_, st, err := l.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestChainIntact(t *testing.T) {
	l, st := newLog(t)
	appendN(t, l, 5)
	recs, s, err := l.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !s.OK || s.Records != 5 || s.HeadSeq != 5 || len(recs) != 5 {
		t.Fatalf("status %+v", s)
	}
	if recs[0].Prev != "" || recs[1].Prev != recs[0].Hash || recs[4].Hash != s.HeadHash {
		t.Fatalf("chain links wrong: %+v", recs)
	}
	ks := keys(t, st)
	if ks[0] != audit.RecordKey(1, recs[0].Hash) {
		t.Fatalf("key %s", ks[0])
	}
	// The stored hash is the SHA-256 of the canonical JSON without "hash": recompute independently.
	raw := read(t, st, ks[2])
	h, err := audit.HashOf(raw)
	if err != nil || h != recs[2].Hash {
		t.Fatalf("hash %s vs %s (%v)", h, recs[2].Hash, err)
	}
}

func TestDetectsTampering(t *testing.T) {
	cases := []struct {
		name   string
		tamper func(t *testing.T, st store.Store, ks []string)
		want   string
	}{
		{"deleted record and claim", func(t *testing.T, st store.Store, ks []string) {
			_ = st.Delete(context.Background(), ks[2])
			_ = st.Delete(context.Background(), audit.ClaimKey(3))
		}, "record missing"},
		{"deleted record keeping the claim", func(t *testing.T, st store.Store, ks []string) {
			_ = st.Delete(context.Background(), ks[2])
		}, "record missing"},
		{"edited field", func(t *testing.T, st store.Store, ks []string) {
			b := read(t, st, ks[1])
			put(t, st, ks[1], bytes.Replace(b, []byte(`"result": "ok"`), []byte(`"result": "error"`), 1))
		}, "edited"},
		{"edited and rehashed", func(t *testing.T, st store.Store, ks []string) {
			// An attacker who recomputes the hash must rename the object; the next record's prev still
			// names the original.
			var m map[string]any
			_ = json.Unmarshal(read(t, st, ks[1]), &m)
			m["actor"] = "someone-else"
			raw, _ := json.Marshal(m)
			h, _ := audit.HashOf(raw)
			m["hash"] = h
			raw, _ = json.Marshal(m)
			_ = st.Delete(context.Background(), ks[1])
			put(t, st, audit.RecordKey(2, h), raw)
		}, "chain broken"},
		{"reordered", func(t *testing.T, st store.Store, ks []string) {
			a, b := read(t, st, ks[1]), read(t, st, ks[2])
			ha, hb := strings.TrimSuffix(ks[1][len("audit/000000000002-"):], ".json"), strings.TrimSuffix(ks[2][len("audit/000000000003-"):], ".json")
			_ = st.Delete(context.Background(), ks[1])
			_ = st.Delete(context.Background(), ks[2])
			put(t, st, audit.RecordKey(2, hb), b)
			put(t, st, audit.RecordKey(3, ha), a)
		}, "reordered"},
		{"forked", func(t *testing.T, st store.Store, ks []string) {
			put(t, st, audit.RecordKey(3, strings.Repeat("a", 64)), []byte(`{}`))
		}, "fork"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, st := newLog(t)
			appendN(t, l, 4)
			c.tamper(t, st, keys(t, st))
			s := verify(t, l)
			if s.OK {
				t.Fatalf("tampering not detected: %+v", s)
			}
			var all []string
			for _, p := range s.Problems {
				all = append(all, p.Problem)
			}
			if !strings.Contains(strings.Join(all, "\n"), c.want) {
				t.Fatalf("want %q in problems, got %q", c.want, all)
			}
		})
	}
}

// A run that crashed between claiming a number and writing its record leaves a claim without a record:
// at the head it is a gap (maybe being written now); once records follow, it is a problem, because the
// chain can't tell a crash from a deleted record. The next record chains onto the claimed hash.
func TestClaimWithoutRecord(t *testing.T) {
	l, st := newLog(t)
	appendN(t, l, 2)
	put(t, st, audit.ClaimKey(3), []byte(strings.Repeat("b", 64)+"\n"))
	s := verify(t, l)
	if !s.OK || len(s.Gaps) != 1 || s.Gaps[0].Seq != 3 {
		t.Fatalf("status %+v", s)
	}
	appendN(t, l, 1)
	recs, s, _ := l.Verify(context.Background())
	if s.OK || len(s.Problems) != 1 || s.Problems[0].Seq != 3 || s.HeadSeq != 4 || recs[2].Prev != strings.Repeat("b", 64) {
		t.Fatalf("status %+v", s)
	}
}

// Concurrent writers never share a sequence number and the chain stays linear.
func TestConcurrentAppend(t *testing.T) {
	l, _ := newLog(t)
	l.Now = nil
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				if err := l.Append(context.Background(), &audit.Record{Command: "backup", Result: audit.ResultOK}); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s := verify(t, l)
	if !s.OK || s.Records != 24 {
		t.Fatalf("status %+v", s)
	}
}

func TestUnfinished(t *testing.T) {
	l, _ := newLog(t)
	ctx := context.Background()
	for _, r := range []*audit.Record{
		{Command: "backup", Result: audit.ResultStarted, Run: "a"},
		{Command: "backup", Result: audit.ResultOK, Run: "a"},
		{Command: "backup", Result: audit.ResultStarted, Run: "b"}, // killed: never finished
		{Command: "restore", Result: audit.ResultStarted, Run: "c"},
		{Command: "restore", Result: audit.ResultError, Run: "c", Error: "boom", ExitCode: 1},
	} {
		if err := l.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	s := verify(t, l)
	if len(s.Unfinished) != 1 || s.Unfinished[0].Run != "b" {
		t.Fatalf("unfinished %+v", s.Unfinished)
	}
}

func TestAppendStoreError(t *testing.T) {
	l, _ := newLog(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Append(ctx, &audit.Record{Command: "x"}); err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
}

func TestRedactArgs(t *testing.T) {
	in := []string{"backup", "--api-token", "s3cr3t", "--smtp-password=hunter2", "--identity-file", "key.txt",
		"AGE-SECRET-KEY-1ABC", "CLOUDFLARE_API_TOKEN=abc", "--repo", "s3://user:pw@bucket/p",
		"--metrics-push", "http://gw:9091/x?token=abc", "--label", "ticket=OPS-1", "--notify-webhook", "https://hooks.example/T/B/X"}
	got := strings.Join(audit.RedactArgs(in), " ")
	for _, secret := range []string{"s3cr3t", "hunter2", "AGE-SECRET-KEY-1ABC", "=abc", "pw@", "token=abc", "/T/B/X"} {
		if strings.Contains(got, secret) {
			t.Errorf("secret %q survived: %s", secret, got)
		}
	}
	for _, keep := range []string{"key.txt", "ticket=OPS-1", "--api-token", "CLOUDFLARE_API_TOKEN=", "bucket", "gw:9091/x"} {
		if !strings.Contains(got, keep) {
			t.Errorf("%q lost: %s", keep, got)
		}
	}
}

// Key-shaped values are secrets wherever they sit: alone, after NAME= (--label note=AGE-SECRET-KEY-1…),
// inside a longer value, in --flag=NAME=VALUE form.
func TestRedactKeyShapedValuesInsideArguments(t *testing.T) {
	key := "AGE-SECRET-KEY-1QYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQS8L2JF4"
	in := []string{"backup", "--label", "note=" + key, "--label=memo=" + key, "--label", "ticket=see " + key + " here",
		"--reason", "rotated xoxb-1234-abcd", "--label", "aws=AKIAABCDEFGHIJKLMNOP", "--label", "ticket=OPS-1"}
	got := strings.Join(audit.RedactArgs(in), " ")
	for _, secret := range []string{"AGE-SECRET-KEY", "QYQSZQGP", "xoxb-1234", "AKIAABCDEFGHIJKLMNOP"} {
		if strings.Contains(got, secret) {
			t.Errorf("secret %q survived: %s", secret, got)
		}
	}
	for _, keep := range []string{"note=[REDACTED]", "memo=[REDACTED]", "ticket=OPS-1", "rotated"} {
		if !strings.Contains(got, keep) {
			t.Errorf("%q lost: %s", keep, got)
		}
	}
}

// RedactText cleans free text (an error message) of URL secrets and key-shaped values.
func TestRedactText(t *testing.T) {
	in := `Post "http://user:pw@127.0.0.1:9/hooks/T0?token=abc123": dial tcp: refused; key AGE-SECRET-KEY-1QYQSZQGPQYQS8L2JF4`
	got := audit.RedactText(in)
	for _, secret := range []string{"pw@", "abc123", "AGE-SECRET-KEY"} {
		if strings.Contains(got, secret) {
			t.Errorf("secret %q survived: %s", secret, got)
		}
	}
	if !strings.Contains(got, "127.0.0.1:9") || !strings.Contains(got, "dial tcp: refused") {
		t.Errorf("too much removed: %s", got)
	}
}

// TestCountsAreAdditive: a backup record's counts (items, stored_bytes, per_component) are hashed
// and read back like every field, and a record without them — as every record before them was
// written — is stored without them and still chains and verifies.
func TestCountsAreAdditive(t *testing.T) {
	l, st := newLog(t)
	appendN(t, l, 1) // no counts: an older record's shape
	r := &audit.Record{Actor: "ops@host", Host: "host", Command: "backup", Result: audit.ResultOK, Snapshots: []string{"s"},
		Bytes: 1000, Items: 12, StoredBytes: 400, PerComponent: map[string]audit.Count{"d1": {Items: 2, Bytes: 600}, "r2": {Items: 10, Bytes: 400}}}
	if err := l.Append(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	ks := keys(t, st)
	if old := string(read(t, st, ks[0])); strings.Contains(old, "items") || strings.Contains(old, "stored_bytes") || strings.Contains(old, "per_component") {
		t.Fatalf("a record without counts stores them: %s", old)
	}
	recs, s, err := l.Verify(context.Background())
	if err != nil || !s.OK || len(recs) != 2 {
		t.Fatalf("verify: %+v %v", s, err)
	}
	got := recs[1]
	if got.Items != 12 || got.StoredBytes != 400 || got.PerComponent["r2"] != (audit.Count{Items: 10, Bytes: 400}) || recs[0].Items != 0 || recs[0].PerComponent != nil {
		t.Fatalf("records read back: %+v / %+v", recs[0], got)
	}
	// The counts are covered by the hash: editing one breaks the chain.
	raw := read(t, st, ks[1])
	put(t, st, ks[1], bytes.Replace(raw, []byte(`"stored_bytes": 400`), []byte(`"stored_bytes": 401`), 1))
	if verify(t, l).OK {
		t.Fatal("an edited stored_bytes still verifies")
	}
}
