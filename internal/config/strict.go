package config

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Strict configuration: a misspelt key must not silently fall back to a default (a `repositry:` that
// backs up into the wrong place), so every key of the config file and every CFBACKUP_* variable is
// checked against what this build reads, and the error names the nearest valid one.

// secretKeys are settings that exist only as environment variables: in the config file they are
// refused with the variable to use instead.
var secretKeys = map[string]string{
	"cloudflare_api_token":       "CLOUDFLARE_API_TOKEN",
	"aws_access_key_id":          "AWS_ACCESS_KEY_ID",
	"aws_secret_access_key":      "AWS_SECRET_ACCESS_KEY",
	"aws_session_token":          "AWS_SESSION_TOKEN",
	"smtp_password":              "CFBACKUP_SMTP_PASSWORD",
	"notify_webhook":             "CFBACKUP_NOTIFY_WEBHOOK",
	"r2_access_key_id":           "CFBACKUP_R2_ACCESS_KEY_ID",
	"r2_secret_access_key":       "CFBACKUP_R2_SECRET_ACCESS_KEY",
	"worker_secret":              "CFBACKUP_WORKER_SECRET",
	"test_restore_worker_secret": "CFBACKUP_TEST_RESTORE_WORKER_SECRET",
}

// extraEnv are CFBACKUP_* variables read outside the config keys: the config file's path, the actor
// of the audit trail, the Worker's own secret (set for wrangler and the test harness), profiling
// (cmd/cfbackup/profile.go), the test harnesses, and the scheduling examples' wrappers.
var extraEnv = []string{
	"CFBACKUP_CONFIG", "CFBACKUP_ACTOR", "CFBACKUP_SECRET", "CFBACKUP_SHARD_RUN",
	"CFBACKUP_CPUPROFILE", "CFBACKUP_MEMPROFILE", "CFBACKUP_TRACE", "CFBACKUP_HEAPAT",
	"CFBACKUP_VERSITYGW", "CFBACKUP_KEEP_REPORT",
	// The scheduling examples' wrappers (cron script, systemd units, CI pipelines; docs/SCHEDULING.md)
	// read these themselves and leave them in cfbackup's environment.
	"CFBACKUP_BIN", "CFBACKUP_COMPONENTS", "CFBACKUP_CREDENTIALS_DIR", "CFBACKUP_ENV_FILE",
	"CFBACKUP_FAILURE_MAILTO", "CFBACKUP_IDENTITY", "CFBACKUP_LOCK_DIR", "CFBACKUP_TASK",
	"CFBACKUP_VERSION", "CFBACKUP_WRITER_KEY",
}

// extraEnvPrefixes are families of variables: per-replica S3 keys and the test harnesses' knobs.
var extraEnvPrefixes = []string{"CFBACKUP_REPLICA_", "CFBACKUP_FAULT_", "CFBACKUP_FUZZ_", "CFBACKUP_BENCH_", "CFBACKUP_SCALE_"}

// envHints are variables people set by mistake for a secret with a well-known name of its own.
var envHints = map[string]string{
	"CFBACKUP_CLOUDFLARE_API_TOKEN":  "CLOUDFLARE_API_TOKEN",
	"CFBACKUP_AWS_ACCESS_KEY_ID":     "AWS_ACCESS_KEY_ID",
	"CFBACKUP_AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
	"CFBACKUP_AWS_SESSION_TOKEN":     "AWS_SESSION_TOKEN",
	"CFBACKUP_REPO":                  "CFBACKUP_REPOSITORY",
}

// KnownEnv lists every CFBACKUP_* variable this build reads by exact name (sorted): one per config
// key, plus the secrets and the extras.
func KnownEnv() []string {
	var out []string
	for _, k := range fieldKeys(reflect.TypeOf(Config{})) {
		out = append(out, "CFBACKUP_"+strings.ToUpper(k))
	}
	for _, env := range secretKeys {
		if strings.HasPrefix(env, "CFBACKUP_") {
			out = append(out, env)
		}
	}
	out = append(out, extraEnv...)
	sort.Strings(out)
	return out
}

// CheckEnviron refuses a CFBACKUP_* variable this build does not read (environ is os.Environ's
// KEY=VALUE list), naming the nearest one it does. An empty one is as good as unset and passes.
func CheckEnviron(environ []string) error {
	known := KnownEnv()
	set := map[string]bool{}
	for _, k := range known {
		set[k] = true
	}
	var unknown []string
	for _, kv := range environ {
		name, val, _ := strings.Cut(kv, "=")
		if val == "" || !strings.HasPrefix(name, "CFBACKUP_") || set[name] || hasAnyPrefix(name, extraEnvPrefixes) {
			continue
		}
		unknown = append(unknown, name)
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	name := unknown[0]
	hint := envHints[name]
	if hint == "" {
		hint = nearest(name, known)
	}
	return fmt.Errorf("%w: unknown environment variable %s: did you mean %s? Unset it or rename it (docs/CONFIG.md lists every variable)", ErrInvalid, name, hint)
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// checkKeys walks the config file's settings (viper's AllSettings of the file alone: nested maps,
// keys lower-cased) against Config's mapstructure tags and reports the first unknown key.
func checkKeys(file string, settings map[string]any) error {
	if msg := walkKeys(reflect.TypeOf(Config{}), settings, ""); msg != "" {
		return fmt.Errorf("%w: config file %s: %s", ErrInvalid, file, msg)
	}
	return nil
}

// walkKeys checks the value v of a setting of type t at path; it returns a message naming the first
// unknown key, or "".
func walkKeys(t reflect.Type, v any, path string) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return "" // a type mismatch is the decoder's to report
		}
		fields := map[string]reflect.Type{}
		for i := 0; i < t.NumField(); i++ {
			tag, _, _ := strings.Cut(t.Field(i).Tag.Get("mapstructure"), ",")
			if tag != "" && tag != "-" {
				fields[tag] = t.Field(i).Type
			}
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			ft, ok := fields[strings.ToLower(k)]
			if !ok {
				return unknownKey(path, k, fields)
			}
			if msg := walkKeys(ft, m[k], join(path, k)); msg != "" {
				return msg
			}
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok || t.Elem().Kind() == reflect.Interface {
			return "" // free-form blocks (retention) are validated by their parsers
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if msg := walkKeys(t.Elem(), m[k], join(path, k)); msg != "" {
				return msg
			}
		}
	case reflect.Slice:
		s, ok := v.([]any)
		if !ok {
			return ""
		}
		for i, e := range s {
			if msg := walkKeys(t.Elem(), e, path+"["+strconv.Itoa(i)+"]"); msg != "" {
				return msg
			}
		}
	}
	return ""
}

func unknownKey(path, k string, fields map[string]reflect.Type) string {
	full := join(path, k)
	if env, ok := secretKeys[strings.ToLower(k)]; ok && path == "" {
		return fmt.Sprintf("%s is a secret and is never read from a file: set %s in the environment instead, and remove the key", full, env)
	}
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	sort.Strings(names)
	return fmt.Sprintf("unknown key %q: did you mean %q? (fix or remove it; docs/CONFIG.md lists every key)", full, join(path, nearest(strings.ToLower(k), names)))
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

// fieldKeys are the top-level config keys (mapstructure tags) of t.
func fieldKeys(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("mapstructure"), ","); tag != "" && tag != "-" {
			out = append(out, tag)
		}
	}
	return out
}

// nearest is the candidate at the smallest edit distance from s (the first of equals, candidates
// sorted).
func nearest(s string, candidates []string) string {
	best, bestD := "", -1
	for _, c := range candidates {
		if d := levenshtein(s, c); bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// levenshtein is the edit distance between a and b (insertions, deletions, substitutions).
func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
