package r2

import (
	"strings"
	"unicode/utf8"
)

// Object keys are arbitrary UTF-8 up to 1024 bytes ("..", "a/" beside "a", "%", control characters).
// Item names (tar entry names) and --to-dir paths must be clean relative paths that a file system can
// hold, so keys are mapped to paths by EncodePaths. The mapping is injective and keeps the key's
// folders as directories; the catalogue keeps the real key, so it never needs to be reversed.
//
//   - each "/"-separated segment is escaped: bytes '%', '\', control characters (< 0x20, 0x7f) and
//     invalid UTF-8 become %XX; an empty segment becomes "%"; "." and ".." become %2E and %2E%2E;
//   - a segment longer than maxSegment bytes is cut (at a character boundary) into pieces joined by
//     "%+/" (a directory ending in "%+" continues the next path element), so no file name exceeds
//     the 255-byte limit of common file systems;
//   - a file whose path is also a directory of another key ("a" beside "a/b") gets the suffix "%~".
//
// '%' in a key is always escaped, so "%", "%+" and "%~" can only be markers.
const maxSegment = 200

// encodeKey maps one key to a relative path, before the file/directory collision rule.
func encodeKey(key string) string {
	var b strings.Builder
	for i, seg := range strings.Split(key, "/") {
		if i > 0 {
			b.WriteByte('/')
		}
		switch seg {
		case "":
			b.WriteString("%")
			continue
		case ".":
			b.WriteString("%2E")
			continue
		case "..":
			b.WriteString("%2E%2E")
			continue
		}
		n := 0 // bytes of the current path element
		for len(seg) > 0 {
			r, size := utf8.DecodeRuneInString(seg)
			var piece string
			if (r == utf8.RuneError && size <= 1) || r < 0x20 || r == 0x7f || r == '%' || r == '\\' {
				piece = "%" + strings.ToUpper(hex2(seg[0]))
				size = 1
			} else {
				piece = seg[:size]
			}
			if n+len(piece) > maxSegment {
				b.WriteString("%+/")
				n = 0
			}
			b.WriteString(piece)
			n += len(piece)
			seg = seg[size:]
		}
	}
	return b.String()
}

func hex2(c byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[c>>4], digits[c&15]})
}

// EncodePaths maps keys to relative paths (see above) that never collide, even where a key is a
// prefix folder of another. The result is keyed by object key.
func EncodePaths(keys []string) map[string]string {
	out := make(map[string]string, len(keys))
	dirs := map[string]bool{}
	for _, k := range keys {
		p := encodeKey(k)
		out[k] = p
		for i := strings.LastIndexByte(p, '/'); i > 0; i = strings.LastIndexByte(p[:i], '/') {
			if dirs[p[:i]] {
				break
			}
			dirs[p[:i]] = true
		}
	}
	for k, p := range out {
		if dirs[p] {
			out[k] = p + "%~"
		}
	}
	return out
}

// ItemName is the catalogue item (tar entry) name of an object whose encoded path is p.
func ItemName(bucket, p string) string { return Component + "/" + bucket + "/" + p }
