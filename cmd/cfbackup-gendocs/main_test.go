package main

import (
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGenerate: every shell gets a completion script for cfbackup, and every visible command a man
// page that gunzips to a roff page naming it; the pages are stable under SOURCE_DATE_EPOCH.
func TestGenerate(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1764720000") // 2025-12-03
	dir := t.TempDir()
	if err := generate(dir); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"cfbackup.bash": "__start_cfbackup", "cfbackup.zsh": "#compdef cfbackup",
		"cfbackup.fish": "complete -c cfbackup", "cfbackup.ps1": "Register-ArgumentCompleter"} {
		b, err := os.ReadFile(filepath.Join(dir, "completions", name))
		if err != nil || !strings.Contains(string(b), want) {
			t.Errorf("%s: %v, lacks %q", name, err, want)
		}
	}
	for page, want := range map[string]string{"cfbackup.1.gz": "cfbackup - Back up and restore", "cfbackup-backup.1.gz": "cfbackup-backup -",
		"cfbackup-hold-add.1.gz": "cfbackup-hold-add -", "cfbackup-version.1.gz": "cfbackup-version -"} {
		if s := gunzip(t, filepath.Join(dir, "manpages", page)); !strings.Contains(s, want) || !strings.Contains(s, `.TH "CFBACKUP" "1" "Dec 2025"`) {
			t.Errorf("%s lacks %q or the fixed date:\n%.300s", page, want, s)
		}
	}
	// goreleaser's value without git state: not year 1.
	t.Setenv("SOURCE_DATE_EPOCH", "-62135596800")
	if err := generate(dir); err != nil {
		t.Fatal(err)
	}
	if b := gunzip(t, filepath.Join(dir, "manpages", "cfbackup.1.gz")); strings.Contains(b, "0001") {
		t.Errorf("a negative SOURCE_DATE_EPOCH dated the page year 1:\n%.200s", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "manpages", "cfbackup-help.1.gz")); err == nil {
		t.Error("a page for the help command")
	}
}

func gunzip(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
