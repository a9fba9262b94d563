package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Change is one difference between a snapshot (Old) and the live account (New).
type Change struct {
	// Scope is "inventory" or "script NAME".
	Scope string `json:"scope"`
	// Path locates the value inside the document: dotted keys, and list elements by their identity
	// ("settings.bindings[name=API_URL].text", "schedules[cron=0 3 * * *]"); "" is the whole document.
	Path string `json:"path"`
	// Kind is "added" (only live), "removed" (only in the snapshot) or "changed".
	Kind string `json:"kind"`
	Old  any    `json:"old,omitempty"`
	New  any    `json:"new,omitempty"`
}

// IgnoredKeys are fields that change on every deployment without changing the configuration; Diff
// skips them wherever they appear.
var IgnoredKeys = map[string]bool{"modified_on": true, "etag": true}

// identityKeys name list elements, in order of preference, when every element has the key.
var identityKeys = []string{"name", "id", "uuid", "hostname", "cron", "pattern"}

// Diff compares a snapshot's configuration with the live account's, the inventory first, then each
// script in name order. An empty result means they are the same (IgnoredKeys aside).
func Diff(old, cur *State) []Change {
	var out []Change
	diffValue("inventory", "", old.Inventory, cur.Inventory, &out)
	names := map[string]bool{}
	for n := range old.Scripts {
		names[n] = true
	}
	for n := range cur.Scripts {
		names[n] = true
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	for _, n := range sorted {
		a, inOld := old.Scripts[n]
		b, inCur := cur.Scripts[n]
		scope := "script " + n
		switch {
		case !inCur:
			out = append(out, Change{Scope: scope, Kind: "removed"})
		case !inOld:
			out = append(out, Change{Scope: scope, Kind: "added"})
		default:
			diffValue(scope, "", a, b, &out)
		}
	}
	return out
}

func diffValue(scope, path string, a, b any, out *[]Change) {
	am, aIsMap := a.(Doc)
	bm, bIsMap := b.(Doc)
	if aIsMap && bIsMap {
		keys := map[string]bool{}
		for k := range am {
			keys[k] = true
		}
		for k := range bm {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			if !IgnoredKeys[k] {
				sorted = append(sorted, k)
			}
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			p := k
			if path != "" {
				p = path + "." + k
			}
			av, inA := am[k]
			bv, inB := bm[k]
			switch {
			case !inB:
				*out = append(*out, Change{Scope: scope, Path: p, Kind: "removed", Old: av})
			case !inA:
				*out = append(*out, Change{Scope: scope, Path: p, Kind: "added", New: bv})
			default:
				diffValue(scope, p, av, bv, out)
			}
		}
		return
	}
	al, aIsList := a.([]any)
	bl, bIsList := b.([]any)
	if aIsList && bIsList {
		if as, bs, ok := stringSets(al, bl); ok {
			diffSets(scope, path, as, bs, out)
			return
		}
		if key := identityOf(al, bl); key != "" {
			diffKeyed(scope, path, key, al, bl, out)
			return
		}
		if len(al) == len(bl) {
			for i := range al {
				diffValue(scope, fmt.Sprintf("%s[%d]", path, i), al[i], bl[i], out)
			}
			return
		}
	}
	if !equal(a, b) {
		*out = append(*out, Change{Scope: scope, Path: path, Kind: "changed", Old: a, New: b})
	}
}

// stringSets reports whether both lists hold only distinct strings (names, flags, tags): those are
// compared as sets, element by element.
func stringSets(a, b []any) (map[string]bool, map[string]bool, bool) {
	if len(a)+len(b) == 0 {
		return nil, nil, false
	}
	conv := func(l []any) (map[string]bool, bool) {
		m := map[string]bool{}
		for _, e := range l {
			s, ok := e.(string)
			if !ok || m[s] {
				return nil, false
			}
			m[s] = true
		}
		return m, true
	}
	as, ok1 := conv(a)
	bs, ok2 := conv(b)
	return as, bs, ok1 && ok2
}

func diffSets(scope, path string, a, b map[string]bool, out *[]Change) {
	all := make([]string, 0, len(a)+len(b))
	for s := range a {
		all = append(all, s)
	}
	for s := range b {
		if !a[s] {
			all = append(all, s)
		}
	}
	sort.Strings(all)
	for _, s := range all {
		p := fmt.Sprintf("%s[%q]", path, s)
		switch {
		case !b[s]:
			*out = append(*out, Change{Scope: scope, Path: p, Kind: "removed", Old: s})
		case !a[s]:
			*out = append(*out, Change{Scope: scope, Path: p, Kind: "added", New: s})
		}
	}
}

// identityOf picks the key that names every element of both lists uniquely, or "".
func identityOf(a, b []any) string {
	if len(a)+len(b) == 0 {
		return ""
	}
next:
	for _, k := range identityKeys {
		for _, l := range [][]any{a, b} {
			seen := map[string]bool{}
			for _, e := range l {
				m, ok := e.(Doc)
				if !ok {
					return ""
				}
				v, ok := m[k].(string)
				if !ok || seen[v] {
					continue next
				}
				seen[v] = true
			}
		}
		return k
	}
	return ""
}

func diffKeyed(scope, path, key string, a, b []any, out *[]Change) {
	index := func(l []any) (map[string]any, []string) {
		m := map[string]any{}
		var order []string
		for _, e := range l {
			v := e.(Doc)[key].(string)
			m[v] = e
			order = append(order, v)
		}
		return m, order
	}
	am, aOrder := index(a)
	bm, bOrder := index(b)
	ids := append(append([]string{}, aOrder...), bOrder...)
	sort.Strings(ids)
	last := ""
	for i, id := range ids {
		if i > 0 && id == last {
			continue
		}
		last = id
		p := fmt.Sprintf("%s[%s=%s]", path, key, id)
		av, inA := am[id]
		bv, inB := bm[id]
		switch {
		case !inB:
			*out = append(*out, Change{Scope: scope, Path: p, Kind: "removed", Old: av})
		case !inA:
			*out = append(*out, Change{Scope: scope, Path: p, Kind: "added", New: bv})
		default:
			diffValue(scope, p, av, bv, out)
		}
	}
}

func equal(a, b any) bool {
	x, err1 := Encode(a)
	y, err2 := Encode(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

// WriteText prints changes for people: one line each, "-" only in the snapshot, "+" only live,
// "~" changed (old → new), values as compact JSON.
func WriteText(w io.Writer, changes []Change) {
	for _, c := range changes {
		where := c.Scope
		if c.Path != "" {
			where += ": " + c.Path
		}
		switch c.Kind {
		case "removed":
			if c.Path == "" {
				fmt.Fprintf(w, "- %s (in the snapshot, not in the account)\n", where)
			} else {
				fmt.Fprintf(w, "- %s = %s\n", where, compact(c.Old))
			}
		case "added":
			if c.Path == "" {
				fmt.Fprintf(w, "+ %s (in the account, not in the snapshot)\n", where)
			} else {
				fmt.Fprintf(w, "+ %s = %s\n", where, compact(c.New))
			}
		default:
			fmt.Fprintf(w, "~ %s: %s → %s\n", where, compact(c.Old), compact(c.New))
		}
	}
}

func compact(v any) string {
	b, err := Encode(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return strings.TrimSpace(string(b))
	}
	s := buf.String()
	if len(s) > 200 {
		s = s[:197] + "..."
	}
	return s
}
