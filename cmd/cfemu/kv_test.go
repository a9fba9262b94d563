package main

import (
	"errors"
	"testing"

	"github.com/cfbackup/cfbackup/internal/cftest"
)

// TestKVSeedFlag: --kv TITLE adds an empty namespace, --kv TITLE=N fills a new one once (a restart
// with the same data directory keeps what is there), malformed specs are usage errors.
func TestKVSeedFlag(t *testing.T) {
	dir := t.TempDir()
	srv, err := cftest.New(cftest.Options{DataDir: dir, Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if err := seedKV(srv, []string{"empty", "cache=250"}); err != nil {
		t.Fatal(err)
	}
	id, err := srv.KVNamespaceID("cache")
	if err != nil {
		t.Fatal(err)
	}
	pairs, err := srv.KVPairs(id)
	if err != nil || len(pairs) != 250 {
		t.Fatalf("%d pairs, %v", len(pairs), err)
	}
	_ = srv.PutKV(id, cftest.KVPair{Key: "user/00000000", Value: []byte("changed")})
	srv.Close()
	srv, err = cftest.New(cftest.Options{DataDir: dir, Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := seedKV(srv, []string{"cache=250"}); err != nil {
		t.Fatal(err)
	}
	pairs, _ = srv.KVPairs(id)
	kept := false
	for _, p := range pairs {
		kept = kept || (p.Key == "user/00000000" && string(p.Value) == "changed")
	}
	if len(pairs) != 250 || !kept {
		t.Fatalf("a restart reseeded the namespace: %d pairs, change kept: %v", len(pairs), kept)
	}
	for _, bad := range []string{"=3", "x=-1", "x=many"} {
		if err := seedKV(srv, []string{bad}); !errors.Is(err, errUsage) {
			t.Errorf("--kv %q: %v", bad, err)
		}
	}
}
