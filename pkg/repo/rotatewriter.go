package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/layout"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/seal"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// ErrRotationPending: another rotation's journal is in the repository; it must finish first.
var ErrRotationPending = errclass.New(errclass.Refused, "another key rotation is unfinished")

// RekeyFunc re-seals a side object a manifest owns (an R2 or KV incremental index, key names which)
// from the old writer secret to the new one. The repository does not know those formats; the CLI
// passes the sources' functions.
type RekeyFunc func(key string, b, oldSecret, newSecret []byte) ([]byte, error)

// RotateWriterOptions tune RotateWriter.
type RotateWriterOptions struct {
	Rekey    RekeyFunc
	OnObject func(key string, done, total int)
}

// RotateWriterResult is what RotateWriter did.
type RotateWriterResult struct {
	OldKeyID  string `json:"old_key_id"`
	NewKeyID  string `json:"new_key_id"`
	Manifests int    `json:"manifests"`
	Resumed   int    `json:"resumed"`
	Objects   int    `json:"objects"`
}

// writerJournal is the progress of a writer-secret rotation, sealed with the OLD secret (the one
// config.json authenticates with until the rotation commits).
type writerJournal struct {
	Version  int             `json:"version"`
	NewKeyID string          `json:"new_key_id"`
	Done     map[string]bool `json:"done"`
}

const writerMagic = "cfbackup rotation journal writer v1\n"

// RotateWriter replaces the writer secret with newSecret: every manifest is re-sealed with the new
// key (its side objects re-sealed by o.Rekey first, their new hashes recorded), then keys/writer.age
// and config.json — the commit point — are rewritten with it. Until the commit, config.json still
// authenticates with the old secret; a journal (sealed with the old secret) lists the manifests
// done, so a rerun with the same new secret resumes. r must be authenticated with the old secret.
func (r *Repo) RotateWriter(ctx context.Context, newSecret []byte, o RotateWriterOptions) (*RotateWriterResult, error) {
	if err := r.RequireWritable("rotating the writer secret"); err != nil {
		return nil, err
	}
	if r.key == nil {
		return nil, r.RequireKey("rotate-writer")
	}
	oldKey, newKey := r.key, seal.NewKey(newSecret)
	res := &RotateWriterResult{OldKeyID: oldKey.ID(), NewKeyID: newKey.ID()}
	if oldKey.ID() == newKey.ID() {
		return nil, fmt.Errorf("%w: the new writer secret is the current one", ErrRotationPending)
	}
	if _, err := r.Store.Stat(ctx, layout.RotationJournalKey("rewrap")); err == nil {
		return nil, fmt.Errorf("%w: %s holds an unfinished rewrap: run 'cfbackup key rewrap' to finish it first", ErrRotationPending, layout.RotationJournalKey("rewrap"))
	}
	j := &writerJournal{Version: 1, NewKeyID: newKey.ID(), Done: map[string]bool{}}
	jk := layout.RotationJournalKey("writer")
	if b, err := r.readSmall(ctx, jk); err == nil {
		var old writerJournal
		if err := seal.OpenEnvelope(journalKey(oldKey.Secret()), b, writerMagic, "a writer rotation journal", ErrUnauthenticated, &old); err != nil {
			return nil, fmt.Errorf("%s: %w", jk, err)
		}
		if old.NewKeyID != newKey.ID() {
			return nil, fmt.Errorf("%w: %s is a rotation to writer key %s, not %s: rerun with the new secret file that rotation wrote (its path ends in .new)", ErrRotationPending, jk, old.NewKeyID, newKey.ID())
		}
		if old.Done != nil {
			j = &old
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	var mans []string
	if err := r.Store.List(ctx, layout.Snapshots, func(oi store.ObjectInfo) error {
		if layout.IsManifestKey(oi.Key) {
			mans = append(mans, oi.Key)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	sort.Strings(mans)
	saveJournal := func() error {
		b, err := seal.SealJSON(journalKey(oldKey.Secret()), writerMagic, j)
		if err != nil {
			return err
		}
		return r.Store.Put(ctx, jk, bytes.NewReader(b), store.PutOptions{})
	}
	if err := saveJournal(); err != nil {
		return nil, fmt.Errorf("save the rotation journal: %w", err)
	}
	for i, mk := range mans {
		if j.Done[mk] {
			res.Resumed++
			continue
		}
		n, err := r.resealManifest(ctx, mk, newKey, o.Rekey)
		if err != nil {
			return res, err
		}
		res.Objects += n
		res.Manifests++
		j.Done[mk] = true
		if err := saveJournal(); err != nil {
			return res, fmt.Errorf("save the rotation journal: %w", err)
		}
		if o.OnObject != nil {
			o.OnObject(mk, i+1, len(mans))
		}
		if err := ctx.Err(); err != nil {
			return res, err
		}
	}
	rcp, err := r.Recipients()
	if err != nil {
		return res, err
	}
	if err := r.putWriterKey(ctx, newSecret, rcp); err != nil {
		return res, err
	}
	if err := r.putConfig(ctx, r.Config, newSecret); err != nil {
		return res, err
	}
	if err := r.Store.Delete(ctx, jk); err != nil && !errors.Is(err, store.ErrNotFound) {
		return res, fmt.Errorf("remove the rotation journal: %w", err)
	}
	return res, nil
}

// resealManifest re-seals one manifest (authenticated with the current key) and its side objects
// with newKey; a manifest a previous, interrupted run already re-sealed is recognised by its MAC.
func (r *Repo) resealManifest(ctx context.Context, mk string, newKey *seal.Key, rekey RekeyFunc) (int, error) {
	raw, m, err := r.readManifest(ctx, mk)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %v", ErrRewrapUnreadable, mk, err)
	}
	if seal.HasMAC(raw) && newKey.Verify(seal.PurposeManifest, raw) == nil {
		return 0, nil
	}
	if err := r.authenticate(mk, raw, m); err != nil {
		return 0, fmt.Errorf("%w: %s: %v; nothing more was changed: remove that manifest or restore it, then rerun", ErrRewrapUnreadable, mk, err)
	}
	objects := 0
	for i, ob := range m.Objects {
		b, err := r.readSmall(ctx, ob.Key)
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", ob.Key, err)
		}
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != ob.SHA256 {
			// Already re-sealed by an interrupted run? Then it opens with the new secret.
			if _, err := rekey(ob.Key, b, newKey.Secret(), newKey.Secret()); err == nil {
				m.Objects[i].Size, m.Objects[i].SHA256 = int64(len(b)), hex.EncodeToString(sum[:])
				continue
			}
			return 0, fmt.Errorf("%w: %s does not match the SHA-256 its snapshot %s records", ErrRewrapSource, ob.Key, m.ID)
		}
		if rekey == nil {
			return 0, fmt.Errorf("no way to re-seal %s", ob.Key)
		}
		nb, err := rekey(ob.Key, b, r.key.Secret(), newKey.Secret())
		if err != nil {
			return 0, fmt.Errorf("re-seal %s: %w", ob.Key, err)
		}
		if err := r.Store.Put(ctx, ob.Key, bytes.NewReader(nb), store.PutOptions{}); err != nil {
			return 0, fmt.Errorf("rewrite %s: %w", ob.Key, err)
		}
		ns := sha256.Sum256(nb)
		m.Objects[i].Size, m.Objects[i].SHA256 = int64(len(nb)), hex.EncodeToString(ns[:])
		objects++
	}
	if m.Format < manifest.FormatVersion {
		m.Format = manifest.FormatVersion
	}
	m.MAC = ""
	b, err := json.Marshal(m)
	if err != nil {
		return 0, err
	}
	if m.MAC, err = newKey.MAC(seal.PurposeManifest, b); err != nil {
		return 0, err
	}
	var buf bytes.Buffer
	if err := m.Encode(&buf); err != nil {
		return 0, err
	}
	if err := r.Store.Put(ctx, mk, &buf, store.PutOptions{}); err != nil {
		return 0, fmt.Errorf("rewrite manifest %s: %w", mk, err)
	}
	return objects, nil
}

// TryKeys reports which of the secrets config.json authenticates with (-1: none): a rerun of an
// interrupted rotate-writer that got past its commit point holds the new secret in its .new file.
func (r *Repo) TryKeys(secrets ...[]byte) int {
	for i, s := range secrets {
		if s != nil && seal.NewKey(s).Verify(seal.PurposeConfig, r.raw) == nil {
			return i
		}
	}
	return -1
}
