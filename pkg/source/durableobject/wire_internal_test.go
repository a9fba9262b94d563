package durableobject

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// TestFrameChunkRoundTrip: framing an import chunk replaces exactly the long canonical base64 BLOBs
// of row lines, and unframing gives back the chunk byte for byte.
func TestFrameChunkRoundTrip(t *testing.T) {
	big := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0, 1, 2, 0xff, '\n', '"'}, 400)) // 3,200 chars
	short := base64.StdEncoding.EncodeToString([]byte("short"))
	// the same length, but not canonical (its last character carries bits base64 does not decode)
	odd := big[:len(big)-4] + "AAB="
	lines := []string{
		`{"t":"header","format":"cfbackup-do/2"}`,
		`{"t":"kv","k":"x","v":{"$t":"ab","v":"` + big + `"}}`, // a KV value: left as text
		`{"t":"row","table":"t","c":"bb","v":[{"$t":"ab","v":"` + big + `"},{"$t":"ab","v":"` + big + `"}],"r":1}`,
		`{"t":"row","table":"t","c":"bt","v":[{"$t":"ab","v":"` + short + `"},"{\"$t\":\"ab\",\"v\":\"` + big + `"],"r":2}`,
		`{"t":"row","table":"t","c":"b","v":[{"$t":"ab","v":"` + odd + `"}],"r":3}`,
		`{"t":"end","kv":1,"tables":0,"rows":3,"schema":0}`,
	}
	chunk := []byte(strings.Join(lines, "\n") + "\n")
	framed, ok := frameChunk(chunk)
	if !ok {
		t.Fatal("nothing framed")
	}
	if n := bytes.Count(framed, []byte(`"v":"`+"\x00\x00\x00\x09\x60")); n != 2 {
		t.Errorf("%d frames, want 2 (the two BLOBs of row 1)", n)
	}
	if want := len(chunk) - 2*(len(big)-5-len(big)/4*3); len(framed) != want {
		t.Errorf("framed chunk %d bytes, want %d (plain %d): the BLOBs were not sent raw", len(framed), want, len(chunk))
	}
	back, err := unframe(framed)
	if err != nil || !bytes.Equal(back, chunk) {
		i := 0
		for i < len(back) && i < len(chunk) && back[i] == chunk[i] {
			i++
		}
		t.Fatalf("unframe: %v; differs from byte %d of %d (%d): %.80q", err, i, len(chunk), len(back), back[max(0, i-20):])
	}
	if _, ok := frameChunk([]byte(lines[1] + "\n" + lines[3] + "\n")); ok {
		t.Error("framed a KV value or a string that only looks like a BLOB")
	}
	for _, bad := range [][]byte{framed[:bytes.IndexByte(framed, 0)+3], framed[:bytes.IndexByte(framed, 0)+100]} {
		if _, err := unframe(bad); !errors.Is(err, ErrFormat) {
			t.Errorf("truncated frame: %v, want ErrFormat", err)
		}
	}
}

// TestValidRowSkipsOnlyBase64: a row line's long base64 strings are left out of the JSON check, and
// a line that is not JSON is still refused, wherever the fault is.
func TestValidRowSkipsOnlyBase64(t *testing.T) {
	big := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7, 0, 1}, 600))
	d := &Decoder{}
	for line, want := range map[string]bool{
		`{"t":"row","table":"t","c":"bb","v":[{"$t":"ab","v":"` + big + `"},{"$t":"ab","v":"` + big + `"}],"r":1}`: true,
		`{"t":"row","table":"t","c":"b","v":[{"$t":"ab","v":"` + big + `"}],"r":1`:                                 false, // no closing brace
		`{"t":"row","table":"t","c":"b","v":[{"$t":"ab","v":"` + big + `"} {"r":1}]}`:                              false,
		`{"t":"row","table":"t","c":"b","v":[{"$t":"ab","v":"` + big[:500] + "\x01" + big[500:] + `"}],"r":1}`:     false, // a control character
		`{"t":"row","table":"t","c":"t","v":["{\"$t\":\"ab\",\"v\":\"` + big + `\"],"r":1}`:                        false, // an escaped quote: the string does not end there
	} {
		if got := d.validRow([]byte(line)); got != want || json.Valid([]byte(line)) != want {
			t.Errorf("validRow(%.90q…) = %v, json.Valid %v, want %v", line, got, json.Valid([]byte(line)), want)
		}
	}
}
