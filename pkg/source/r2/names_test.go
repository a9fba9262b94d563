package r2

import (
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
