package kv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source"
)

// TestRestore decodes every sampled entries item of each KV namespace in the snapshot (each item
// checked against its SHA-256 as it is read, each value against its own), compares the counts with
// the catalogue and writes the pairs to Scratch/kv-<namespace id>.json in the bulk-write shape. It
// never touches the account.
func (k *kvComponent) TestRestore(ctx context.Context, env source.Env, req source.TestRestoreRequest) ([]source.TestRestoreCheck, error) {
	var out []source.TestRestoreCheck
	for _, s := range req.Snapshot.Sources {
		if s.Component != Component {
			continue
		}
		if len(k.namespaces) > 0 && !slices.Contains(k.namespaces, s.ID) && !slices.Contains(k.namespaces, s.Name) {
			continue
		}
		chk := source.TestRestoreCheck{Component: Component, Source: s.Name, Checks: []string{}, Problems: []string{}, ProblemKinds: []string{}}
		var items []manifest.Item
		all := 0
		if err := req.Catalogue.Each(func(it manifest.Item) error {
			if it.Component == Component && it.Source == s.ID {
				all++
			}
			if it.Component == Component && it.Source == s.ID && it.Kind == KindEntries {
				items = append(items, it)
			}
			return nil
		}); err != nil {
			return nil, err
		}
		if int64(all) != s.Items {
			chk.Fail(source.FailureIntegrity, fmt.Sprintf("the catalogue lists %d item(s) of the namespace, the manifest %d", all, s.Items))
		}
		idx, err := source.SampleIndexesSeeded(len(items), req.Sample, req.Seed, s.Component+"/"+s.Name)
		if err != nil {
			return nil, err
		}
		var pick []manifest.Item
		for _, i := range idx {
			pick = append(pick, items[i])
		}
		if err := os.MkdirAll(req.Scratch, 0o700); err != nil {
			return nil, err
		}
		file := filepath.Join(req.Scratch, "kv-"+s.ID+".json")
		var keys int64
		for _, it := range pick {
			keys += it.Rows
		}
		written, size, err := writeJSONFile(ctx, file, pick, req.Open, func(string) bool { return true }, func(int) {})
		switch {
		case err != nil && ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.Is(err, ErrFormat) || errors.Is(err, archive.ErrIntegrity) || errclass.Of(err) == errclass.Integrity:
			chk.Fail(source.FailureIntegrity, err.Error())
		case err != nil:
			chk.Fail(source.FailureRestore, err.Error())
		default:
			chk.Items, chk.Bytes = len(pick), size
			chk.Checks = append(chk.Checks,
				fmt.Sprintf("%d of %d item(s) decoded, each checked against its SHA-256", len(pick), len(items)),
				fmt.Sprintf("%d key(s) restored to %s, every value matching its size and SHA-256", written, filepath.Base(file)))
			if written != keys {
				chk.Fail(source.FailureIntegrity, fmt.Sprintf("%d key(s) decoded, the catalogue counts %d", written, keys))
			}
		}
		out = append(out, chk)
	}
	return out, nil
}
