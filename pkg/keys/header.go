package keys

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"filippo.io/age"
)

// Key rotation rewrites the header of every age file of a repository and keeps its payload bytes.
//
// An age file is header ‖ 16-byte nonce ‖ STREAM payload. The header wraps one random file key per
// recipient (one or more stanzas each) and ends with an HMAC over the header keyed from the file key;
// the payload is encrypted under a key derived from the file key and the nonce. So a new header that
// wraps the SAME file key to other recipients, with its MAC recomputed, followed by the unchanged
// payload is a valid age file (age's own spec, C2SP age.md "Header" and "Payload"). filippo.io/age
// (v1.3) exposes the reading half (ExtractHeader, DecryptHeader) but no way to write a header for a
// given file key, so the writing half — stanza and MAC encoding — is here, following the spec.

// ErrHeader: the bytes are not an age header this package can rewrap.
var ErrHeader = errors.New("not a valid age header")

// MaxHeaderSize bounds how much of an object is read to find its header (age itself refuses 2 MiB).
const MaxHeaderSize = 2 << 20

const (
	ageIntro      = "age-encryption.org/v1\n"
	padStanzaType = "cfbackup-pad"
	bytesPerLine  = 48
)

var b64 = base64.RawStdEncoding

// HeaderLen returns the length of the age header at the start of b (through the newline after the
// MAC): the offset where the nonce and payload begin. b must hold the whole header.
func HeaderLen(b []byte) (int, error) {
	if !bytes.HasPrefix(b, []byte(ageIntro)) {
		return 0, fmt.Errorf("%w: no age intro line (armored or not an age file)", ErrHeader)
	}
	i := bytes.Index(b, []byte("\n---"))
	if i < 0 {
		return 0, fmt.Errorf("%w: no MAC line within %d bytes", ErrHeader, len(b))
	}
	j := bytes.IndexByte(b[i+1:], '\n')
	if j < 0 {
		return 0, fmt.Errorf("%w: MAC line not terminated", ErrHeader)
	}
	return i + 1 + j + 1, nil
}

// RewrapHeader unwraps the file key of header (an age header, as HeaderLen delimits it) with ids and
// returns a new header that wraps the same file key to rcps, so the old payload decrypts under the new
// header. With padTo > 0 and a new header shorter than padTo, a stanza of an unknown type (which every
// age implementation skips) pads it to exactly padTo bytes: the object keeps its size, and a reader
// that knows the size from a manifest written before the rewrap still reads it.
func RewrapHeader(header []byte, ids []age.Identity, rcps []age.Recipient, padTo int) ([]byte, error) {
	fileKey, err := age.DecryptHeader(header, ids...)
	if err != nil {
		return nil, err
	}
	return WrapFileKey(fileKey, rcps, padTo)
}

// WrapFileKey builds an age header wrapping fileKey to rcps (see RewrapHeader for padTo).
func WrapFileKey(fileKey []byte, rcps []age.Recipient, padTo int) ([]byte, error) {
	if len(rcps) == 0 {
		return nil, errors.New("no recipients to wrap the file key to")
	}
	var stanzas []*age.Stanza
	var labels []string
	for i, r := range rcps {
		var (
			ss  []*age.Stanza
			l   []string
			err error
		)
		if rl, ok := r.(age.RecipientWithLabels); ok {
			ss, l, err = rl.WrapWithLabels(fileKey)
		} else {
			ss, err = r.Wrap(fileKey)
		}
		if err != nil {
			return nil, fmt.Errorf("wrap the file key for recipient #%d: %w", i, err)
		}
		sort.Strings(l)
		if i == 0 {
			labels = l
		} else if !slices.Equal(labels, l) {
			return nil, fmt.Errorf("%w: recipients with incompatible labels %v and %v", ErrMixedRecipients, labels, l)
		}
		stanzas = append(stanzas, ss...)
	}
	body := marshalStanzas(stanzas)
	if padTo > 0 {
		// MAC line: "--- " + 43 base64 characters + "\n".
		short := padTo - (len(body) + 4 + 43 + 1)
		if pad, ok := padStanza(short); ok {
			body = append(body, pad...)
		}
	}
	return appendMAC(body, fileKey)
}

func marshalStanzas(ss []*age.Stanza) []byte {
	var b bytes.Buffer
	b.WriteString(ageIntro)
	for _, s := range ss {
		b.WriteString("-> " + s.Type)
		for _, a := range s.Args {
			b.WriteString(" " + a)
		}
		b.WriteByte('\n')
		enc := b64.EncodeToString(s.Body)
		for len(enc) >= 64 {
			b.WriteString(enc[:64] + "\n")
			enc = enc[64:]
		}
		// A body always ends with a short (possibly empty) line.
		b.WriteString(enc + "\n")
	}
	return b.Bytes()
}

// padStanza is a stanza of exactly n bytes: its type, one argument of 'p's, and an empty body. ok is
// false when no stanza has that size (n < 17, or 18): the header then keeps its own size.
func padStanza(n int) (pad []byte, ok bool) {
	base := len("-> " + padStanzaType + "\n\n")
	switch {
	case n == base:
		return []byte("-> " + padStanzaType + "\n\n"), true
	case n >= base+2:
		return []byte("-> " + padStanzaType + " " + strings.Repeat("p", n-base-1) + "\n\n"), true
	default:
		return nil, false
	}
}

func appendMAC(body, fileKey []byte) ([]byte, error) {
	mk, err := hkdf.Key(sha256.New, fileKey, nil, "header", 32)
	if err != nil {
		return nil, err
	}
	body = append(body, "---"...)
	h := hmac.New(sha256.New, mk)
	h.Write(body)
	return append(append(body, ' '), b64.EncodeToString(h.Sum(nil))+"\n"...), nil
}

// FitsSize reports whether a header wrapping to rcps can be padded to n bytes: used to decide up
// front whether a rewrap keeps object sizes.
func FitsSize(rcps []age.Recipient, n int) bool {
	h, err := WrapFileKey(make([]byte, 16), rcps, n)
	return err == nil && len(h) == n
}
