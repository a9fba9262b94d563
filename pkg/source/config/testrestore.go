package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/manifest"
)

// Problem kinds of a configuration test-restore; the same words as the engine's failure kinds.
const (
	ProblemIntegrity = "integrity" // the stored documents are missing, damaged or disagree with the catalogue
	ProblemRestore   = "restore"   // the documents were intact but the scratch copy is not what they say
	ProblemError     = "error"     // the check could not run (scratch directory, storage)
)

// Problem is one finding of TestRestore.
type Problem struct {
	Kind string
	Text string
}

// TestResult is what TestRestore found.
type TestResult struct {
	State    *State
	Items    int
	Bytes    int64
	Checks   []string
	Problems []Problem
}

// TestRestore proves a snapshot's configuration restores: it reads every document of src back (each
// item's SHA-256 checked while reading), parses it, compares it with its catalogue entry (item name,
// kind, account, script name, the inventory's script list, the manifest's counts), writes the
// documents into dir exactly as 'restore --component config --to-dir' does and reads the files back.
// Nothing is read from or written to the account. Only a cancelled context is returned as an error.
func TestRestore(ctx context.Context, open Opener, cat *manifest.Catalogue, src manifest.Source, dir string) (*TestResult, error) {
	res := &TestResult{State: &State{AccountID: src.ID, Scripts: map[string]Doc{}}, Checks: []string{}}
	fail := func(kind, format string, a ...any) {
		res.Problems = append(res.Problems, Problem{Kind: kind, Text: fmt.Sprintf(format, a...)})
	}
	items, err := accountItems(cat, src)
	if err != nil {
		return nil, err
	}
	for _, it := range items {
		res.Items++
		res.Bytes += it.Size
	}
	if int64(len(items)) != src.Items || res.Bytes != src.Size {
		fail(ProblemIntegrity, "the catalogue lists %d document(s) of %d bytes, the manifest %d of %d bytes", len(items), res.Bytes, src.Items, src.Size)
	}
	parsed := 0
	for _, it := range items {
		if it.Kind != KindInventory && it.Kind != KindScript {
			fail(ProblemIntegrity, "item %s has kind %q, which is not a configuration document", it.Name, it.Kind)
			continue
		}
		if want := ItemName(it.Kind, it.Table); it.Name != want {
			fail(ProblemIntegrity, "item %s: the catalogue names a %s %q, stored as %s", it.Name, it.Kind, it.Table, want)
		}
		doc, err := readDoc(ctx, open, it.ItemRef)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			kind := ProblemError
			if errors.Is(err, archive.ErrIntegrity) {
				kind = ProblemIntegrity
			}
			fail(kind, "%s: %v", it.Name, err)
			continue
		}
		parsed++
		switch it.Kind {
		case KindInventory:
			if res.State.Inventory != nil {
				fail(ProblemIntegrity, "the catalogue has two inventory documents")
			}
			if k, _ := doc["kind"].(string); k != "inventory" {
				fail(ProblemIntegrity, "%s: kind %q, want \"inventory\"", it.Name, k)
			}
			if a, _ := doc["account_id"].(string); a != src.ID {
				fail(ProblemIntegrity, "%s: account %q, the manifest says %q", it.Name, a, src.ID)
			}
			res.State.Inventory = doc
		case KindScript:
			if res.State.Scripts[it.Table] != nil {
				fail(ProblemIntegrity, "the catalogue has two documents for script %q", it.Table)
			}
			if k, _ := doc["kind"].(string); k != "workers_script" {
				fail(ProblemIntegrity, "%s: kind %q, want \"workers_script\"", it.Name, k)
			}
			if n, _ := doc["name"].(string); n != it.Table {
				fail(ProblemIntegrity, "%s: the document is of script %q, the catalogue says %q", it.Name, n, it.Table)
			}
			res.State.Scripts[it.Table] = doc
		}
	}
	res.Checks = append(res.Checks, "documents' SHA-256", fmt.Sprintf("%d document(s) parse", parsed))
	if res.State.Inventory == nil {
		fail(ProblemIntegrity, "the snapshot's configuration has no inventory document")
		return res, nil
	}
	if listed, ok := res.State.Inventory["workers_scripts"].([]any); ok {
		in := map[string]bool{}
		for _, n := range listed {
			if s, ok := n.(string); ok {
				in[s] = true
			}
		}
		var missing []string
		for n := range res.State.Scripts {
			if !in[n] {
				missing = append(missing, n)
			}
		}
		sort.Strings(missing)
		for _, n := range missing {
			fail(ProblemIntegrity, "script %q is not in the inventory's list of Workers scripts", n)
		}
	}
	res.Checks = append(res.Checks, fmt.Sprintf("inventory and %d script document(s) match the catalogue", len(res.State.Scripts)))
	if err := writeBack(dir, res.State); err != nil {
		var p Problem
		if errors.As(err, &p) {
			res.Problems = append(res.Problems, p)
		} else {
			fail(ProblemError, "write into the scratch directory: %v", err)
		}
		return res, nil
	}
	res.Checks = append(res.Checks, "written as files and read back identical")
	return res, nil
}

func (p Problem) Error() string { return p.Text }

// writeBack writes the state into dir as a --to-dir restore does, then reads every file back and
// compares it with the document's encoding.
func writeBack(dir string, st *State) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	written, err := WriteDir(dir, st, true)
	if err != nil {
		return err
	}
	docs := []Doc{st.Inventory}
	for _, n := range st.ScriptNames() {
		docs = append(docs, st.Scripts[n])
	}
	if len(written) != len(docs) {
		return Problem{ProblemRestore, fmt.Sprintf("%d file(s) written for %d document(s)", len(written), len(docs))}
	}
	for i, p := range written {
		got, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		want, err := Encode(docs[i])
		if err != nil {
			return err
		}
		if !bytes.Equal(got, want) {
			return Problem{ProblemRestore, fmt.Sprintf("the restored file %s differs from its document", filepath.Base(p))}
		}
	}
	return nil
}

// accountItems are the catalogue's documents of one account (a handful), read from the stream.
func accountItems(cat *manifest.Catalogue, src manifest.Source) ([]manifest.Item, error) {
	var items []manifest.Item
	err := cat.Each(func(it manifest.Item) error {
		if it.Component == Component && it.Source == src.ID {
			items = append(items, it)
		}
		return nil
	})
	return items, err
}
