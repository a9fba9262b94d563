// Package docs holds the project's documentation; its test keeps the documents true to the tree.
package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocumentedPathsExist fails when a document names a file or directory of the repository that
// is not there (a file renamed or moved without its documentation following).
func TestDocumentedPathsExist(t *testing.T) {
	docs, _ := filepath.Glob("*.md")
	docs = append(docs, "../README.md")
	ref := regexp.MustCompile("`((?:cmd|pkg|internal|docs|testdata|scripts|worker|examples|\\.ci)/[A-Za-z0-9_./*<>{}-]*)")
	for _, d := range docs {
		b, err := os.ReadFile(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ref.FindAllStringSubmatch(string(b), -1) {
			p := strings.TrimRight(m[1], ".:")
			if strings.ContainsAny(p, "*<>{}") || strings.HasPrefix(p, "worker/dist/") { // a pattern, or a build output
				continue
			}
			p, _, _ = strings.Cut(p, "#")
			if _, err := os.Stat(filepath.Join("..", p)); err != nil {
				t.Errorf("%s names %s, which does not exist", d, p)
			}
		}
	}
}
