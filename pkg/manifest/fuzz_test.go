package manifest_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"testing"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/manifest"
)

// FuzzDecodeManifest: Decode never panics, and whatever it accepts has a supported format and an id
// and survives Encode → Decode.
func FuzzDecodeManifest(f *testing.F) {
	m := sampleManifest()
	var buf bytes.Buffer
	if err := m.Encode(&buf); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte(`{"format":2,"id":"x"}`))
	f.Add([]byte(`{"format":1,"id":"x","duration":"1h","sources":[{"blocked":"2s"}]}`))
	f.Add([]byte(`{"format":1,"id":"x","time":"not a time"}`))
	f.Add([]byte(`null`))
	f.Add([]byte{0xff, 0xfe, '{'})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := manifest.Decode(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, manifest.ErrFormat) && !errors.Is(err, manifest.ErrVersion) {
				t.Fatalf("error without a sentinel: %v", err)
			}
			return
		}
		if m.ID == "" || m.Format > manifest.FormatVersion {
			t.Fatalf("accepted format %d id %q", m.Format, m.ID)
		}
		var out bytes.Buffer
		if err := m.Encode(&out); err != nil {
			return // e.g. a time outside year 0–9999 parsed but cannot be written back
		}
		if _, err := manifest.Decode(&out); err != nil {
			t.Fatalf("re-decoding an accepted manifest: %v\n%s", err, out.Bytes())
		}
	})
}

// FuzzOpenCatalogue: arbitrary catalogue strings never panic OpenCatalogue, whether or not they are
// age files the identity can open.
func FuzzOpenCatalogue(f *testing.F) {
	id := newIdentity(f)
	m := sampleManifest()
	if err := m.SealCatalogue(sampleCatalogue(), []age.Recipient{id.Recipient()}); err != nil {
		f.Fatal(err)
	}
	f.Add(m.Catalogue)
	raw, _ := base64.StdEncoding.DecodeString(m.Catalogue)
	f.Add(base64.StdEncoding.EncodeToString(raw[:len(raw)-20]))
	f.Add("")
	f.Add("YWdlLWVuY3J5cHRpb24ub3JnL3YxCi0+IFgyNTUxOSA=")
	f.Add("not base64!")
	f.Fuzz(func(t *testing.T, s string) {
		mm := sampleManifest()
		mm.Catalogue = s
		cat, err := mm.OpenCatalogue([]age.Identity{id})
		if err == nil && cat == nil {
			t.Fatal("nil catalogue without an error")
		}
	})
}
