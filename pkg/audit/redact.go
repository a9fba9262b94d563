package audit

import (
	"net/url"
	"regexp"
	"strings"
)

// Redacted replaces every secret value in recorded arguments.
const Redacted = "[REDACTED]"

// secretName matches flag or variable names whose value is a secret. Paths to secret files
// (--identity-file, --writer-key-file) are not secrets and are kept.
var secretName = regexp.MustCompile(`(?i)(token|secret|passw|pwd|credential|api[-_]?key|access[-_]?key|private[-_]?key|auth|webhook|session)`)

var fileName = regexp.MustCompile(`(?i)[-_](file|path|dir)$`)

// secretValue matches values that are secrets whatever flag carries them, wherever they appear in
// an argument (alone, after NAME=, inside a sentence): age identities, Slack, GitHub and Stripe
// tokens, AWS access key ids.
var secretValue = regexp.MustCompile(`(?i)(AGE-SECRET-KEY-|AGE-PLUGIN-|\bxox[abpr]-|\bgh[pousr]_|\bsk_live_|\bAKIA[0-9A-Z]{12})[^\s"',;]*`)

// urlInText finds URLs inside free text.
var urlInText = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>]+`)

func isSecretName(name string) bool {
	name = strings.TrimLeft(name, "-")
	return secretName.MatchString(name) && !fileName.MatchString(name)
}

// RedactArgs returns a copy of a command line with secrets removed: the value of any flag whose name
// looks like a secret (--token X, --api-token=X, --smtp-password …), any NAME=VALUE whose NAME does,
// values that look like keys or tokens (AGE-SECRET-KEY-…, xoxb-…), and URLs' passwords and query strings.
func RedactArgs(args []string) []string {
	out := make([]string, len(args))
	redactNext := false
	for i, a := range args {
		switch {
		case redactNext:
			out[i] = Redacted
			redactNext = false
			continue
		case strings.HasPrefix(a, "-") && a != "-" && a != "--":
			name, val, hasVal := strings.Cut(a, "=")
			if isSecretName(name) {
				if hasVal {
					out[i] = name + "=" + Redacted
				} else {
					redactNext = true
					out[i] = a
				}
				continue
			}
			if hasVal {
				out[i] = name + "=" + RedactValue(val)
				continue
			}
			out[i] = a
		default:
			out[i] = RedactValue(a)
		}
	}
	return out
}

// RedactValue removes secrets from one argument value: a NAME=VALUE whose NAME looks like a secret
// loses its VALUE, so does one whose VALUE holds a key-shaped token (note=AGE-SECRET-KEY-1…);
// key-shaped tokens anywhere else are replaced; URLs lose their passwords and query strings.
func RedactValue(v string) string {
	if name, val, ok := strings.Cut(v, "="); ok && !strings.Contains(name, "/") && !strings.Contains(name, " ") {
		if isSecretName(name) || secretValue.MatchString(val) {
			return name + "=" + Redacted
		}
		return name + "=" + RedactValue(val)
	}
	if secretValue.MatchString(v) {
		if loc := secretValue.FindStringIndex(v); loc[0] == 0 && loc[1] == len(v) {
			return Redacted
		}
		return secretValue.ReplaceAllString(v, Redacted)
	}
	if u, err := url.Parse(v); err == nil && u.Scheme != "" && u.Host != "" {
		return RedactURL(u)
	}
	return v
}

// RedactText removes secrets from free text such as an error message: URLs inside it lose their
// passwords and query strings, key-shaped tokens are replaced.
func RedactText(s string) string {
	s = secretValue.ReplaceAllString(s, Redacted)
	return urlInText.ReplaceAllStringFunc(s, func(raw string) string {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			return raw
		}
		return RedactURL(u)
	})
}

// RedactURL keeps a URL's scheme, user, host and path, and removes a password and the query string,
// either of which can hold a token. (Webhook URLs, whose path is the secret, are only read from the
// environment or the config file, and a --*webhook* flag's value is redacted whole.)
func RedactURL(u *url.URL) string {
	c := *u
	changed := false
	if c.User != nil {
		c.User = url.User(c.User.Username())
		if _, has := u.User.Password(); has {
			c.User = url.UserPassword(c.User.Username(), "REDACTED")
		}
		changed = true
	}
	if c.RawQuery != "" {
		c.RawQuery = "REDACTED"
		changed = true
	}
	if !changed {
		return u.String()
	}
	return c.String()
}
