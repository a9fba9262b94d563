package manifest_test

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"io"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/manifest"
)

// sealRaw encrypts arbitrary gzip content as a catalogue, the way a forger with the public key could.
func sealGzip(t *testing.T, rcp age.Recipient, write func(w io.Writer)) string {
	t.Helper()
	var buf bytes.Buffer
	enc, err := age.Encrypt(&buf, rcp)
	if err != nil {
		t.Fatal(err)
	}
	zw, _ := gzip.NewWriterLevel(enc, gzip.BestCompression)
	write(zw)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

// A gzip bomb in the catalogue (a few KB that inflate to 64 MiB) is stopped at the bound the manifest's
// item count allows, and a catalogue whose item count differs from its manifest's is malformed.
func TestOpenCatalogueBounded(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	bomb := sealGzip(t, id.Recipient(), func(w io.Writer) {
		io.WriteString(w, `{"items":[{"component":"d1","source":"x","kind":"table","rows":0,"pad":"`)
		chunk := []byte(strings.Repeat("A", 1<<20))
		for i := 0; i < 64; i++ {
			w.Write(chunk)
		}
		io.WriteString(w, `"}]}`)
	})
	if len(bomb) > 1<<20 {
		t.Fatalf("bomb is %d bytes: not a bomb", len(bomb))
	}
	m := &manifest.Manifest{Format: 2, ID: "0123456789abcdef", Items: 1, Catalogue: bomb}
	_, err = m.OpenCatalogue([]age.Identity{id})
	if !errors.Is(err, manifest.ErrFormat) || !strings.Contains(err.Error(), "decompresses to more than") {
		t.Fatalf("gzip bomb: %v", err)
	}
	// The same content is fine when the manifest claims enough items to need it… but then the count
	// must match.
	m.Items = 5000
	if _, err := m.OpenCatalogue([]age.Identity{id}); !errors.Is(err, manifest.ErrFormat) || !strings.Contains(err.Error(), "holds 1 items") {
		t.Fatalf("item count mismatch: %v", err)
	}
	// A genuine catalogue opens.
	c := &manifest.Catalogue{Items: []manifest.Item{{Component: "d1", Source: "x", Kind: "table", Table: "t"}}}
	ok := &manifest.Manifest{Format: 2, ID: "0123456789abcdef", Items: 1}
	if err := ok.SealCatalogue(c, []age.Recipient{id.Recipient()}); err != nil {
		t.Fatal(err)
	}
	if got, err := ok.OpenCatalogue([]age.Identity{id}); err != nil || len(got.Items) != 1 {
		t.Fatalf("genuine catalogue: %v", err)
	}
}
