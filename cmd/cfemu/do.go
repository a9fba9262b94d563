package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cfbackup/cfbackup/internal/cftest"
)

// parseDOSpec reads --do SCRIPT/CLASS=PERSIST_DIR[,kv]. The objects are the <id>.sqlite files a
// local workerd keeps in PERSIST_DIR/SCRIPT-CLASS (miniflare's durableObjectsPersist) or
// PERSIST_DIR/v3/do/SCRIPT-CLASS (wrangler dev --persist-to). The namespace id is derived from
// SCRIPT/CLASS, so it is stable across runs (backups and restores find the same namespace).
func parseDOSpec(spec string) (cftest.Namespace, string, error) {
	name, dir, ok := strings.Cut(spec, "=")
	script, class, ok2 := strings.Cut(name, "/")
	if !ok || !ok2 || script == "" || class == "" || dir == "" {
		return cftest.Namespace{}, "", fmt.Errorf("%w: --do wants SCRIPT/CLASS=PERSIST_DIR[,kv], got %q", errUsage, spec)
	}
	sqlite := true
	if d, ok := strings.CutSuffix(dir, ",kv"); ok {
		dir, sqlite = d, false
	}
	if st, err := os.Stat(filepath.Join(dir, "v3", "do")); err == nil && st.IsDir() {
		dir = filepath.Join(dir, "v3", "do")
	}
	sum := sha256.Sum256([]byte(script + "/" + class))
	ns := cftest.Namespace{ID: hex.EncodeToString(sum[:16]), Class: class, Name: script + "_" + class, Script: script, UseSQLite: sqlite}
	return ns, cftest.StateDir(dir, script, class), nil
}
