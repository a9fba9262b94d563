package kv_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cfbackup/cfbackup/internal/cftest"
	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source"
	"github.com/cfbackup/cfbackup/pkg/source/kv"
	"github.com/cfbackup/cfbackup/pkg/store"
)

func jsonCompact(dst *bytes.Buffer, src []byte) error { return json.Compact(dst, src) }

// genPairs makes n random pairs: odd key names, binary and UTF-8 values (some holding U+FFFD, NUL
// or control characters, empty, or larger than a chunk), metadata and expirations.
func genPairs(rng *rand.Rand, n int, now time.Time) []cftest.KVPair {
	odd := []string{"a/../b", "...", ".hidden", "%2F", "100%", "q?x=1#frag", "sp ace", "tab\there", "new\nline", `back\slash`, `"quoted"`,
		"ünïcödé", "emoji😀", "\u2028sep", "<html>&amp;", "a//b/", "/leading", strings.Repeat("k", 512), strings.Repeat("é", 256)}
	seen := map[string]bool{}
	var out []cftest.KVPair
	for i := 0; len(out) < n; i++ {
		var key string
		if i < len(odd) {
			key = odd[i]
		} else {
			key = fmt.Sprintf("%s/%d-%x", []string{"user", "sess", "cfg", "a b", "ключ"}[rng.IntN(5)], rng.IntN(1_000_000), rng.Uint32())
		}
		if seen[key] {
			continue
		}
		seen[key] = true
		p := cftest.KVPair{Key: key}
		switch rng.IntN(8) {
		case 0: // binary
			p.Value = make([]byte, rng.IntN(2000))
			for j := range p.Value {
				p.Value[j] = byte(rng.UintN(256))
			}
			if len(p.Value) > 0 {
				p.Value[0] = 0xff // never valid UTF-8
			}
		case 1:
			p.Value = []byte{}
		case 2:
			p.Value = []byte("replacement \uFFFD char is real text")
		case 3:
			p.Value = []byte("ctl\x00\x01\x1f\"\\\n\t end")
		case 4:
			b, _ := json.Marshal(map[string]any{"id": rng.IntN(1000), "tags": []string{"a", "b"}, "nested": map[string]any{"x": 1.5}})
			p.Value = b
		default:
			p.Value = []byte(strings.Repeat("text é ✓ ", 1+rng.IntN(60)))
		}
		if rng.IntN(3) == 0 {
			m, _ := json.Marshal(map[string]any{"v": rng.IntN(100), "s": strings.Repeat("m", rng.IntN(900)), "u": "ü"})
			p.Metadata = m
		}
		if rng.IntN(4) == 0 {
			p.Expiration = now.Add(time.Duration(1+rng.IntN(1000)) * time.Hour).Unix()
		}
		out = append(out, p)
	}
	big := make([]byte, 3<<20+17) // over the 1 MiB chunk size, not UTF-8
	for j := range big {
		big[j] = byte(j * 7)
	}
	out = append(out, cftest.KVPair{Key: "big/blob", Value: big, Metadata: json.RawMessage(`{"type":"blob"}`)})
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

func seed(t testing.TB) (*rand.Rand, int64) {
	s := time.Now().UnixNano()
	if v := os.Getenv("KV_SEED"); v != "" {
		s, _ = strconv.ParseInt(v, 10, 64)
	}
	t.Logf("KV_SEED=%d", s)
	return rand.New(rand.NewPCG(uint64(s), 7)), s
}

// TestDifferentialBackupRestore: random pairs back up and restore into another namespace, and to a
// directory, value by value, with metadata and expirations; test-restore decodes them all.
func TestDifferentialBackupRestore(t *testing.T) {
	rng, _ := seed(t)
	f := newFx(t, cftest.Options{})
	src, _ := f.srv.AddKVNamespace("app-cache")
	want := genPairs(rng, 2500, time.Now())
	if err := f.srv.PutKV(src, want...); err != nil {
		t.Fatal(err)
	}
	want = f.pairs(t, src)
	m := f.backup(t)
	if len(m.Sources) != 1 || m.Sources[0].Component != "kv" || m.Sources[0].ID != src || m.Sources[0].Items < 2 || m.Sources[0].Index == "" {
		t.Fatalf("sources %+v", m.Sources)
	}
	gets, _ := f.srv.KVRequests()
	if gets == 0 {
		t.Fatal("binary values were not read one by one")
	}
	dst, _ := f.srv.AddKVNamespace("restored")
	out, err := f.restore(m.ID, engine.RestoreOptions{}, "--to-namespace", "restored")
	if err != nil {
		t.Fatal(err)
	}
	if out.SafetySnapshot != "" || out.Plan.Confirm() != nil {
		t.Fatal("a restore into an empty namespace asked for confirmation or a safety snapshot")
	}
	samePairs(t, f.pairs(t, dst), want)
	sum := out.Result.JSON.(*kv.RestoreSummary)
	if sum.MessageType != "summary" || sum.Written != int64(len(want)) {
		t.Fatalf("summary %+v", sum)
	}

	dir := t.TempDir()
	if _, err := f.restore(m.ID, engine.RestoreOptions{ToDir: dir}); err != nil {
		t.Fatal(err)
	}
	samePairs(t, readBulkFile(t, filepath.Join(dir, "kv-"+src+".json")), want)
	if _, err := f.restore(m.ID, engine.RestoreOptions{ToDir: dir}); !errors.Is(err, errclass.Refused) {
		t.Fatalf("to-dir over an existing file: %v", err)
	}

	res, err := f.eng.TestRestore(context.Background(), m, engine.TestRestoreOptions{Identities: f.ids, Components: []string{"kv"}, Env: f})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK || len(res.Sources) != 1 || len(res.Sources[0].Problems) != 0 || res.Sources[0].Items != int(m.Sources[0].Items) {
		t.Fatalf("test-restore %+v", res)
	}
}

// readBulkFile reads a bulk-write JSON array back into pairs.
func readBulkFile(t testing.TB, path string) []cftest.KVPair {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var arr []struct {
		Key        string          `json:"key"`
		Value      string          `json:"value"`
		Base64     bool            `json:"base64"`
		Expiration int64           `json:"expiration"`
		Metadata   json.RawMessage `json:"metadata"`
	}
	if err := json.Unmarshal(b, &arr); err != nil {
		t.Fatal(err)
	}
	var out []cftest.KVPair
	for _, a := range arr {
		v := []byte(a.Value)
		if a.Base64 {
			v, _ = base64.StdEncoding.DecodeString(a.Value)
		} else if !utf8.ValidString(a.Value) {
			t.Fatalf("a text value is not UTF-8")
		}
		out = append(out, cftest.KVPair{Key: a.Key, Value: v, Expiration: a.Expiration, Metadata: a.Metadata})
	}
	return out
}

// TestRestoreOverLiveKeys: overwriting live keys needs --yes, takes a safety snapshot of exactly the
// keys overwritten, and the undo command's restore puts their previous values back; --key and
// --prefix select keys; expired keys are left out.
func TestRestoreOverLiveKeys(t *testing.T) {
	clock := time.Unix(2_000_000_000, 0)
	f := newFx(t, cftest.Options{Now: func() time.Time { return clock }})
	ns, _ := f.srv.AddKVNamespace("sessions")
	var orig []cftest.KVPair
	for i := range 300 {
		orig = append(orig, cftest.KVPair{Key: fmt.Sprintf("s/%03d", i), Value: []byte(fmt.Sprintf("v%d", i))})
	}
	orig = append(orig, cftest.KVPair{Key: "short-lived", Value: []byte("x"), Expiration: clock.Unix() + 3600})
	if err := f.srv.PutKV(ns, orig...); err != nil {
		t.Fatal(err)
	}
	m := f.backup(t)
	// The app moves on: 11 keys change, 5 are added.
	var changed []cftest.KVPair
	for i := range 10 {
		changed = append(changed, cftest.KVPair{Key: fmt.Sprintf("s/%03d", i*7), Value: []byte("changed"), Metadata: json.RawMessage(`{"c":1}`)})
	}
	for i := range 5 {
		changed = append(changed, cftest.KVPair{Key: fmt.Sprintf("t/new-%d", i), Value: []byte("new")})
	}
	changed = append(changed, cftest.KVPair{Key: "s/105", Value: []byte("changed")})
	_ = f.srv.PutKV(ns, changed...)
	if err := f.cf.BulkDeleteKV(context.Background(), ns, []string{"s/001", "s/002"}); err != nil {
		t.Fatal(err)
	}
	before := f.pairs(t, ns)

	if _, err := f.restore(m.ID, engine.RestoreOptions{}); !errors.Is(err, errclass.Refused) {
		t.Fatalf("restore over live keys without --yes: %v", err)
	}
	dry, err := f.restore(m.ID, engine.RestoreOptions{DryRun: true}, "--key", "s/007", "--key", "s/014", "--key", "s/010", "--key", "missing")
	if err != nil {
		t.Fatal(err)
	}
	pj := dry.Plan.JSON().(kv.RestorePlanJSON)
	if np := pj.Namespaces[0]; np.Keys != 2 || np.Overwrite != 2 || np.Create != 0 || np.Same != 1 {
		t.Fatalf("plan for --key: %+v", np)
	}
	var txt bytes.Buffer
	dry.Plan.Text(&txt)
	if !strings.Contains(txt.String(), "2 overwrite live keys") {
		t.Fatalf("plan text: %s", txt.String())
	}
	samePairs(t, f.pairs(t, ns), before) // a dry run writes nothing

	clock = clock.Add(2 * time.Hour) // "short-lived" has expired since the backup
	out, err := f.restore(m.ID, engine.RestoreOptions{Yes: true, Prefix: "s/0"})
	if err != nil {
		t.Fatal(err)
	}
	if np := out.Plan.JSON().(kv.RestorePlanJSON).Namespaces[0]; np.Keys != 12 || np.Overwrite != 10 || np.Create != 2 || np.Same != 88 {
		t.Fatalf("prefix restore plan %+v", np)
	}
	if out.SafetySnapshot == "" || !strings.Contains(out.Undo, out.SafetySnapshot) || !strings.Contains(out.Undo, "--component kv") {
		t.Fatalf("safety %q undo %q", out.SafetySnapshot, out.Undo)
	}
	after := f.pairs(t, ns)
	byKey := map[string]cftest.KVPair{}
	for _, p := range after {
		byKey[p.Key] = p
	}
	for _, p := range orig[:100] { // s/000..s/099 match the prefix
		if g := byKey[p.Key]; !bytes.Equal(g.Value, p.Value) || g.Metadata != nil {
			t.Fatalf("%s = %q %s after restore", p.Key, g.Value, g.Metadata)
		}
	}
	if string(byKey["s/105"].Value) != "changed" || string(byKey["t/new-0"].Value) != "new" {
		t.Fatal("keys outside --prefix were touched")
	}
	// The safety snapshot holds exactly the overwritten keys (the 10 changed s/0xx; 88 are identical)
	// and lists the 2 keys the restore created as absent.
	sm, err := f.rp.FindSnapshot(context.Background(), out.SafetySnapshot, "kv")
	if err == nil {
		sm, err = f.rp.LoadManifest(context.Background(), sm)
	}
	if err != nil {
		t.Fatal(err)
	}
	cat, err := engine.OpenCatalogue(sm, f.ids)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]int64{}
	for _, it := range cat.Items {
		rows[it.Kind] += it.Rows
	}
	if rows[kv.KindEntries] != 10 || rows[kv.KindAbsent] != 2 || sm.Sources[0].Index != "" {
		t.Fatalf("safety snapshot holds %v keys (index %q), want 10 entries and 2 absent", rows, sm.Sources[0].Index)
	}
	tr, err := f.eng.TestRestore(context.Background(), sm, engine.TestRestoreOptions{Identities: f.ids, Components: []string{"kv"}, Env: f})
	if err != nil || !tr.OK {
		t.Fatalf("test-restore of the safety snapshot: %+v %v", tr, err)
	}
	// Undo: restore the safety snapshot: the 10 overwritten values come back, the 2 created keys go.
	args := strings.Fields(out.Undo)
	undo, err := f.restore(args[2], engine.RestoreOptions{DryRun: true}, args[5:len(args)-1]...)
	if err != nil {
		t.Fatal(err)
	}
	if np := undo.Plan.JSON().(kv.RestorePlanJSON).Namespaces[0]; np.Overwrite != 10 || np.Delete != 2 || undo.Plan.Confirm() == nil {
		t.Fatalf("undo plan %+v", np)
	}
	if _, err := f.restore(args[2], engine.RestoreOptions{Yes: true}, args[5:len(args)-1]...); err != nil {
		t.Fatal(err)
	}
	var live []cftest.KVPair
	for _, p := range before {
		if p.Key != "short-lived" { // expired meanwhile
			live = append(live, p)
		}
	}
	samePairs(t, f.pairs(t, ns), live)
}

// TestIncremental: with --kv-incremental a batch whose listing is unchanged is reused without
// reading its values; a changed key re-reads only its batch; the restored data is the live data.
// A value rewritten with identical metadata is missed (the documented limit), and a full backup
// sees it.
func TestIncremental(t *testing.T) {
	rng, _ := seed(t)
	f := newFx(t, cftest.Options{})
	ns, _ := f.srv.AddKVNamespace("inc")
	if err := f.srv.PutKV(ns, genPairs(rng, 3000, time.Now())...); err != nil {
		t.Fatal(err)
	}
	m1 := f.backup(t, "--kv-incremental")
	if m1.Sources[0].Parent != "" || m1.Sources[0].Reused != 0 {
		t.Fatalf("first backup %+v", m1.Sources[0])
	}
	_, bulk0 := f.srv.KVRequests()
	m2 := f.backup(t, "--kv-incremental")
	if _, bulk := f.srv.KVRequests(); bulk != bulk0 {
		t.Fatalf("an unchanged namespace was read again (%d bulk reads)", bulk-bulk0)
	}
	if s := m2.Sources[0]; s.Parent != m1.ID || s.Items != m1.Sources[0].Items || s.Reused == 0 {
		t.Fatalf("second backup %+v", s)
	}
	if len(m2.Segments) == 0 {
		t.Fatal("reused items' segments are not referenced")
	}
	live := f.pairs(t, ns)
	ch := live[1234]
	ch.Metadata = json.RawMessage(`{"changed":true}`)
	_ = f.srv.PutKV(ns, ch)
	_, bulk1 := f.srv.KVRequests()
	m3 := f.backup(t, "--kv-incremental")
	_, bulk2 := f.srv.KVRequests()
	if n := bulk2 - bulk1; n < 1 || n > int64(kv.MaxBatchKeys/100+1) {
		t.Fatalf("one changed key made %d bulk reads", n)
	}
	if s := m3.Sources[0]; s.Reused == 0 || s.Reused >= int64(len(live)) {
		t.Fatalf("third backup reused %d of %d", s.Reused, len(live))
	}
	dst, _ := f.srv.AddKVNamespace("check")
	if _, err := f.restore(m3.ID, engine.RestoreOptions{}, "--to-namespace", dst); err != nil {
		t.Fatal(err)
	}
	samePairs(t, f.pairs(t, dst), f.pairs(t, ns))

	// The limit: same listing, new value.
	sneaky := f.pairs(t, ns)[5]
	sneaky.Value = []byte("rewritten with the same metadata")
	_ = f.srv.PutKV(ns, sneaky)
	m4 := f.backup(t, "--kv-incremental")
	m5 := f.backup(t)
	for _, c := range []struct {
		m    *manifest.Manifest
		want string
	}{{m4, "old"}, {m5, "new"}} {
		dir := t.TempDir()
		if _, err := f.restore(c.m.ID, engine.RestoreOptions{ToDir: dir}, "--key", sneaky.Key); err != nil {
			t.Fatal(err)
		}
		got := readBulkFile(t, filepath.Join(dir, "kv-"+ns+".json"))
		if len(got) != 1 || (string(got[0].Value) == string(sneaky.Value)) != (c.want == "new") {
			t.Fatalf("%s backup: %d pairs", c.want, len(got))
		}
	}
}

// TestNoKeyNamesOutsideCiphertext: no object in the repository (manifests, indexes, segments)
// holds a key name, a value or metadata in plaintext.
func TestNoKeyNamesOutsideCiphertext(t *testing.T) {
	f := newFx(t, cftest.Options{})
	ns, _ := f.srv.AddKVNamespace("secrets")
	_ = f.srv.PutKV(ns, cftest.KVPair{Key: "customer-ZX81-key", Value: []byte("value-QL9-plain"), Metadata: json.RawMessage(`{"m":"meta-Z88"}`)})
	f.backup(t, "--kv-incremental")
	f.backup(t, "--kv-incremental")
	ctx := context.Background()
	n := 0
	err := f.st.List(ctx, "", func(o store.ObjectInfo) error {
		rc, err := f.st.Open(ctx, o.Key, 0, -1)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		n++
		for _, s := range []string{"customer-ZX81-key", "value-QL9-plain", "meta-Z88"} {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds %q in plaintext", o.Key, s)
			}
		}
		return nil
	})
	if err != nil || n < 5 {
		t.Fatalf("%d objects, %v", n, err)
	}
}

// TestBackupThroughFaults: 429s (with Retry-After) and 5xx answers are retried; a bulk read the API
// refuses for a binary value falls back to single reads.
func TestBackupThroughFaults(t *testing.T) {
	f := newFx(t, cftest.Options{})
	ns, _ := f.srv.AddKVNamespace("faulty")
	var want []cftest.KVPair
	for i := range 400 {
		v := []byte(fmt.Sprintf("value %d", i))
		if i%50 == 0 {
			v = []byte{0xc3, 0x28, byte(i)}
		}
		want = append(want, cftest.KVPair{Key: fmt.Sprintf("k%04d", i), Value: v})
	}
	_ = f.srv.PutKV(ns, want...)
	f.srv.SetKVBulkGetStrict(true)
	f.srv.InjectFaults(cftest.Faults{Status429: 2, Status5xx: 2, RetryAfter: time.Millisecond})
	m := f.backup(t)
	dst, _ := f.srv.AddKVNamespace("dst")
	f.srv.FailKVWrites(1)
	if _, err := f.restore(m.ID, engine.RestoreOptions{}, "--kv-namespace", "faulty", "--to-namespace", dst); err != nil {
		t.Fatal(err)
	}
	samePairs(t, f.pairs(t, dst), want)
}

// TestRestoreErrors: unknown namespaces and flag conflicts fail with their classes.
func TestRestoreErrors(t *testing.T) {
	f := newFx(t, cftest.Options{})
	a, _ := f.srv.AddKVNamespace("a")
	b, _ := f.srv.AddKVNamespace("b")
	_ = f.srv.PutKV(a, cftest.KVPair{Key: "k", Value: []byte("v")})
	_ = f.srv.PutKV(b, cftest.KVPair{Key: "k", Value: []byte("v")})
	m := f.backup(t)
	if _, err := f.restore(m.ID, engine.RestoreOptions{}, "--to-namespace", "a"); errclass.Of(err) != errclass.Usage {
		t.Fatalf("--to-namespace with two sources: %v", err)
	}
	if _, err := f.restore(m.ID, engine.RestoreOptions{}, "--kv-namespace", "nope"); errclass.Of(err) != errclass.NotFound {
		t.Fatalf("unknown source: %v", err)
	}
	if _, err := f.restore(m.ID, engine.RestoreOptions{}, "--kv-namespace", "a", "--to-namespace", "gone"); errclass.Of(err) != errclass.NotFound {
		t.Fatalf("unknown target: %v", err)
	}
	if _, err := f.tryBackup("--kv-namespace", "nope"); errclass.Of(err) != errclass.NotFound {
		t.Fatalf("backup of an unknown namespace: %v", err)
	}
	if !source.Registered("kv") {
		t.Fatal("kv is not registered")
	}
}
