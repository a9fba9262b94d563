package retention

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Components whose policies the config may set (besides "default").
var Components = []string{"d1", "do", "r2", "config"}

// ParseConfig reads the `retention:` block of the config file:
//
//	retention:
//	  timezone: Europe/Berlin      # calendar rules' time zone (default UTC)
//	  default: {keep_daily: 7}
//	  d1: {keep_daily: 30, keep_monthly: 12, require_within: 26h}
//	  sources:
//	    d1/app: {keep_last: 48}
//
// Unknown keys, negative counts and bad durations are errors wrapping ErrPolicy.
func ParseConfig(block map[string]any) (Policies, error) {
	ps := Policies{Location: time.UTC}
	for _, k := range slices.Sorted(maps.Keys(block)) {
		v := block[k]
		switch {
		case k == "timezone":
			s, ok := v.(string)
			if !ok {
				return ps, fmt.Errorf("%w: retention.timezone must be a name like UTC or Europe/Berlin", ErrPolicy)
			}
			loc, err := time.LoadLocation(s)
			if err != nil {
				return ps, fmt.Errorf("%w: retention.timezone %q: %v", ErrPolicy, s, err)
			}
			ps.Location = loc
		case k == "default":
			p, err := parsePolicy("retention.default", v)
			if err != nil {
				return ps, err
			}
			ps.Default = p
		case k == "sources":
			m, ok := toMap(v)
			if !ok {
				return ps, fmt.Errorf("%w: retention.sources must map component/source to a policy", ErrPolicy)
			}
			ps.Sources = map[string]Policy{}
			for _, sk := range slices.Sorted(maps.Keys(m)) {
				comp, _, ok := strings.Cut(sk, "/")
				if !ok || !isComponent(comp) {
					return ps, fmt.Errorf("%w: retention.sources key %q: write component/source, e.g. d1/app (components: %s)", ErrPolicy, sk, strings.Join(Components, ", "))
				}
				p, err := parsePolicy("retention.sources."+sk, m[sk])
				if err != nil {
					return ps, err
				}
				ps.Sources[sk] = p
			}
		case isComponent(k):
			p, err := parsePolicy("retention."+k, v)
			if err != nil {
				return ps, err
			}
			if ps.Components == nil {
				ps.Components = map[string]Policy{}
			}
			ps.Components[k] = p
		default:
			return ps, fmt.Errorf("%w: unknown key retention.%s (keys: timezone, default, sources, %s)", ErrPolicy, k, strings.Join(Components, ", "))
		}
	}
	return ps, ps.Validate()
}

// PolicyKeys are the keys one policy may have, in the config file and as --keep-* flags.
var PolicyKeys = []string{"keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly", "keep_within", "keep_label", "require_within"}

func parsePolicy(where string, v any) (Policy, error) {
	var p Policy
	m, ok := toMap(v)
	if !ok {
		return p, fmt.Errorf("%w: %s must be a map of %s", ErrPolicy, where, strings.Join(PolicyKeys, ", "))
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		val := m[k]
		var err error
		switch k {
		case "keep_last":
			p.Last, err = toInt(val)
		case "keep_hourly":
			p.Hourly, err = toInt(val)
		case "keep_daily":
			p.Daily, err = toInt(val)
		case "keep_weekly":
			p.Weekly, err = toInt(val)
		case "keep_monthly":
			p.Monthly, err = toInt(val)
		case "keep_yearly":
			p.Yearly, err = toInt(val)
		case "keep_within":
			p.Within, err = ParseDuration(fmt.Sprint(val))
		case "require_within":
			p.RequireWithin, err = ParseDuration(fmt.Sprint(val))
		case "keep_label":
			p.Labels, err = toLabels(val)
		default:
			return p, fmt.Errorf("%w: unknown key %s.%s (keys: %s)", ErrPolicy, where, k, strings.Join(PolicyKeys, ", "))
		}
		if err != nil {
			return p, fmt.Errorf("%w: %s.%s: %v", ErrPolicy, where, k, err)
		}
	}
	if err := p.Validate(); err != nil {
		return p, fmt.Errorf("%s: %w", where, err)
	}
	return p, nil
}

// ParseLabels reads key=value pairs (from --keep-label flags or the config file).
func ParseLabels(in []string) (map[string]string, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, l := range in {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%w: label %q: use key=value", ErrPolicy, l)
		}
		out[k] = v
	}
	return out, nil
}

func toLabels(v any) (map[string]string, error) {
	switch x := v.(type) {
	case string:
		return ParseLabels([]string{x})
	case []any:
		var ss []string
		for _, e := range x {
			ss = append(ss, fmt.Sprint(e))
		}
		return ParseLabels(ss)
	case []string:
		return ParseLabels(x)
	}
	if m, ok := toMap(v); ok {
		out := map[string]string{}
		for k, e := range m {
			out[k] = fmt.Sprint(e)
		}
		return out, nil
	}
	return nil, fmt.Errorf("use key=value, a list of them, or a map")
}

func toInt(v any) (int, error) {
	switch x := v.(type) {
	case int:
		return x, nil
	case int64:
		return int(x), nil
	case float64:
		if x != float64(int(x)) {
			return 0, fmt.Errorf("%v is not a whole number", x)
		}
		return int(x), nil
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(x))
		if err != nil {
			return 0, fmt.Errorf("%q is not a whole number", x)
		}
		return n, nil
	}
	return 0, fmt.Errorf("%v is not a whole number", v)
}

func toMap(v any) (map[string]any, bool) {
	switch x := v.(type) {
	case map[string]any:
		return x, true
	case map[any]any:
		out := map[string]any{}
		for k, e := range x {
			out[fmt.Sprint(k)] = e
		}
		return out, true
	case nil:
		return map[string]any{}, true
	}
	return nil, false
}

func isComponent(s string) bool {
	for _, c := range Components {
		if c == s {
			return true
		}
	}
	return false
}
