// Command cfbackup-gendocs writes cfbackup's shell completions and man pages into a directory, for
// the release archives and packages (goreleaser's before hook runs it; docs/RELEASE.md). It is a
// separate program so the cfbackup binary does not carry the man page renderer.
//
//	go run ./cmd/cfbackup-gendocs DIR   # DIR/completions/cfbackup.{bash,zsh,fish,ps1}, DIR/manpages/*.1.gz
package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/cfbackup/cfbackup/internal/cli"
)

func main() {
	if len(os.Args) != 2 || strings.HasPrefix(os.Args[1], "-") {
		fmt.Fprintln(os.Stderr, "usage: cfbackup-gendocs DIR  (writes DIR/completions and DIR/manpages)")
		os.Exit(2)
	}
	if err := generate(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "cfbackup-gendocs:", err)
		os.Exit(1)
	}
}

// generate writes the completions and gzipped man pages of the real command tree under dir.
func generate(dir string) error {
	root := cli.NewRootCmd(&cli.Factory{IO: cli.IO{In: strings.NewReader(""), Out: io.Discard, Err: io.Discard}, Getenv: func(string) string { return "" }})
	root.DisableAutoGenTag = true // reproducible pages: no generation date
	comp := filepath.Join(dir, "completions")
	man := filepath.Join(dir, "manpages")
	for _, d := range []string{comp, man} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	for name, gen := range map[string]func(io.Writer) error{
		"cfbackup.bash": func(w io.Writer) error { return root.GenBashCompletionV2(w, true) },
		"cfbackup.zsh":  root.GenZshCompletion,
		"cfbackup.fish": func(w io.Writer) error { return root.GenFishCompletion(w, true) },
		"cfbackup.ps1":  root.GenPowerShellCompletionWithDesc,
	} {
		if err := writeFile(filepath.Join(comp, name), false, gen); err != nil {
			return err
		}
	}
	return genMan(root, man)
}

// genMan writes one gzipped page per command (cfbackup.1.gz, cfbackup-backup.1.gz, …).
func genMan(root *cobra.Command, dir string) error {
	hdr := &doc.GenManHeader{Title: "CFBACKUP", Section: "1", Source: "cfbackup " + cli.Version, Manual: "cfbackup manual"}
	// Reproducible builds: the page date is SOURCE_DATE_EPOCH (goreleaser: the commit's time) when
	// set; goreleaser passes a negative one when it could not read the git state: today then.
	d := time.Now().UTC()
	if sec, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64); err == nil && sec > 0 {
		d = time.Unix(sec, 0).UTC()
	}
	hdr.Date = &d
	var walk func(c *cobra.Command) error
	walk = func(c *cobra.Command) error {
		if !c.IsAvailableCommand() && c != root || c.IsAdditionalHelpTopicCommand() {
			return nil
		}
		for _, sub := range c.Commands() {
			if err := walk(sub); err != nil {
				return err
			}
		}
		name := strings.ReplaceAll(c.CommandPath(), " ", "-") + ".1.gz"
		h := *hdr
		return writeFile(filepath.Join(dir, name), true, func(w io.Writer) error { return doc.GenMan(c, &h, w) })
	}
	return walk(root)
}

func writeFile(path string, gz bool, gen func(io.Writer) error) error {
	var buf bytes.Buffer
	if err := gen(&buf); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	data := buf.Bytes()
	if gz {
		var z bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
		if _, err := zw.Write(data); err != nil {
			return err
		}
		if err := zw.Close(); err != nil {
			return err
		}
		data = z.Bytes()
	}
	return os.WriteFile(path, data, 0o644)
}
