package errclass

import (
	"errors"
	"fmt"
	"testing"
)

var errTest = New(NotFound, "test thing missing")

func TestSentinelMatchesItselfAndItsClassOnly(t *testing.T) {
	err := fmt.Errorf("ctx: %w", errTest)
	if !errors.Is(err, errTest) || !errors.Is(err, NotFound) {
		t.Fatal("sentinel does not match itself or its class")
	}
	if errors.Is(err, Refused) || errors.Is(err, Usage) {
		t.Fatal("sentinel matches another class")
	}
	if Of(err) != NotFound || ClassOf(errTest) != NotFound || ClassOf(err) != nil {
		t.Fatalf("Of/ClassOf: %v %v %v", Of(err), ClassOf(errTest), ClassOf(err))
	}
	if got := Texts(err); len(got) != 1 || got[0] != "test thing missing" {
		t.Fatalf("Texts = %q", got)
	}
}

func TestWrapKeepsMessageAndChain(t *testing.T) {
	base := errors.New("boom at https://example.invalid/x")
	w := Wrap(Remote, base)
	if w.Error() != base.Error() || !errors.Is(w, base) || Of(w) != Remote {
		t.Fatalf("Wrap: %v %v", w, Of(w))
	}
	if Wrap(Remote, nil) != nil {
		t.Fatal("Wrap(nil) is not nil")
	}
	// A wrapped error quotes names: only the class text may be recorded.
	if got := Texts(w); len(got) != 1 || got[0] != Remote.Error() {
		t.Fatalf("Texts = %q", got)
	}
	if Of(errors.New("plain")) != nil || Texts(nil) != nil {
		t.Fatal("plain errors have no class")
	}
}

func TestOfPicksTheMostSpecificClass(t *testing.T) {
	err := errors.Join(Wrap(Remote, errors.New("a")), Wrap(Integrity, errors.New("b")))
	if Of(err) != Integrity {
		t.Fatalf("Of = %v, want integrity (ranked before remote)", Of(err))
	}
}
