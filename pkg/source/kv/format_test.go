package kv

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/cfbackup/cfbackup/pkg/errclass"
)

func TestEntriesRoundTripAndHostileItems(t *testing.T) {
	var buf bytes.Buffer
	values := [][]byte{[]byte("text"), {0xff, 0, '\n', 0x80}, {}, []byte(strings.Repeat("x", 70000))}
	for i, v := range values {
		meta := []byte(nil)
		if i == 1 {
			meta = []byte(`{"a":[1,{"b":null}]}`)
		}
		if err := appendEntry(&buf, "key\n"+string(rune('a'+i)), int64(i*1000), meta, v); err != nil {
			t.Fatal(err)
		}
	}
	good := buf.Bytes()
	var got [][]byte
	n, err := ReadEntries(bytes.NewReader(good), func(e Entry, r io.Reader) error {
		b, err := io.ReadAll(r)
		got = append(got, b)
		return err
	})
	if err != nil || n != len(values) {
		t.Fatalf("%d entries, %v", n, err)
	}
	for i := range values {
		if !bytes.Equal(got[i], values[i]) {
			t.Fatalf("value %d differs", i)
		}
	}
	// A reader that skips values still checks them.
	if n, err := ReadEntries(bytes.NewReader(good), func(Entry, io.Reader) error { return nil }); err != nil || n != 4 {
		t.Fatalf("skipping reader: %d %v", n, err)
	}
	flip := append([]byte(nil), good...)
	flip[bytes.Index(flip, []byte("text"))] ^= 1
	long := append([]byte(`{"key":"`+strings.Repeat("k", 70000)), '\n')
	for name, in := range map[string][]byte{
		"flipped value":   flip,
		"truncated":       good[:len(good)-10],
		"no newline":      append(append([]byte(nil), good[:len(good)-1]...), 'x'),
		"header too long": long,
		"bad header":      []byte("{nope}\n"),
		"huge size":       []byte(`{"key":"k","size":99999999999,"sha256":"` + strings.Repeat("0", 64) + "\"}\n"),
		"empty key":       []byte(`{"key":"","size":0,"sha256":"` + strings.Repeat("0", 64) + "\"}\n\n"),
	} {
		_, err := ReadEntries(bytes.NewReader(in), func(Entry, io.Reader) error { return nil })
		if !errors.Is(err, ErrFormat) || errclass.Of(err) != errclass.Integrity {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestBoundariesAreContentDefined(t *testing.T) {
	n, hits := 200000, 0
	for i := range n {
		if boundary(string(rune(i)) + "key") {
			hits++
		}
	}
	if avg := n / hits; avg < 400 || avg > 650 {
		t.Fatalf("a boundary every %d keys, want about 512", avg)
	}
}

func TestAbsentItems(t *testing.T) {
	var got []string
	n, err := ReadAbsent(strings.NewReader("\"a/b\"\n\"sp ace\\n\"\n"), func(k string) error { got = append(got, k); return nil })
	if err != nil || n != 2 || got[1] != "sp ace\n" {
		t.Fatalf("%d %q %v", n, got, err)
	}
	for _, bad := range []string{"a\n", "\"\"\n", "\"" + strings.Repeat("k", 513) + "\"\n", "\"cut"} {
		if _, err := ReadAbsent(strings.NewReader(bad), func(string) error { return nil }); !errors.Is(err, ErrFormat) {
			t.Errorf("%.20q: %v", bad, err)
		}
	}
}
