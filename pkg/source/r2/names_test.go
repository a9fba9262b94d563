package r2

import (
	"slices"
	"strings"
	"testing"

	"github.com/cfbackup/cfbackup/pkg/archive"
)

func TestEncodePathsAwkwardKeys(t *testing.T) {
	keys := []string{"a", "a/", "a/b", "..", "../x", "./y", "%41", "A", "back\\slash", "tab\there", "ünïcødé/ファイル.txt",
		"/leading", "double//slash", "trailing/", strings.Repeat("k", 1024), strings.Repeat("é", 300), "with space", "a%~", "x/%+"}
	paths := EncodePaths(keys)
	seen := map[string]string{}
	for _, k := range keys {
		p := paths[k]
		if other, dup := seen[p]; dup {
			t.Fatalf("keys %q and %q both map to %q", k, other, p)
		}
		seen[p] = k
		if err := archive.ValidName(ItemName("bucket", p)); err != nil {
			t.Errorf("key %q → %q: %v", k, p, err)
		}
		for _, el := range strings.Split(p, "/") {
			if len(el) > 255 {
				t.Errorf("key %q: path element of %d bytes", k[:20], len(el))
			}
		}
	}
	// No file is also a directory.
	for p := range seen {
		for q := range seen {
			if strings.HasPrefix(q, p+"/") {
				t.Errorf("%q is a file and a directory (%q)", p, q)
			}
		}
	}
	if paths["a/b"] != "a/b" || paths["with space"] != "with space" || paths["%41"] != "%2541" {
		t.Errorf("unexpected paths: %q %q %q", paths["a/b"], paths["with space"], paths["%41"])
	}
}

// TestFolderFinderMatchesEncodePaths: the streamed backup names items with folderFinder over the
// sorted listing (one key at a time) and must give exactly EncodePaths' names, including a folder
// key whose sub-keys come many keys later ("a" … "a-…" … "a/b").
func TestFolderFinderMatchesEncodePaths(t *testing.T) {
	keys := []string{"a", "a/", "a/b", "..", "../x", "./y", "%41", "A", "back\\slash", "tab\there", "ünïcødé/ファイル.txt",
		"/leading", "double//slash", "trailing/", strings.Repeat("k", 1024), strings.Repeat("k", 1024) + "/z", "with space", "a%~", "x/%+",
		"p", "p!", "p-1", "p-2", "p.q", "p/q", "p/q/r", "p/q!", "p/q-1/s", "x", "x/y/z", "x/y"}
	for i := range 50 {
		keys = append(keys, "a-"+strings.Repeat("0", i))
	}
	slices.Sort(keys)
	want := EncodePaths(keys)
	ls := &listSpool{dirs: map[string]bool{}}
	ff := folderFinder{dirs: ls.dirs}
	for _, k := range keys {
		ff.see(k)
	}
	for _, k := range keys {
		if got := ls.path(k); got != want[k] {
			t.Errorf("key %q: streamed path %q, EncodePaths %q", k, got, want[k])
		}
	}
	if !ls.dirs["a"] || !ls.dirs["p"] || !ls.dirs["p/q"] || ls.dirs["p-1"] {
		t.Errorf("folders found: %v", ls.dirs)
	}
}
