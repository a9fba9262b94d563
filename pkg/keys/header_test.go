package keys

import (
	"bytes"
	"crypto/rand"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"filippo.io/age"
)

func genX25519(t *testing.T) (*age.X25519Identity, string) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return id, id.Recipient().String()
}

// TestRewrapHeaderKeepsPayload encrypts to two recipients, rewraps to a third while keeping the
// payload bytes and the size, and checks who can decrypt — with this package and with the age CLI.
func TestRewrapHeaderKeepsPayload(t *testing.T) {
	oldID, _ := genX25519(t)
	keepID, _ := genX25519(t)
	newID, _ := genX25519(t)
	plain := make([]byte, 200<<10)
	rand.Read(plain)
	var ct bytes.Buffer
	w, err := age.Encrypt(&ct, oldID.Recipient(), keepID.Recipient())
	if err != nil {
		t.Fatal(err)
	}
	w.Write(plain)
	w.Close()
	orig := ct.Bytes()
	n, err := HeaderLen(orig)
	if err != nil {
		t.Fatal(err)
	}
	hdr, err := RewrapHeader(orig[:n], []age.Identity{keepID}, []age.Recipient{newID.Recipient()}, n)
	if err != nil {
		t.Fatal(err)
	}
	if len(hdr) != n {
		t.Fatalf("rewrapped header is %d bytes, want the old %d (padded)", len(hdr), n)
	}
	out := append(append([]byte(nil), hdr...), orig[n:]...)
	if len(out) != len(orig) {
		t.Fatal("size changed")
	}
	dec, err := age.Decrypt(bytes.NewReader(out), newID)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(dec)
	if !bytes.Equal(got, plain) {
		t.Fatal("payload differs after rewrap")
	}
	for _, id := range []age.Identity{oldID, keepID} {
		if _, err := age.Decrypt(bytes.NewReader(out), id); err == nil {
			t.Fatal("a removed identity still decrypts the rewrapped file")
		}
	}
	// A tampered MAC is refused.
	bad := append([]byte(nil), out...)
	bad[n-3] ^= 1
	if _, err := age.Decrypt(bytes.NewReader(bad), newID); err == nil {
		t.Fatal("a header with a broken MAC decrypted")
	}
	// Growing (more recipients than before): no padding, still valid.
	hdr2, err := RewrapHeader(orig[:n], []age.Identity{keepID}, []age.Recipient{newID.Recipient(), oldID.Recipient(), keepID.Recipient()}, n)
	if err != nil || len(hdr2) <= n {
		t.Fatalf("grow: %d bytes, %v", len(hdr2), err)
	}
	if _, err := age.Decrypt(io.MultiReader(bytes.NewReader(hdr2), bytes.NewReader(orig[n:])), oldID); err != nil {
		t.Fatal(err)
	}

	agePath, err := exec.LookPath("age")
	if err != nil {
		t.Skip("age CLI not installed")
	}
	dir := t.TempDir()
	for name, b := range map[string][]byte{"new.txt": []byte(newID.String() + "\n"), "old.txt": []byte(oldID.String() + "\n"), "f.age": out} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err = exec.Command(agePath, "-d", "-i", filepath.Join(dir, "new.txt"), filepath.Join(dir, "f.age")).Output()
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("age CLI with the new identity: %v", err)
	}
	if err := exec.Command(agePath, "-d", "-i", filepath.Join(dir, "old.txt"), filepath.Join(dir, "f.age")).Run(); err == nil {
		t.Fatal("age CLI decrypted with the removed identity")
	}
}

func TestRewrapHeaderPQ(t *testing.T) {
	id, err := age.GenerateHybridIdentity()
	if err != nil {
		t.Fatal(err)
	}
	id2, _ := age.GenerateHybridIdentity()
	var ct bytes.Buffer
	w, _ := age.Encrypt(&ct, id.Recipient(), id2.Recipient())
	w.Write([]byte("hello"))
	w.Close()
	n, err := HeaderLen(ct.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	hdr, err := RewrapHeader(ct.Bytes()[:n], []age.Identity{id}, []age.Recipient{id2.Recipient()}, n)
	if err != nil || len(hdr) != n {
		t.Fatalf("%d %v", len(hdr), err)
	}
	dec, err := age.Decrypt(io.MultiReader(bytes.NewReader(hdr), bytes.NewReader(ct.Bytes()[n:])), id2)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(dec); string(b) != "hello" {
		t.Fatal(string(b))
	}
	if _, err := age.Decrypt(io.MultiReader(bytes.NewReader(hdr), bytes.NewReader(ct.Bytes()[n:])), id); err == nil {
		t.Fatal("removed PQ identity decrypts")
	}
}
