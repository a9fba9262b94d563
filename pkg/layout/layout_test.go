package layout_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cfbackup/cfbackup/pkg/layout"
)

// names are the layout's prefixes and fixed objects: no string literal outside this package may
// start with one of them.
var names = []string{
	layout.Config, layout.ConfigV1Backup, layout.WriterKey,
	layout.Segments, layout.Snapshots, layout.Indexes, layout.Catalogues, layout.Journals, layout.Locks, layout.Holds,
	layout.Marks, layout.Audit, layout.PruneRecords, layout.VerifyRecords, layout.Rotations, layout.Doctor,
	layout.Plans, layout.Approvals, layout.Approvers,
}

// TestOnePlace keeps the layout in one place: it parses every non-test .go file of the repository
// (outside this package and testdata) and fails on a string literal that starts with a repository
// prefix or fixed object name, which should use this package instead. Comments are not literals, so
// docs in code may still name the objects.
func TestOnePlace(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	self, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			n := d.Name()
			if path != root && (path == self || n == "testdata" || n == "node_modules" || strings.HasPrefix(n, ".") || strings.HasPrefix(n, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		files++
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				return true
			}
			for _, name := range names {
				if strings.HasPrefix(s, name) {
					rel, _ := filepath.Rel(root, fset.Position(lit.Pos()).Filename)
					t.Errorf("%s:%d: string literal %q names the repository layout (%q): use pkg/layout", rel, fset.Position(lit.Pos()).Line, s, name)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Fatalf("scanned only %d files under %s: the walk did not find the repository", files, root)
	}
}

func TestKeys(t *testing.T) {
	at := time.Date(2026, 12, 3, 13, 19, 44, 123456789, time.FixedZone("x", 3600))
	for _, c := range [][2]string{
		{layout.SegmentKey("0123456789abcdef0123456789abcdef"), "segments/0123456789abcdef0123456789abcdef.age"},
		{layout.ManifestKey(at, "0123456789abcdef"), "snapshots/20261203T121944Z-0123456789abcdef.json"},
		{layout.R2IndexKey("0123456789abcdef", "media"), "index/0123456789abcdef.r2.media.idx"},
		{layout.JournalKey("0123456789abcdef", "media", 7), "journal/0123456789abcdef/media/000007.idx"},
		{layout.JournalPrefix("0123456789abcdef", "media"), "journal/0123456789abcdef/media/"},
		{layout.LockKey("l1"), "locks/l1.json"},
		{layout.HoldKey("s1", "h1"), "holds/s1/h1.json"},
		{layout.HoldReleaseKey("s1", "h1"), "holds/s1/h1-release.json"},
		{layout.MarkKey(at, "r1"), "marks/20261203T121944Z-r1.json"},
		{layout.PruneRecordKey(at, "r1"), "prune/20261203T121944Z-r1.json"},
		{layout.VerifyRecordKey(at, "s1"), "verify/20261203T121944.123456789Z-s1.json"},
		{layout.AuditRecordKey(42, "ab"), "audit/000000000042-ab.json"},
		{layout.AuditClaimKey(42), "audit/000000000042.seq"},
		{layout.PlanKey("p1"), "plans/p1.json"},
		{layout.PlanUsedKey("p1"), "plans/p1-used.json"},
		{layout.ApprovalKey("p1", "bob", at), "approvals/p1/bob-20261203T121944.123456789Z.json"},
		{layout.ApproverKey("bob"), "approvers/bob.json"},
	} {
		if c[0] != c[1] {
			t.Errorf("got %q, want %q (docs/FORMAT.md)", c[0], c[1])
		}
	}
	if run, bucket, ok := layout.ParseJournalKey(layout.JournalKey("r", "b", 1)); !ok || run != "r" || bucket != "b" {
		t.Errorf("ParseJournalKey = %q %q %v", run, bucket, ok)
	}
	for _, k := range []string{"journal/r/b/000001.json", "journal/r/000001.idx", "index/r.idx"} {
		if _, _, ok := layout.ParseJournalKey(k); ok {
			t.Errorf("ParseJournalKey(%q) accepted", k)
		}
	}
	if name, ok := layout.ManifestName(layout.ManifestKey(at, "id")); !ok || name != "20261203T121944Z-id" {
		t.Errorf("ManifestName = %q %v", name, ok)
	}
	if !layout.IsManifestKey("snapshots/x.json") || layout.IsManifestKey("snapshots/x.json.tmp") || layout.IsManifestKey("verify/x.json") {
		t.Error("IsManifestKey")
	}
}
