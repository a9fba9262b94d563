package durableobject

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/manifest"
)

var (
	idA = strings.Repeat("a", 64)
	idB = strings.Repeat("b", 64)
	idC = strings.Repeat("c", 64)
	idD = strings.Repeat("d", 64)
)

func writeMap(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ids.map")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadIDMap(t *testing.T) {
	m, err := ReadIDMap(writeMap(t, "# comment\n\n"+strings.ToUpper(idA)+"  "+idB+"\n"+idC+"\tname:tickets/2026 ü\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := IDMap{idA: idB, idC: "name:tickets%2F2026%20%C3%BC"}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("map %v, want %v", m, want)
	}
	for _, tc := range []struct{ text, msg string }{
		{idA + "\n", "line 1: expected two fields"},
		{"# x\n" + idA + " xyz\n", `line 2: new object ID "xyz" is not 64 hex digits`},
		{"abc " + idB + "\n", `line 1: old object ID "abc" is not 64 hex digits`},
		{idA + " " + idB + " " + idC + "\n", "line 1: more than two fields"},
		{idA + " name:\n", "line 1: name \"\" must be 1 to 2048 bytes"},
		{idA + " " + idB + "\n" + idA + " name:x\n", "line 2: object " + idA + " is mapped twice"},
		{"# only comments\n", "maps no object"},
	} {
		_, err := ReadIDMap(writeMap(t, tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.msg) || errclass.Of(err) != errclass.Usage {
			t.Errorf("%q: %v, want a usage error containing %q", tc.text, err, tc.msg)
		}
	}
	if _, err := ReadIDMap(filepath.Join(t.TempDir(), "missing")); errclass.Of(err) != errclass.Usage {
		t.Errorf("missing file: %v", err)
	}
}

func TestPlaceObjects(t *testing.T) {
	items := []manifest.Item{
		{ObjectID: idA, ObjectName: "alice", ItemRef: sized(10)},
		{ObjectID: idB, ItemRef: sized(20)},                      // mapped to an ID
		{ObjectID: idC, ObjectName: "carol", ItemRef: sized(30)}, // the map wins over the name
		{ObjectID: idD, ItemRef: sized(40)},                      // unplaceable
	}
	m := IDMap{idB: strings.Repeat("e", 64), idC: NameRef("carol 2")}
	p := NamespaceRestore{items: items, Objects: 4, Bytes: 100}
	placeObjects(&p, m, false)
	if p.Placement.ByName != 1 || p.Placement.ByMap != 2 || !reflect.DeepEqual(p.Placement.Unplaceable, []string{idD}) || p.Objects != 4 {
		t.Fatalf("placement %+v, objects %d", p.Placement, p.Objects)
	}
	want := map[string]string{idA: "name:alice", idB: strings.Repeat("e", 64), idC: "name:carol%202"}
	if !reflect.DeepEqual(p.address, want) {
		t.Fatalf("addresses %v, want %v", p.address, want)
	}
	err := unplaceable([]NamespaceRestore{p})
	if !errors.Is(err, ErrUnplaceable) || errclass.Of(err) != errclass.Refused || !strings.Contains(err.Error(), idD) || !strings.Contains(err.Error(), "--skip-unplaceable") {
		t.Fatalf("unplaceable: %v", err)
	}

	p = NamespaceRestore{items: items, Objects: 4, Bytes: 100}
	placeObjects(&p, nil, true)
	if p.Objects != 2 || p.Bytes != 40 || len(p.items) != 2 || !p.Placement.Skipped {
		t.Fatalf("--skip-unplaceable kept %d objects (%d bytes): %+v", p.Objects, p.Bytes, p.Placement)
	}
	if err := unplaceable([]NamespaceRestore{p}); err != nil {
		t.Fatalf("skipped objects still refused: %v", err)
	}
}

func sized(n int64) archive.ItemRef { return archive.ItemRef{Size: n} }
