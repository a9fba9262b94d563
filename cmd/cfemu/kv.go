package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/cfbackup/cfbackup/internal/cftest"
)

// seedKV adds the --kv TITLE[=N] namespaces, filling new ones with N generated keys.
func seedKV(srv *cftest.Server, specs []string) error {
	for _, spec := range specs {
		title, count, hasN := strings.Cut(spec, "=")
		n := 0
		if hasN {
			v, err := strconv.Atoi(count)
			if err != nil || v < 0 {
				return fmt.Errorf("%w: --kv wants TITLE or TITLE=N, got %q", errUsage, spec)
			}
			n = v
		}
		if title == "" {
			return fmt.Errorf("%w: --kv wants TITLE or TITLE=N, got %q", errUsage, spec)
		}
		if _, err := srv.SeedKV(title, n, 1); err != nil {
			return err
		}
	}
	return nil
}
