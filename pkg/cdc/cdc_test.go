package cdc

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

func chunks(t *testing.T, data []byte, p Params) [][]byte {
	t.Helper()
	c := New(iotest.HalfReader(bytes.NewReader(data)), p)
	var out [][]byte
	for {
		b, err := c.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, bytes.Clone(b))
	}
}

func randomText(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + r.IntN(26))
		if r.IntN(60) == 0 {
			b[i] = '\n'
		}
	}
	return b
}

// The chunks put back together are the stream, every chunk is within bounds, and the mean is near Avg.
func TestChunksCoverStreamWithinBounds(t *testing.T) {
	p := Params{Min: 1 << 10, Avg: 4 << 10, Max: 16 << 10}
	data := randomText(1, 3<<20)
	cs := chunks(t, data, p)
	if got := bytes.Join(cs, nil); !bytes.Equal(got, data) {
		t.Fatal("chunks do not add up to the stream")
	}
	for i, c := range cs[:len(cs)-1] {
		if len(c) < p.Min || len(c) > p.Max {
			t.Fatalf("chunk %d has %d bytes, outside [%d, %d]", i, len(c), p.Min, p.Max)
		}
	}
	mean := len(data) / len(cs)
	if mean < p.Avg/2 || mean > p.Avg*2 {
		t.Fatalf("mean chunk size %d, want near %d", mean, p.Avg)
	}
}

// An edit in the middle changes only the chunks around it: boundaries resynchronise.
func TestEditChangesFewChunks(t *testing.T) {
	p := Params{Min: 1 << 10, Avg: 4 << 10, Max: 16 << 10}
	data := randomText(2, 4<<20)
	edited := append(bytes.Clone(data[:2<<20]), []byte("INSERT a changed row;")...)
	edited = append(edited, data[2<<20+7:]...)
	seen := map[[32]byte]bool{}
	for _, c := range chunks(t, data, p) {
		seen[sha256.Sum256(c)] = true
	}
	var fresh int
	for _, c := range chunks(t, edited, p) {
		if !seen[sha256.Sum256(c)] {
			fresh++
		}
	}
	if fresh == 0 || fresh > 3 {
		t.Fatalf("%d new chunks after one edit, want 1 to 3", fresh)
	}
}

func TestEmptyAndShortStreams(t *testing.T) {
	if cs := chunks(t, nil, Default); len(cs) != 0 {
		t.Fatalf("empty stream gave %d chunks", len(cs))
	}
	if cs := chunks(t, []byte("x"), Default); len(cs) != 1 || string(cs[0]) != "x" {
		t.Fatalf("one-byte stream gave %q", cs)
	}
}

func TestReadErrorIsReturned(t *testing.T) {
	boom := errors.New("boom")
	c := New(io.MultiReader(bytes.NewReader(randomText(3, 10<<10)), iotest.ErrReader(boom)), Default)
	for {
		_, err := c.Next()
		if err == nil {
			continue
		}
		if !errors.Is(err, boom) {
			t.Fatalf("got %v, want the read error", err)
		}
		return
	}
}

func TestParamsCheck(t *testing.T) {
	for _, p := range []Params{{}, {Min: 10, Avg: 24, Max: 100}, {Min: 64, Avg: 32, Max: 128}, {Min: 1, Avg: 2, Max: 2}} {
		if p.Check() == nil {
			t.Errorf("%+v accepted", p)
		}
	}
	if err := Default.Check(); err != nil {
		t.Fatal(err)
	}
}
