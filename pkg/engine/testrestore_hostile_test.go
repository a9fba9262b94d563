package engine_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cfbackup/cfbackup/internal/cftest"
	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/source/d1"
	"github.com/cfbackup/cfbackup/pkg/source/d1/sqldump"
)

// appendToExport adds SQL to every D1 export download (the signed URL), as a tampered export
// stream or a compromised backup host would put it into the repository.
type appendToExport struct {
	extra string
	hits  int
}

func (a *appendToExport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil || !strings.Contains(req.URL.Path, "/signed/") || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	a.hits++
	b = append(b, a.extra...)
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
	return resp, nil
}

// TestTestRestoreRefusesHostileD1SQL: a snapshot whose D1 dump ATTACHes a victim database and deletes
// its rows is refused by test-restore (the scheduled drill) and by restore --to-file: integrity
// errors naming the statement, the victim byte-identical, nothing written beside the scratch files.
func TestTestRestoreRefusesHostileD1SQL(t *testing.T) {
	ctx := context.Background()
	outside := t.TempDir()
	victim := filepath.Join(outside, "victim.db")
	vdb, err := sql.Open("sqlite", victim)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vdb.Exec("CREATE TABLE accounts(owner TEXT); INSERT INTO accounts VALUES('ann'),('bob')"); err != nil {
		t.Fatal(err)
	}
	vdb.Close()
	before, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	rt := &appendToExport{extra: "\nATTACH DATABASE '" + victim + "' AS v;\nDELETE FROM v.accounts;\nATTACH '" + filepath.Join(outside, "authorized_keys") + "' AS k;"}
	f := newFixtureWith(t, 5, cftest.Options{}, rt)
	m, err := f.backup(t, ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rt.hits == 0 {
		t.Fatal("the export was never downloaded through the tampering transport")
	}
	scratch := filepath.Join(t.TempDir(), "scratch")
	res, err := f.eng.TestRestore(ctx, m, engine.TestRestoreOptions{Identities: f.ids, ScratchDir: scratch})
	if !errors.Is(err, engine.ErrIntegrity) || !strings.Contains(err.Error(), "not allowed in a D1 dump") || !strings.Contains(err.Error(), "ATTACH") {
		t.Fatalf("test-restore: %v (result %+v), want an integrity error naming the ATTACH", err, res)
	}

	cat, err := engine.OpenCatalogue(m, f.ids)
	if err != nil {
		t.Fatal(err)
	}
	sel, err := d1.Select(cat, f.dbUUID, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "restored.sqlite")
	if _, err := d1.RestoreToFile(ctx, f.eng.Opener(m, f.ids), sel, out); !errors.Is(err, sqldump.ErrNotAllowed) {
		t.Fatalf("restore --to-file: %v, want ErrNotAllowed", err)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused restore left %s (%v)", out, err)
	}

	after, err := os.ReadFile(victim)
	if err != nil || sha256.Sum256(after) != sha256.Sum256(before) {
		t.Errorf("victim database changed (%v)", err)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("beside the victim: %v", names)
	}
}
