package seal

import (
	"errors"
	"testing"
)

func TestEnvelopeRoundTripAndRefusals(t *testing.T) {
	key := DeriveKey([]byte("writer secret"), "test envelope v1")
	type doc struct{ Names []string }
	b, err := SealJSON(key, "TESTENV1", doc{Names: []string{"a/b", "secret-name"}})
	if err != nil {
		t.Fatal(err)
	}
	var got doc
	if err := OpenJSON(key, b, "TESTENV1", 1<<20, &got); err != nil || len(got.Names) != 2 || got.Names[1] != "secret-name" {
		t.Fatalf("round trip: %v %+v", err, got)
	}
	for i := range b { // the plaintext never shows
		if string(b[i:min(i+11, len(b))]) == "secret-name" {
			t.Fatal("plaintext in the envelope")
		}
	}
	if err := OpenJSON(key, b, "OTHERKND", 1<<20, &got); !errors.Is(err, ErrNotEnvelope) {
		t.Fatalf("another magic: %v", err)
	}
	if err := OpenJSON(DeriveKey([]byte("other"), "test envelope v1"), b, "TESTENV1", 1<<20, &got); !errors.Is(err, ErrOpen) {
		t.Fatalf("another key: %v", err)
	}
	flipped := append([]byte(nil), b...)
	flipped[len(flipped)-1] ^= 1
	kind := errors.New("test index unreadable")
	if err := OpenEnvelope(key, flipped, "TESTENV1", "a test index", kind, &got); !errors.Is(err, kind) || err.Error() != "test index unreadable: "+ErrOpen.Error() {
		t.Fatalf("damaged: %v", err)
	}
	if err := OpenJSON(key, b, "TESTENV1", 4, &got); err == nil {
		t.Fatal("a limit below the JSON size still decoded")
	}
}
