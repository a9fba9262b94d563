package keys

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/internal/testutil/tools"
)

func roundTrip(t *testing.T, recs []age.Recipient, ids []age.Identity) {
	t.Helper()
	var ct bytes.Buffer
	w, err := age.Encrypt(&ct, recs...)
	if err != nil {
		t.Fatalf("encrypt: %v", err)
	}
	io.WriteString(w, "hello")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := age.Decrypt(&ct, ids...)
	if err != nil {
		t.Fatalf("decrypt: %v", err)
	}
	got, _ := io.ReadAll(r)
	if string(got) != "hello" {
		t.Fatalf("got %q", got)
	}
}

func TestGenerateWriteReadRoundTrip(t *testing.T) {
	for _, pq := range []bool{false, true} {
		id, rec, err := Generate(pq)
		if err != nil {
			t.Fatal(err)
		}
		if pq != strings.HasPrefix(rec, "age1pq1") {
			t.Fatalf("pq=%v recipient %.10s", pq, rec)
		}
		path := filepath.Join(t.TempDir(), "key.txt")
		if err := WriteIdentityFile(path, id, rec); err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(path)
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("mode %o", fi.Mode().Perm())
		}
		if err := CheckPermissions(path); err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(path)
		lines := strings.Split(string(data), "\n")
		if !strings.HasPrefix(lines[0], "# created: ") || lines[1] != "# public key: "+rec || lines[2] != id {
			t.Fatalf("layout differs from age-keygen: %q", lines[:2])
		}
		if err := WriteIdentityFile(path, id, rec); !errors.Is(err, ErrExists) {
			t.Fatalf("overwrite: %v", err)
		}
		ids, err := ReadIdentityFile(path)
		if err != nil || len(ids) != 1 {
			t.Fatalf("read: %v %d", err, len(ids))
		}
		recs, err := ParseRecipients([]string{"# ops", "", rec})
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, recs, ids)
	}
}

func TestMixedRecipientsRefused(t *testing.T) {
	_, classic, _ := Generate(false)
	_, pq, _ := Generate(true)
	_, err := ParseRecipients([]string{classic, pq})
	if !errors.Is(err, ErrMixedRecipients) {
		t.Fatalf("want ErrMixedRecipients, got %v", err)
	}
	// Prove age itself refuses the mix, i.e. the check is needed.
	r1, _ := age.ParseX25519Recipient(classic)
	r2, _ := age.ParseHybridRecipient(pq)
	if _, err := age.Encrypt(io.Discard, r1, r2); err == nil {
		t.Fatal("age v1.3.2 accepted a mix of classic and post-quantum recipients")
	}
	// Several of one kind are fine.
	_, classic2, _ := Generate(false)
	if _, err := ParseRecipients([]string{classic, classic2}); err != nil {
		t.Fatal(err)
	}
}

func TestParseRecipientsErrors(t *testing.T) {
	id, _, _ := Generate(false)
	for _, tc := range []struct {
		line, want string
		noLeak     bool
	}{
		{"age1notbech32", "age1notbech32", false},
		{"bogus-key", "bogus-key", false},
		{"ssh-ed25519 AAAA", "SSH", false},
		{id, "secret key", true},
	} {
		_, err := ParseRecipients([]string{"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p", tc.line})
		if !errors.Is(err, ErrBadRecipient) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "recipient 2") {
			t.Errorf("%.12s: %v", tc.line, err)
		}
		if tc.noLeak && strings.Contains(err.Error(), id[16:]) {
			t.Errorf("secret key leaked into error: %v", err)
		}
	}
	if _, err := ParseRecipients([]string{"# only a comment", " "}); !errors.Is(err, ErrNoKeys) {
		t.Errorf("empty: %v", err)
	}
}

func TestReadRecipientsFile(t *testing.T) {
	_, r1, _ := Generate(false)
	_, r2, _ := Generate(false)
	path := filepath.Join(t.TempDir(), "recipients.txt")
	os.WriteFile(path, []byte("# ops\n"+r1+"\n\n# break-glass\n"+strings.ToUpper(r2)+"\n"), 0o644)
	recs, err := ReadRecipientsFile(path)
	if err != nil || len(recs) != 2 {
		t.Fatalf("%v %d", err, len(recs))
	}
	if recs[1].(*age.X25519Recipient).String() != r2 {
		t.Fatal("upper-case recipient not canonicalised")
	}
}

func TestReadIdentityFileErrors(t *testing.T) {
	_, rec, _ := Generate(false)
	dir := t.TempDir()
	p := filepath.Join(dir, "pub.txt")
	os.WriteFile(p, []byte("# public key only\n"+rec+"\n"), 0o600)
	if _, err := ReadIdentityFile(p); !errors.Is(err, ErrBadIdentity) || !strings.Contains(err.Error(), "public key") {
		t.Fatalf("recipient as identity: %v", err)
	}
	p = filepath.Join(dir, "bad.txt")
	os.WriteFile(p, []byte("AGE-SECRET-KEY-1QQQQ\n"), 0o600)
	if _, err := ReadIdentityFile(p); !errors.Is(err, ErrBadIdentity) || strings.Contains(err.Error(), "QQQQ") {
		t.Fatalf("malformed: %v", err)
	}
	p = filepath.Join(dir, "empty.txt")
	os.WriteFile(p, []byte("# nothing\n"), 0o600)
	if _, err := ReadIdentityFile(p); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("empty: %v", err)
	}
	if _, err := ReadIdentityFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing: %v", err)
	}
	id, rec, _ := Generate(false)
	p = filepath.Join(dir, "loose.txt")
	os.WriteFile(p, []byte(id+"\n"), 0o644)
	if _, err := ReadIdentityFile(p); err != nil {
		t.Fatalf("0644 file must still load: %v", err)
	}
	if err := CheckPermissions(p); !errors.Is(err, ErrInsecurePermissions) {
		t.Fatalf("perm: %v", err)
	}
	_ = rec
}

func TestFingerprint(t *testing.T) {
	_, rec, _ := Generate(false)
	fp := Fingerprint(rec)
	if !strings.HasPrefix(fp, "sha256:") || len(fp) != len("sha256:")+16 {
		t.Fatalf("%s", fp)
	}
	if Fingerprint(" "+strings.ToUpper(rec)+"\n") != fp {
		t.Fatal("fingerprint not canonical")
	}
	_, rec2, _ := Generate(false)
	if Fingerprint(rec2) == fp {
		t.Fatal("collision")
	}
	// Stable across releases: a fixed key has a fixed fingerprint.
	const k = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
	if got := Fingerprint(k); got != "sha256:cf7e568231315068" {
		t.Fatal(got)
	}
}

// The real age CLI decrypts with a file written by WriteIdentityFile.
func TestIdentityFileWorksWithAgeCLI(t *testing.T) {
	tools.Require(t, "age")
	id, rec, _ := Generate(false) // age 1.1.1 on this machine predates post-quantum keys
	dir := t.TempDir()
	key := filepath.Join(dir, "key.txt")
	if err := WriteIdentityFile(key, id, rec); err != nil {
		t.Fatal(err)
	}
	recs, _ := ParseRecipients([]string{rec})
	var ct bytes.Buffer
	w, _ := age.Encrypt(&ct, recs...)
	io.WriteString(w, "escape hatch")
	w.Close()
	cmd := exec.Command("age", "-d", "-i", key)
	cmd.Stdin = &ct
	out, err := cmd.Output()
	if err != nil || string(out) != "escape hatch" {
		t.Fatalf("age -d: %v %q", err, out)
	}
}
