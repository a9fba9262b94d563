// Package seal authenticates the plaintext JSON objects of a repository (config.json, manifests,
// records) with keys derived from the repository's writer secret.
//
// A bucket writer — someone holding only the repository bucket's credentials — can put any object,
// so anything cfbackup decides on (which recipients to encrypt to, which snapshot is the latest, what
// retention keeps) must come from an object such a person cannot make. Backup hosts hold the writer
// secret already (for the R2 index's keyed hashes); restore hosts unwrap it from keys/writer.age with
// their identity. A MAC is HMAC-SHA256 over the object's canonical JSON without its "mac" member,
// with a key derived per purpose, so a MAC made for one kind of object is never valid for another.
package seal

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Purposes: a MAC is only valid for the kind of object it was made for.
const (
	PurposeConfig   = "config"
	PurposeManifest = "manifest"
	PurposeRecord   = "record"
)

// Field is the JSON member that carries an object's MAC.
const Field = "mac"

// prefix names the MAC algorithm inside the field, so a later one can be told apart.
const prefix = "hmac-sha256:"

var (
	// ErrMissing: the object carries no MAC.
	ErrMissing = errors.New("not authenticated (no mac)")
	// ErrMismatch: the MAC does not match: the object was made or changed without the writer secret.
	ErrMismatch = errors.New("authentication failed (mac does not match)")
)

// Key authenticates objects of one repository. The zero value is not usable; make one with NewKey.
type Key struct {
	secret []byte
	id     string
}

// NewKey derives the authentication keys from the writer secret.
func NewKey(secret []byte) *Key {
	s := append([]byte(nil), secret...)
	return &Key{secret: s, id: "wk:" + hex.EncodeToString(derive(s, "cfbackup key id v2"))[:16]}
}

// Secret is a copy of the writer secret, for the R2 index's keyed hashes (pkg/source/r2).
func (k *Key) Secret() []byte { return append([]byte(nil), k.secret...) }

// ID names the writer secret without revealing it (a host can pin it: CFBACKUP_REPOSITORY_KEY_ID).
func (k *Key) ID() string { return k.id }

func derive(secret []byte, label string) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(label))
	return h.Sum(nil)
}

// MAC computes the MAC of raw (a JSON object; its own "mac" member, if any, is left out).
func (k *Key) MAC(purpose string, raw []byte) (string, error) {
	c, err := Canonical(raw, Field)
	if err != nil {
		return "", err
	}
	h := hmac.New(sha256.New, derive(k.secret, "cfbackup "+purpose+" mac v2"))
	h.Write(c)
	return prefix + hex.EncodeToString(h.Sum(nil)), nil
}

// Sign returns raw with its "mac" member set (canonical form, which every reader re-derives).
func (k *Key) Sign(purpose string, raw []byte) ([]byte, error) {
	mac, err := k.MAC(purpose, raw)
	if err != nil {
		return nil, err
	}
	return withField(raw, Field, mac)
}

// Verify checks raw's "mac" member. ErrMissing or ErrMismatch (wrapped) when it does not authenticate.
func (k *Key) Verify(purpose string, raw []byte) error {
	got, err := fieldOf(raw, Field)
	if err != nil {
		return err
	}
	if got == "" {
		return ErrMissing
	}
	want, err := k.MAC(purpose, raw)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(got, prefix) || !hmac.Equal([]byte(got), []byte(want)) {
		return ErrMismatch
	}
	return nil
}

// HasMAC reports whether raw carries a "mac" member.
func HasMAC(raw []byte) bool {
	s, err := fieldOf(raw, Field)
	return err == nil && s != ""
}

// Canonical is the byte string a MAC or hash is taken over: the JSON object raw without its member
// named without, keys sorted by byte order at every level, no insignificant whitespace, strings
// escaped as Go's encoding/json does with HTML escaping off, numbers as written. It works on the
// stored bytes, so members a newer version adds are covered too.
// (`jq -cS 'del(.mac)' | tr -d '\n'` gives the same bytes.)
func Canonical(raw []byte, without string) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	if without != "" {
		delete(m, without)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

func fieldOf(raw []byte, name string) (string, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", fmt.Errorf("not a JSON object: %w", err)
	}
	v, ok := m[name]
	if !ok {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", fmt.Errorf("%s is not a string", name)
	}
	return s, nil
}

// withField returns raw (a JSON object) with member name set to value, indented for readers.
func withField(raw []byte, name, value string) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	m[name] = value
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
