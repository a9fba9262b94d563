package seal

import (
	"bytes"
	"compress/gzip"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// The envelope of the side objects only writer-secret holders may read (R2 and KV incremental
// indexes, R2 resume journals): magic || nonce (12 bytes) || AES-256-GCM( gzip( JSON ) ), with the
// magic as additional data so one kind can never pass for another. A backup host needs to read back
// what it wrote (to reuse unchanged data) without an identity (invariant 2), and the store must not
// learn names (invariant 3): an AEAD keyed from the writer secret gives both.

// Envelope errors; callers wrap them in their own sentinels.
var (
	// ErrNotEnvelope: too short, or another kind's magic.
	ErrNotEnvelope = errors.New("not this kind of sealed object")
	// ErrOpen: written with another writer secret, or damaged.
	ErrOpen = errors.New("written with another writer secret, or damaged")
)

// DeriveKey is HMAC-SHA256(secret, label): one independent key per purpose (an envelope's AES-256
// key, a keyed hash of names).
func DeriveKey(secret []byte, label string) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(label))
	return h.Sum(nil)
}

// SealJSON seals v as JSON in the envelope with key and magic.
func SealJSON(key []byte, magic string, v any) ([]byte, error) {
	var plain bytes.Buffer
	zw := gzip.NewWriter(&plain)
	if err := json.NewEncoder(zw).Encode(v); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	aead, err := envelopeAEAD(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, len(magic)+aead.NonceSize(), len(magic)+aead.NonceSize()+plain.Len()+aead.Overhead())
	copy(out, magic)
	if _, err := rand.Read(out[len(magic):]); err != nil {
		return nil, err
	}
	return aead.Seal(out, out[len(magic):], plain.Bytes(), []byte(magic)), nil
}

// OpenEnvelope opens what SealJSON made into v, wrapping failures in kind ("not <what>", another
// secret or damage, malformed JSON) for the caller's messages.
func OpenEnvelope(key, b []byte, magic, what string, kind error, v any) error {
	switch err := OpenJSON(key, b, magic, 1<<30, v); {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotEnvelope):
		return fmt.Errorf("%w: not %s", kind, what)
	case errors.Is(err, ErrOpen):
		return fmt.Errorf("%w: %v", kind, ErrOpen)
	default:
		return fmt.Errorf("%w: %v", kind, err)
	}
}

// OpenJSON opens what SealJSON made into v, reading at most limit bytes of JSON (the decompressed
// size is bounded before it is parsed: the object is untrusted until it opens).
func OpenJSON(key, b []byte, magic string, limit int64, v any) error {
	aead, err := envelopeAEAD(key)
	if err != nil {
		return err
	}
	hdr := len(magic) + aead.NonceSize()
	if len(b) < hdr+aead.Overhead() || string(b[:len(magic)]) != magic {
		return ErrNotEnvelope
	}
	plain, err := aead.Open(nil, b[len(magic):hdr], b[hdr:], []byte(magic))
	if err != nil {
		return ErrOpen
	}
	zr, err := gzip.NewReader(bytes.NewReader(plain))
	if err != nil {
		return err
	}
	return json.NewDecoder(io.LimitReader(zr, limit)).Decode(v)
}

func envelopeAEAD(key []byte) (cipher.AEAD, error) {
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}
