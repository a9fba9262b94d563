package kv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source"
)

// WriteBudget bounds the body of one bulk write a restore sends (and holds in memory).
var WriteBudget = 8 << 20

// ErrTargetExists: a --to-dir restore would replace a file that is already there.
var ErrTargetExists = errclass.New(errclass.Refused, "restore target file exists")

// now is the clock restores use to leave out expired keys (tests replace it).
var now = time.Now

// selector says which keys a restore takes: all, or --key K and --prefix P (either matches).
type selector struct {
	keys   map[string]bool
	prefix string
}

func (s selector) all() bool { return len(s.keys) == 0 && s.prefix == "" }

func (s selector) match(k string) bool {
	return s.all() || s.keys[k] || (s.prefix != "" && strings.HasPrefix(k, s.prefix))
}

// expired reports whether a pair cannot be written back: its expiration has passed or is under a
// minute away (the API refuses expirations less than 60 seconds ahead).
func expired(exp int64, t time.Time) bool {
	return exp != 0 && exp < t.Unix()+cloudflare.KVMinExpiryAhead
}

// NamespacePlan is one namespace of a restore plan.
type NamespacePlan struct {
	Source sourceRef               `json:"source"`
	Target *cloudflare.KVNamespace `json:"target,omitempty"`
	File   string                  `json:"file,omitempty"`
	// Keys are the selected keys that will be written; Overwrite of them exist in the target now,
	// Create do not; Expired are left out (their expiration has passed or is under a minute away).
	Keys      int64 `json:"keys"`
	Overwrite int64 `json:"overwrite"`
	Create    int64 `json:"create"`
	Expired   int64 `json:"expired"`
	Bytes     int64 `json:"bytes"`

	// Same are selected keys the target already holds with the same value, metadata and expiration:
	// they are left alone (not counted in Keys).
	Same int64 `json:"same"`
	// Delete are live keys the snapshot records as absent (a safety snapshot: keys the restore it
	// undoes created); they are deleted.
	Delete int64 `json:"delete"`

	items     []manifest.Item
	absent    []manifest.Item
	overwrite []string
	same      map[string]bool
	created   []string // selected keys the target lacks
	remove    []string // live keys to delete
}

// fingerprint is what decides whether a live pair already equals the snapshot's.
// It is kept for every selected key while a restore is planned, so it is small: the value's SHA-256,
// the expiration and the SHA-256 of the compacted metadata.
type fingerprint struct {
	sha  [32]byte
	exp  int64
	meta [32]byte
}

func newFingerprint(e Entry) fingerprint {
	f := fingerprint{exp: e.Expiration, meta: sha256.Sum256(compactJSON(e.Metadata))}
	_, _ = hex.Decode(f.sha[:], []byte(e.SHA256))
	return f
}

func compactJSON(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	var c bytes.Buffer
	if json.Compact(&c, b) != nil {
		return b
	}
	return c.Bytes()
}

// compareLive lists the target and reads the live values of the selected keys it holds: keys whose
// value, metadata and expiration already match are left alone, the others are the overwrites.
func (p *restorePlan) compareLive(ctx context.Context, np *NamespacePlan, selected map[string]fingerprint, absent map[string]bool) error {
	prefix := ""
	if len(p.sel.keys) == 0 {
		prefix = p.sel.prefix
	}
	var check []cloudflare.KVKey
	np.same = map[string]bool{}
	decide := func(keys []cloudflare.KVKey) error {
		names := make([]string, len(keys))
		for i, k := range keys {
			names[i] = k.Name
		}
		vals, err := p.c.BulkGetKV(ctx, np.Target.ID, names)
		if err != nil && (ctx.Err() != nil || !fallback(err)) {
			return err
		}
		for _, k := range keys {
			want := selected[k.Name]
			v, ok := vals[k.Name]
			var sum [32]byte
			switch {
			case ok && !v.Found:
				continue // deleted meanwhile: a plain create
			case ok && cloudflare.KVTextSafe(v.Value):
				sum = sha256.Sum256([]byte(v.Value))
			default:
				body, _, err := p.c.GetKVValue(ctx, np.Target.ID, k.Name)
				if errors.Is(err, cloudflare.ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				h := sha256.New()
				_, err = io.Copy(h, io.LimitReader(body, cloudflare.KVMaxValueBytes+1))
				body.Close()
				if err != nil {
					return fmt.Errorf("read a live value of KV namespace %s: %w", np.Target.Title, err)
				}
				copy(sum[:], h.Sum(nil))
			}
			if sum == want.sha && k.Expiration == want.exp && sha256.Sum256(compactJSON(k.Metadata)) == want.meta {
				np.same[k.Name] = true
				continue
			}
			np.overwrite = append(np.overwrite, k.Name)
		}
		return nil
	}
	err := p.c.ListKVKeys(ctx, np.Target.ID, prefix, cloudflare.KVListLimit, func(page []cloudflare.KVKey) error {
		for _, key := range page {
			if absent[key.Name] {
				np.remove = append(np.remove, key.Name)
				continue
			}
			if _, ok := selected[key.Name]; !ok {
				continue
			}
			check = append(check, key)
			if len(check) == cloudflare.KVBulkGetKeys {
				if err := decide(check); err != nil {
					return err
				}
				check = check[:0]
			}
		}
		return nil
	})
	if err == nil && len(check) > 0 {
		err = decide(check)
	}
	if err != nil {
		return err
	}
	np.Same = int64(len(np.same))
	np.Keys -= np.Same
	np.Overwrite = int64(len(np.overwrite))
	np.Create = np.Keys - np.Overwrite
	np.Delete = int64(len(np.remove))
	if len(np.overwrite)+len(np.remove) == 0 {
		return nil // no safety snapshot: the created keys need not be listed
	}
	over := make(map[string]bool, len(np.overwrite))
	for _, k := range np.overwrite {
		over[k] = true
	}
	for k := range selected {
		if !over[k] && !np.same[k] {
			np.created = append(np.created, k)
		}
	}
	return nil
}

// RestorePlanJSON is restore --dry-run --json's plan for --component kv.
type RestorePlanJSON struct {
	Snapshot   string           `json:"snapshot"`
	ToDir      string           `json:"to_dir,omitempty"`
	Prefix     string           `json:"prefix,omitempty"`
	Keys       int              `json:"selected_keys,omitempty"`
	Namespaces []*NamespacePlan `json:"namespaces"`
}

// RestoreSummary is restore --json's summary for --component kv.
type RestoreSummary struct {
	MessageType    string           `json:"message_type"` // "summary"
	Component      string           `json:"component"`
	Snapshot       string           `json:"snapshot"`
	ToDir          string           `json:"to_dir,omitempty"`
	Namespaces     []*NamespacePlan `json:"namespaces"`
	Written        int64            `json:"written"`
	Expired        int64            `json:"expired"`
	Bytes          int64            `json:"bytes"`
	SafetySnapshot string           `json:"safety_snapshot,omitempty"`
	Undo           string           `json:"undo,omitempty"`
	Seconds        float64          `json:"seconds"`
}

type restorePlan struct {
	req  source.RestoreRequest
	env  source.Env
	c    *cloudflare.Client
	sel  selector
	json RestorePlanJSON
	conc int
}

func (k *kvComponent) PlanRestore(ctx context.Context, env source.Env, req source.RestoreRequest) (source.RestorePlan, error) {
	srcs, err := k.sources(req)
	if err != nil {
		return nil, err
	}
	if k.toNamespace != "" && len(srcs) > 1 {
		return nil, fmt.Errorf("%w: --to-namespace takes one source namespace; the snapshot holds %d (choose one with --kv-namespace)", errclass.Usage, len(srcs))
	}
	if k.toNamespace != "" && req.ToDir != "" {
		return nil, fmt.Errorf("%w: --to-dir and --to-namespace exclude each other", errclass.Usage)
	}
	sel := selector{prefix: req.Prefix}
	var keys []string
	if k.keys != nil {
		keys = k.keys()
	}
	if len(keys) > 0 {
		sel.keys = map[string]bool{}
		for _, key := range keys {
			sel.keys[key] = true
		}
	}
	p := &restorePlan{req: req, env: env, sel: sel, json: RestorePlanJSON{Snapshot: req.Snapshot.ID, ToDir: req.ToDir, Prefix: req.Prefix, Keys: len(keys)}}
	if req.ToDir == "" {
		if p.c, err = env.Cloudflare(); err != nil {
			return nil, err
		}
	}
	t := now()
	for _, s := range srcs {
		np, err := p.planNamespace(ctx, s, k.toNamespace, t)
		if err != nil {
			return nil, err
		}
		p.json.Namespaces = append(p.json.Namespaces, np)
	}
	return p, nil
}

// planNamespace plans the restore of one source namespace: its items, its target, the selected
// keys and, for a namespace target, how they compare with the live keys.
func (p *restorePlan) planNamespace(ctx context.Context, s sourceRef, toNamespace string, t time.Time) (*NamespacePlan, error) {
	req := p.req
	np := &NamespacePlan{Source: s}
	err := req.Catalogue.Each(func(it manifest.Item) error {
		if it.Component != Component || it.Source != s.ID {
			return nil
		}
		switch it.Kind {
		case KindEntries:
			np.items = append(np.items, it)
		case KindAbsent:
			np.absent = append(np.absent, it)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := p.target(ctx, np, toNamespace); err != nil {
		return nil, err
	}
	// Which selected keys the snapshot holds (headers only; values are checked and skipped).
	selected := map[string]fingerprint{}
	for _, it := range np.items {
		err := readItem(ctx, req.Open, it, func(e Entry, _ io.Reader) error {
			if !p.sel.match(e.Key) {
				return nil
			}
			if req.ToDir == "" && expired(e.Expiration, t) {
				np.Expired++
				return nil
			}
			np.Keys++
			np.Bytes += e.Size
			if req.ToDir == "" {
				selected[e.Key] = newFingerprint(e)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if np.Target == nil {
		return np, nil
	}
	absent, err := readAbsentKeys(ctx, req.Open, np.absent, p.sel)
	if err != nil {
		return nil, err
	}
	if len(selected) > 0 || len(absent) > 0 {
		if err := p.compareLive(ctx, np, selected, absent); err != nil {
			return nil, err
		}
	}
	return np, nil
}

// target sets where a namespace is restored: a file under --to-dir (which must not exist yet), or
// the namespace --to-namespace names or the original one.
func (p *restorePlan) target(ctx context.Context, np *NamespacePlan, toNamespace string) error {
	if p.req.ToDir != "" {
		np.File = filepath.Join(p.req.ToDir, "kv-"+np.Source.ID+".json")
		if _, err := os.Stat(np.File); err == nil {
			return fmt.Errorf("%w: %s (remove it or choose another --to-dir)", ErrTargetExists, np.File)
		}
		return nil
	}
	ref := np.Source.ID
	if toNamespace != "" {
		ref = toNamespace
	}
	target, err := p.c.ResolveKVNamespace(ctx, ref)
	if err != nil {
		if errors.Is(err, cloudflare.ErrNotFound) && toNamespace == "" {
			return fmt.Errorf("%w (the namespace backed up is gone: create one and name it with --to-namespace)", err)
		}
		return err
	}
	np.Target = &target
	return nil
}

// readAbsentKeys reads the selected keys of "absent" items.
func readAbsentKeys(ctx context.Context, open source.Opener, items []manifest.Item, sel selector) (map[string]bool, error) {
	out := map[string]bool{}
	for _, it := range items {
		rc, err := open(ctx, it.ItemRef)
		if err != nil {
			return nil, err
		}
		n, err := ReadAbsent(rc, func(k string) error {
			if sel.match(k) {
				out[k] = true
			}
			return nil
		})
		if cerr := rc.Close(); err == nil {
			err = cerr
		}
		if err == nil && int64(n) != it.Rows {
			err = fmt.Errorf("%w: an absent item lists %d keys, the catalogue says %d", ErrFormat, n, it.Rows)
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// readItem opens one entries item (checked against its recorded hash) and decodes it.
func readItem(ctx context.Context, open source.Opener, it manifest.Item, fn func(Entry, io.Reader) error) error {
	rc, err := open(ctx, it.ItemRef)
	if err != nil {
		return err
	}
	n, err := ReadEntries(rc, fn)
	if cerr := rc.Close(); err == nil && cerr != nil {
		return cerr
	}
	if err != nil {
		return err
	}
	if int64(n) != it.Rows {
		return fmt.Errorf("%w: an item holds %d entries, the catalogue says %d", ErrFormat, n, it.Rows)
	}
	return nil
}

func (p *restorePlan) JSON() any { return p.json }

func (p *restorePlan) Text(w io.Writer) {
	fmt.Fprintf(w, "Restore KV from snapshot %s:\n", p.json.Snapshot)
	for _, np := range p.json.Namespaces {
		switch {
		case np.File != "":
			fmt.Fprintf(w, "  %s (%s) → %s: %d key(s), %d bytes\n", np.Source.Title, np.Source.ID, np.File, np.Keys, np.Bytes)
		default:
			fmt.Fprintf(w, "  %s (%s) → namespace %s (%s): %d key(s), %d bytes; %d overwrite live keys, %d are new, %d already identical\n",
				np.Source.Title, np.Source.ID, np.Target.Title, np.Target.ID, np.Keys, np.Bytes, np.Overwrite, np.Create, np.Same)
		}
		if np.Expired > 0 {
			fmt.Fprintf(w, "    %d expired key(s) left out (expiration passed or under a minute away)\n", np.Expired)
		}
		if np.Delete > 0 {
			fmt.Fprintf(w, "    %d live key(s) deleted: the snapshot records them as absent (created by the restore it undoes)\n", np.Delete)
		}
	}
}

func (p *restorePlan) overwrites() (n int64, names []string) {
	for _, np := range p.json.Namespaces {
		if np.Overwrite+np.Delete > 0 {
			n += np.Overwrite + np.Delete
			names = append(names, np.Target.Title)
		}
	}
	return n, names
}

func (p *restorePlan) Confirm() *source.Confirmation {
	n, names := p.overwrites()
	if n == 0 {
		return nil
	}
	return &source.Confirmation{Prompt: fmt.Sprintf("%d live key(s) of KV namespace %s", n, strings.Join(quoteAll(names), ", ")), Name: names[0]}
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%q", v)
	}
	return out
}

func (p *restorePlan) Safety() *source.Safety {
	n, names := p.overwrites()
	if n == 0 {
		return nil
	}
	sf := &source.Safety{Target: strings.Join(names, ","), What: fmt.Sprintf("the %d live key(s) of KV namespace %s this restore overwrites", n, strings.Join(names, ", "))}
	var ids []string
	for _, np := range p.json.Namespaces {
		if np.Overwrite+np.Delete == 0 {
			continue
		}
		// The snapshot holds the keys about to be replaced or deleted, and lists the keys about to
		// be created as absent, so that restoring it (the undo) also deletes those.
		target, keys, created := *np.Target, append(append([]string{}, np.overwrite...), np.remove...), np.created
		ids = append(ids, target.ID)
		sf.Captures = append(sf.Captures, source.Capture{Component: Component, Name: target.Title, Run: func(ctx context.Context, s *source.Session) error {
			_, err := Backup(ctx, p.c, s, BackupOptions{Namespace: target, Keys: keys, Absent: created, Log: p.env.Log(), Progress: progressOf(s)})
			return err
		}})
	}
	sf.Undo = func(id string) string {
		cmd := "cfbackup restore " + id + " --component kv"
		for _, ns := range ids {
			cmd += " --kv-namespace " + ns
		}
		return cmd + " --yes"
	}
	return sf
}

func progressOf(s *source.Session) func(int) {
	if s.Progress == nil {
		return func(int) {}
	}
	return s.Progress.Add
}

func (p *restorePlan) Execute(ctx context.Context, x source.Execution) (*source.RestoreResult, error) {
	start := time.Now()
	pr := x.Progress
	if pr == nil {
		pr = source.NoProgress{}
	}
	sum := &RestoreSummary{MessageType: "summary", Component: Component, Snapshot: p.json.Snapshot, ToDir: p.json.ToDir,
		Namespaces: p.json.Namespaces, SafetySnapshot: x.SafetySnapshot, Undo: x.Undo}
	var total int64
	for _, np := range p.json.Namespaces {
		total += np.Bytes
	}
	pr.Start("restore kv", total)
	defer pr.Finish()
	t := now()
	for _, np := range p.json.Namespaces {
		var written, exp, size int64
		var err error
		if np.File != "" {
			written, size, err = p.toFile(ctx, np, pr)
		} else {
			written, exp, size, err = p.toNamespace(ctx, np, t, pr)
		}
		sum.Written += written
		sum.Expired += exp
		sum.Bytes += size
		if err != nil {
			if np.File != "" {
				return nil, fmt.Errorf("restore KV namespace %s to %s: %w (nothing was left at the file)", np.Source.Title, np.File, err)
			}
			return nil, fmt.Errorf("restore KV namespace %s into %s: %w (%d key(s) written before the failure; running the same restore again finishes it)",
				np.Source.Title, np.Target.Title, err, written)
		}
	}
	sum.Seconds = time.Since(start).Seconds()
	var b strings.Builder
	for _, np := range p.json.Namespaces {
		if np.File != "" {
			fmt.Fprintf(&b, "KV namespace %s: %d key(s) written to %s (a bulk-write JSON array).\n", np.Source.Title, np.Keys, np.File)
		} else {
			fmt.Fprintf(&b, "KV namespace %s → %s: %d key(s) written (%d replaced, %d new), %d already identical.\n", np.Source.Title, np.Target.Title, np.Keys, np.Overwrite, np.Create, np.Same)
			if np.Delete > 0 {
				fmt.Fprintf(&b, "  %d key(s) the snapshot records as absent deleted.\n", np.Delete)
			}
		}
		if np.Expired > 0 {
			fmt.Fprintf(&b, "  %d expired key(s) left out.\n", np.Expired)
		}
	}
	return &source.RestoreResult{JSON: sum, Text: b.String()}, nil
}

// toNamespace writes the selected pairs with bulk writes of at most KVBulkPutPairs pairs and
// WriteBudget bytes.
func (p *restorePlan) toNamespace(ctx context.Context, np *NamespacePlan, t time.Time, pr source.Progress) (written, exp, size int64, err error) {
	var batch []cloudflare.KVWrite
	bytesIn := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := p.c.BulkPutKV(ctx, np.Target.ID, batch); err != nil {
			return err
		}
		written += int64(len(batch))
		batch, bytesIn = batch[:0], 0
		return nil
	}
	for _, it := range np.items {
		err := readItem(ctx, p.req.Open, it, func(e Entry, v io.Reader) error {
			if !p.sel.match(e.Key) {
				return nil
			}
			if expired(e.Expiration, t) {
				exp++
				return nil
			}
			if np.same[e.Key] {
				return nil
			}
			val, err := io.ReadAll(v)
			if err != nil {
				return err
			}
			w := cloudflare.KVWrite{Key: e.Key, Value: val, Expiration: e.Expiration, Metadata: e.Metadata}
			n := cloudflare.KVWriteSize(w)
			if len(batch) >= cloudflare.KVBulkPutPairs || (len(batch) > 0 && bytesIn+n > WriteBudget) {
				if err := flush(); err != nil {
					return err
				}
			}
			batch = append(batch, w)
			bytesIn += n
			size += int64(len(val))
			pr.Add(len(val))
			return nil
		})
		if err != nil {
			return written, exp, size, err
		}
	}
	if err := flush(); err != nil {
		return written, exp, size, err
	}
	for i := 0; i < len(np.remove); i += cloudflare.KVBulkPutPairs {
		if err := p.c.BulkDeleteKV(ctx, np.Target.ID, np.remove[i:min(i+cloudflare.KVBulkPutPairs, len(np.remove))]); err != nil {
			return written, exp, size, err
		}
	}
	return written, exp, size, nil
}

// toFile writes the selected pairs as one JSON array in the bulk-write shape (key, value, base64,
// expiration, metadata) to FILE.partial, then renames it.
func (p *restorePlan) toFile(ctx context.Context, np *NamespacePlan, pr source.Progress) (written, size int64, err error) {
	if err := os.MkdirAll(filepath.Dir(np.File), 0o700); err != nil {
		return 0, 0, err
	}
	written, size, err = writeJSONFile(ctx, np.File, np.items, p.req.Open, p.sel.match, pr.Add)
	return written, size, err
}

// writeJSONFile writes the entries of items that keep accepts to file (via file.partial).
func writeJSONFile(ctx context.Context, file string, items []manifest.Item, open source.Opener, keep func(string) bool, progress func(int)) (written, size int64, err error) {
	tmp := file + ".partial"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, 0, err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.WriteString("["); err != nil {
		return 0, 0, err
	}
	for _, it := range items {
		err = readItem(ctx, open, it, func(e Entry, v io.Reader) error {
			if !keep(e.Key) {
				return nil
			}
			val, err := io.ReadAll(v)
			if err != nil {
				return err
			}
			b, err := cloudflare.EncodeKVWrites([]cloudflare.KVWrite{{Key: e.Key, Value: val, Expiration: e.Expiration, Metadata: e.Metadata}})
			if err != nil {
				return err
			}
			b = bytes.TrimSuffix(bytes.TrimPrefix(b, []byte("[")), []byte("]"))
			sep := ",\n"
			if written == 0 {
				sep = "\n"
			}
			if _, err := f.WriteString(sep); err != nil {
				return err
			}
			if _, err := f.Write(b); err != nil {
				return err
			}
			written++
			size += int64(len(val))
			progress(len(val))
			return nil
		})
		if err != nil {
			return written, size, err
		}
	}
	if _, err = f.WriteString("\n]\n"); err != nil {
		return written, size, err
	}
	if err = f.Sync(); err != nil {
		return written, size, err
	}
	if err = f.Close(); err != nil {
		return written, size, err
	}
	return written, size, os.Rename(tmp, file)
}
