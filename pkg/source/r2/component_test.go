package r2

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/spf13/pflag"

	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/source"
)

// TestRestoreFlagsCheckedFirst: restore's r2 flags are checked (and --keys-from read) before
// anything is read from the repository, each mistake a usage error.
func TestRestoreFlagsCheckedFirst(t *testing.T) {
	list := filepath.Join(t.TempDir(), "keys.txt")
	if err := os.WriteFile(list, []byte("a/1\r\n\nb/2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		keys []string // nil: a usage error
	}{
		{[]string{"--overwrite", "sometimes"}, nil},
		{[]string{"--to-dir", "out", "--to-bucket", "b"}, nil},
		{[]string{"--to-dir", "out", "--to-prefix", "p/"}, nil},
		{[]string{"--prefix", "a/", "--key", "a/1"}, nil},
		{[]string{"--keys-from", filepath.Join(t.TempDir(), "missing")}, nil},
		{[]string{"--key", "x", "--keys-from", list}, []string{"x", "a/1", "b/2"}},
		{[]string{"--prefix", "a/", "--overwrite", "skip"}, []string{}},
	}
	for _, tc := range cases {
		c := NewComponent().(*component)
		fs := pflag.NewFlagSet("restore", pflag.ContinueOnError)
		fs.String("to-dir", "", "")
		fs.String("prefix", "", "")
		c.Flags(source.VerbRestore, fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		err := c.CheckFlags(source.VerbRestore, fs)
		switch {
		case tc.keys == nil && !errors.Is(err, errclass.Usage):
			t.Errorf("%q: %v, want a usage error", tc.args, err)
		case tc.keys != nil && (err != nil || !c.restore.checked || !slices.Equal(c.restore.keyList, tc.keys) && len(tc.keys) > 0):
			t.Errorf("%q: keys %q (%v), want %q", tc.args, c.restore.keyList, err, tc.keys)
		}
	}
}
