package durableobject

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/manifest"
)

// A Durable Object ID is bound to the namespace that minted it, so a restore into another
// namespace (another script, class or account: restore --to-do-namespace) cannot reuse it. Each
// object is placed instead:
//   - by name: the Worker module recorded the name the object was created from (idFromName), and the
//     object is re-created under that name (the module's route name:<name>);
//   - by map: the application supplies --do-id-map FILE, one "<old id> <new id>" or
//     "<old id> name:<name>" per line;
//   - otherwise it cannot be placed: --dry-run names it, and the restore refuses unless
//     --skip-unplaceable leaves such objects out.

// namePrefix marks an object addressed by name in the module's request path.
const namePrefix = "name:"

// NameRef is how the module's route addresses an object by name: name:<name, RFC 3986 encoded>.
func NameRef(name string) string { return namePrefix + rfc3986(name) }

// maxNameBytes bounds an object name in an ID map (idFromName takes any string; this keeps a
// malformed file from being read as one huge name).
const maxNameBytes = 2048

// ErrUnplaceable: objects of a restore into another namespace have neither a recorded name nor an
// entry in the ID map; nothing was changed.
var ErrUnplaceable = errclass.New(errclass.Refused, "Durable Objects cannot be placed in another namespace")

// Placement is how a restore into another namespace places one source namespace's objects
// (restore --dry-run --json: "placement" of each namespace).
type Placement struct {
	// Target is the namespace of the account the objects are restored into.
	Target manifest.Source `json:"target"`
	// ByName objects are re-created under the name they were created from (idFromName).
	ByName int `json:"by_name"`
	// ByMap objects are restored into the object --do-id-map names for them.
	ByMap int `json:"by_map"`
	// Unplaceable objects have no recorded name and no --do-id-map entry: their IDs (all of them).
	Unplaceable []string `json:"unplaceable_ids"`
	// Skipped is true when --skip-unplaceable leaves the unplaceable objects out of the restore.
	Skipped bool `json:"skipped"`
}

// IDMap is an application's mapping of old object IDs to where they go: an object ID of the target
// namespace, or NameRef(name).
type IDMap map[string]string

// ReadIDMap reads --do-id-map: one "<old object id> <new object id>" or "<old object id> name:<name>"
// per line (separated by spaces or a tab; blank lines and # comments skipped). Any other line is a
// usage error naming the file, the line and the fix.
func ReadIDMap(path string) (IDMap, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, usage(fmt.Errorf("--do-id-map: %w", err))
	}
	defer fh.Close()
	m := IDMap{}
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		old, to, err := parseMapLine(line)
		if err != nil {
			return nil, usage(fmt.Errorf("--do-id-map %s line %d: %v; each line is '<old object id> <new object id>' or '<old object id> name:<name>' (IDs are 64 hex digits)", path, n, err))
		}
		if _, dup := m[old]; dup {
			return nil, usage(fmt.Errorf("--do-id-map %s line %d: object %s is mapped twice; map each old ID once", path, n, old))
		}
		m[old] = to
	}
	if err := sc.Err(); err != nil {
		return nil, usage(fmt.Errorf("--do-id-map %s: %v (a line longer than 64 KiB?)", path, err))
	}
	if len(m) == 0 {
		return nil, usage(fmt.Errorf("--do-id-map %s maps no object", path))
	}
	return m, nil
}

func parseMapLine(line string) (old, to string, err error) {
	old, rest, ok := strings.Cut(line, " ")
	if o, r, ok2 := strings.Cut(line, "\t"); !ok || (ok2 && len(o) < len(old)) {
		old, rest, ok = o, r, ok2
	}
	rest = strings.TrimSpace(rest)
	if !ok || rest == "" {
		return "", "", errors.New("expected two fields")
	}
	old = strings.ToLower(old)
	if !ValidObjectID(old) {
		return "", "", fmt.Errorf("old object ID %q is not 64 hex digits", old)
	}
	if name, isName := strings.CutPrefix(rest, namePrefix); isName {
		if name == "" || len(name) > maxNameBytes || !utf8.ValidString(name) {
			return "", "", fmt.Errorf("name %q must be 1 to %d bytes of UTF-8", name, maxNameBytes)
		}
		return old, NameRef(name), nil
	}
	if strings.ContainsAny(rest, " \t") {
		return "", "", errors.New("more than two fields (a name with spaces is written name:<name>)")
	}
	to = strings.ToLower(rest)
	if !ValidObjectID(to) {
		return "", "", fmt.Errorf("new object ID %q is not 64 hex digits", rest)
	}
	return old, to, nil
}

// placeObjects decides where each object of p goes in the target namespace: the ID map first,
// then the recorded name; the rest are unplaceable. It fills p.Placement and p.address.
func placeObjects(p *NamespaceRestore, m IDMap, skip bool) {
	pl := &Placement{Target: manifest.Source{Component: Component, ID: p.target.ID, Name: p.target.Name, Class: p.target.Class}, Unplaceable: []string{}, Skipped: skip}
	p.address = map[string]string{}
	for _, it := range p.items {
		switch {
		case m[it.ObjectID] != "":
			p.address[it.ObjectID] = m[it.ObjectID]
			pl.ByMap++
		case it.ObjectName != "":
			p.address[it.ObjectID] = NameRef(it.ObjectName)
			pl.ByName++
		default:
			pl.Unplaceable = append(pl.Unplaceable, it.ObjectID)
		}
	}
	sort.Strings(pl.Unplaceable)
	p.Placement = pl
	if skip && len(pl.Unplaceable) > 0 {
		kept := p.items[:0:0]
		p.Objects, p.Bytes = 0, 0
		for _, it := range p.items {
			if _, ok := p.address[it.ObjectID]; ok {
				kept = append(kept, it)
				p.Objects++
				p.Bytes += it.Size
			}
		}
		p.items = kept
	}
}

// unplaceable is the error of a restore that would leave objects behind without --skip-unplaceable.
func unplaceable(nsps []NamespaceRestore) error {
	var ids []string
	for _, p := range nsps {
		if p.Placement != nil && !p.Placement.Skipped {
			ids = append(ids, p.Placement.Unplaceable...)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	show := ids
	if len(show) > 5 {
		show = show[:5]
	}
	return fmt.Errorf("%w: %d object(s) have no recorded name (idFromName) and no entry in --do-id-map, so they have no place in the target namespace (IDs are bound to the namespace that minted them): %s%s\nSupply their new IDs or names with --do-id-map FILE ('<old id> <new id>' or '<old id> name:<name>' per line), or leave them out with --skip-unplaceable; restore --dry-run lists them all. Nothing was changed.",
		ErrUnplaceable, len(ids), strings.Join(show, ", "), map[bool]string{true: ", …", false: ""}[len(ids) > len(show)])
}

// findTargetLive resolves the namespace --to-do-namespace names and lists its objects that hold
// data: objects re-created by name have IDs only the runtime can compute, so any of them may be
// overwritten, and all count as live (confirmation, safety snapshot).
func findTargetLive(ctx context.Context, api NamespaceAPI, p *NamespaceRestore, to string) error {
	var err error
	if p.target, err = api.ResolveNamespace(ctx, to); err != nil {
		return fmt.Errorf("--to-do-namespace: %w", err)
	}
	live, _, err := ListStoredObjects(ctx, api, p.target)
	if err != nil {
		return err
	}
	p.Live = append([]string{}, live...)
	return nil
}

// maxListed bounds the unplaceable IDs restore --dry-run prints (the --json plan has all of them).
const maxListed = 20

// placementText is one namespace of restore --dry-run's text when it goes into another namespace.
func placementText(w io.Writer, ns NamespaceRestore) {
	pl := ns.Placement
	fmt.Fprintf(w, "  %s (%s) -> %s (%s, id %s): %d object(s) %s, %d by recorded name, %d by --do-id-map, %d cannot be placed\n",
		ns.Namespace.Name, ns.Namespace.Class, pl.Target.Name, pl.Target.Class, pl.Target.ID, ns.Objects, humanBytes(ns.Bytes), pl.ByName, pl.ByMap, len(pl.Unplaceable))
	if len(ns.Live) > 0 {
		fmt.Fprintf(w, "    the target namespace holds %d object(s) with data; any of them may be overwritten\n", len(ns.Live))
	}
	if len(pl.Unplaceable) == 0 {
		return
	}
	what := "the restore refuses to run until they have a --do-id-map entry, or --skip-unplaceable leaves them out"
	if pl.Skipped {
		what = "left out (--skip-unplaceable)"
	}
	fmt.Fprintf(w, "    cannot be placed (no recorded name, no --do-id-map entry): %s\n", what)
	for i, id := range pl.Unplaceable {
		if i == maxListed {
			fmt.Fprintf(w, "      … and %d more (restore --dry-run --json lists all)\n", len(pl.Unplaceable)-maxListed)
			break
		}
		fmt.Fprintf(w, "      %s\n", id)
	}
}
