package store

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidKey: a key breaks the key rules, so it could escape the repository or collide with a
// store's own temporary files. It is never retryable.
var ErrInvalidKey = errors.New("invalid object key")

// TempPrefix starts the names of the temporary files a store writes before an object becomes
// visible; keys whose path elements start with it are rejected so they can never be listed or clobbered.
const TempPrefix = ".tmp-"

// ValidateKey enforces the key rules of the package contract in one place, so every implementation
// rejects the same keys: non-empty, relative, slash-separated, no "." or ".." or empty elements,
// no backslashes or NUL bytes, and no element starting with TempPrefix.
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	}
	if strings.HasPrefix(key, "/") {
		return fmt.Errorf("%w: %q starts with /", ErrInvalidKey, key)
	}
	if strings.ContainsAny(key, "\\\x00") {
		return fmt.Errorf("%w: %q contains a backslash or NUL", ErrInvalidKey, key)
	}
	for _, el := range strings.Split(key, "/") {
		switch {
		case el == "" || el == ".":
			return fmt.Errorf("%w: %q has an empty or \".\" element", ErrInvalidKey, key)
		case el == "..":
			return fmt.Errorf("%w: %q contains ..", ErrInvalidKey, key)
		case strings.HasPrefix(el, TempPrefix):
			return fmt.Errorf("%w: %q uses the reserved prefix %q", ErrInvalidKey, key, TempPrefix)
		}
	}
	return nil
}

// ValidatePrefix checks a List prefix: like a key but it may be empty or end in "/" or in a partial element.
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	p := strings.TrimSuffix(prefix, "/")
	if p == "" {
		return fmt.Errorf("%w: prefix %q", ErrInvalidKey, prefix)
	}
	return ValidateKey(p)
}
