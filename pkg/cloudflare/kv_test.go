package cloudflare_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/cfbackup/cfbackup/internal/cftest"
	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/errclass"
)

func TestKVListPagingAndPrefix(t *testing.T) {
	s, url := cftest.Start(t, cftest.Options{})
	c := newClient(t, s, url)
	ctx := context.Background()
	ns, err := s.AddKVNamespace("cache")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddKVNamespace("sessions"); err != nil {
		t.Fatal(err)
	}
	var pairs []cftest.KVPair
	for i := range 2345 {
		p := cftest.KVPair{Key: fmt.Sprintf("k/%05d", i), Value: []byte{byte(i)}}
		if i%7 == 0 {
			p.Metadata = json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))
		}
		if i%11 == 0 {
			p.Expiration = time.Now().Add(time.Hour).Unix()
		}
		pairs = append(pairs, p)
	}
	pairs = append(pairs, cftest.KVPair{Key: "other", Value: []byte("x")})
	if err := s.PutKV(ns, pairs...); err != nil {
		t.Fatal(err)
	}
	nss, err := c.ListKVNamespaces(ctx)
	if err != nil || len(nss) != 2 || nss[0].Title != "cache" || !nss[0].SupportsURLEncoding {
		t.Fatalf("namespaces %+v, %v", nss, err)
	}
	if n, err := c.ResolveKVNamespace(ctx, "cache"); err != nil || n.ID != ns {
		t.Fatalf("resolve by title: %+v %v", n, err)
	}
	if _, err := c.ResolveKVNamespace(ctx, "nope"); !errors.Is(err, cloudflare.ErrNotFound) || errclass.Of(err) != errclass.NotFound {
		t.Fatalf("resolve missing: %v", err)
	}
	var got []cloudflare.KVKey
	pages := 0
	if err := c.ListKVKeys(ctx, ns, "k/", 1000, func(ks []cloudflare.KVKey) error {
		pages++
		got = append(got, ks...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if pages != 3 || len(got) != 2345 {
		t.Fatalf("%d pages, %d keys", pages, len(got))
	}
	for i, k := range got {
		p := pairs[i]
		if k.Name != p.Key || k.Expiration != p.Expiration || string(k.Metadata) != string(p.Metadata) {
			t.Fatalf("key %d: %+v, want %+v", i, k, p)
		}
	}
}

func TestKVBulkGetBinaryAndSingleGet(t *testing.T) {
	s, url := cftest.Start(t, cftest.Options{})
	c := newClient(t, s, url)
	ctx := context.Background()
	ns, _ := s.AddKVNamespace("bin")
	odd := "a/../b?c#d%2F e\u00e9\U0001F600"
	bin := []byte{0xff, 0xfe, 0, 1, 2}
	if err := s.PutKV(ns, cftest.KVPair{Key: "text", Value: []byte("héllo"), Metadata: json.RawMessage(`{"a":[1,2]}`)},
		cftest.KVPair{Key: odd, Value: bin, Expiration: 4102444800}); err != nil {
		t.Fatal(err)
	}
	vals, err := c.BulkGetKV(ctx, ns, []string{"text", odd, "missing"})
	if err != nil {
		t.Fatal(err)
	}
	if v := vals["text"]; !v.Found || v.Value != "héllo" || string(v.Metadata) != `{"a":[1,2]}` || !cloudflare.KVTextSafe(v.Value) {
		t.Fatalf("text: %+v", v)
	}
	if v := vals[odd]; !v.Found || cloudflare.KVTextSafe(v.Value) || v.Expiration != 4102444800 {
		t.Fatalf("binary via bulk: %+v", v)
	}
	if vals["missing"].Found {
		t.Fatal("missing key found")
	}
	body, exp, err := c.GetKVValue(ctx, ns, odd)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(body)
	body.Close()
	if !bytes.Equal(b, bin) || exp != 4102444800 {
		t.Fatalf("single get: %x exp %d", b, exp)
	}
	if _, _, err := c.GetKVValue(ctx, ns, "missing"); !errors.Is(err, cloudflare.ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	if m, err := c.GetKVMetadata(ctx, ns, "text"); err != nil || string(m) != `{"a":[1,2]}` {
		t.Fatalf("metadata %s %v", m, err)
	}
	// Single reads address the key in the path: every odd name must arrive intact.
	for _, k := range []string{"...", "%", "%25", "a/./b", "/lead", "trail/", "//", "sp ace", "new\nline", "tab\t", "+plus", "semi;colon", "back\\slash"} {
		if err := s.PutKV(ns, cftest.KVPair{Key: k, Value: []byte("v:" + k)}); err != nil {
			t.Fatal(err)
		}
		body, _, err := c.GetKVValue(ctx, ns, k)
		if err != nil {
			t.Fatalf("%q: %v", k, err)
		}
		b, _ := io.ReadAll(body)
		body.Close()
		if string(b) != "v:"+k {
			t.Fatalf("%q: read %q", k, b)
		}
	}
	s.SetKVBulkGetStrict(true)
	if _, err := c.BulkGetKV(ctx, ns, []string{odd}); err == nil {
		t.Fatal("strict bulk read of a binary value succeeded")
	}
	if _, err := c.BulkGetKV(ctx, ns, make([]string, 101)); err == nil {
		t.Fatal("101 keys accepted")
	}
	old := cloudflare.KVBulkGetMaxResponse
	cloudflare.KVBulkGetMaxResponse = 10
	defer func() { cloudflare.KVBulkGetMaxResponse = old }()
	if _, err := c.BulkGetKV(ctx, ns, []string{"text"}); !errors.Is(err, cloudflare.ErrKVTooLarge) {
		t.Fatalf("capped answer: %v", err)
	}
}

func TestKVBulkPutLimitsRetriesAndDelete(t *testing.T) {
	s, url := cftest.Start(t, cftest.Options{Faults: &cftest.Faults{Status429: 2, RetryAfter: time.Millisecond}})
	c := newClient(t, s, url)
	ctx := context.Background()
	ns, _ := s.AddKVNamespace("w")
	exp := time.Now().Add(time.Hour).Unix()
	pairs := []cloudflare.KVWrite{
		{Key: "utf8", Value: []byte("plain ✓")},
		{Key: "bin", Value: []byte{0x80, 0x81, 0}, Expiration: exp},
		{Key: "meta", Value: []byte{}, Metadata: json.RawMessage(`{"k":"v"}`)},
		{Key: strings.Repeat("x", 512), Value: []byte("long key")},
	}
	s.FailKVWrites(1)
	if err := c.BulkPutKV(ctx, ns, pairs); err != nil { // two 429s, one unsuccessful key: all retried
		t.Fatal(err)
	}
	got, err := s.KVPairs(ns)
	if err != nil || len(got) != 4 {
		t.Fatalf("%d pairs %v", len(got), err)
	}
	byKey := map[string]cftest.KVPair{}
	for _, p := range got {
		byKey[p.Key] = p
	}
	for _, w := range pairs {
		p := byKey[w.Key]
		if !bytes.Equal(p.Value, w.Value) || p.Expiration != w.Expiration || string(p.Metadata) != string(w.Metadata) {
			t.Fatalf("%q: %+v, want %+v", w.Key, p, w)
		}
	}
	for _, bad := range []cloudflare.KVWrite{
		{Key: strings.Repeat("x", 513), Value: []byte("v")},
		{Key: "..", Value: []byte("v")},
		{Key: "big", Value: make([]byte, cloudflare.KVMaxValueBytes+1)},
		{Key: "meta", Value: []byte("v"), Metadata: json.RawMessage(`"` + strings.Repeat("m", 1100) + `"`)},
		{Key: "past", Value: []byte("v"), Expiration: time.Now().Unix() + 10},
	} {
		err := c.BulkPutKV(ctx, ns, []cloudflare.KVWrite{bad})
		if err == nil || errclass.Of(err) == nil {
			t.Fatalf("%q accepted or misclassified: %v", bad.Key[:min(len(bad.Key), 8)], err)
		}
	}
	s.FailKVWrites(5)
	if err := c.BulkPutKV(ctx, ns, pairs[:1]); !errors.Is(err, cloudflare.ErrKVPartial) {
		t.Fatalf("persistently unsuccessful key: %v", err)
	}
	s.FailKVWrites(0)
	if err := c.BulkDeleteKV(ctx, ns, []string{"utf8", "bin"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.KVPairs(ns); len(got) != 2 {
		t.Fatalf("%d pairs after delete", len(got))
	}
}

func TestKVAuthAndExpiry(t *testing.T) {
	now := time.Unix(2_000_000_000, 0)
	clock := now
	s, url := cftest.Start(t, cftest.Options{Now: func() time.Time { return clock }})
	ns, _ := s.AddKVNamespace("e")
	_ = s.PutKV(ns, cftest.KVPair{Key: "soon", Value: []byte("v"), Expiration: now.Unix() + 100}, cftest.KVPair{Key: "kept", Value: []byte("v")})
	c := newClient(t, s, url)
	ctx := context.Background()
	clock = now.Add(200 * time.Second)
	var names []string
	_ = c.ListKVKeys(ctx, ns, "", 10, func(ks []cloudflare.KVKey) error {
		for _, k := range ks {
			names = append(names, k.Name)
		}
		return nil
	})
	if len(names) != 1 || names[0] != "kept" {
		t.Fatalf("expired key still listed: %v", names)
	}
	bad, _ := cloudflare.New(cloudflare.Config{AccountID: s.AccountID(), APIToken: "wrong", BaseURL: url + "/client/v4"})
	if _, err := bad.ListKVNamespaces(ctx); !errors.Is(err, cloudflare.ErrAuth) || !strings.Contains(err.Error(), "Workers KV Storage Read") {
		t.Fatalf("bad token: %v", err)
	}
}
