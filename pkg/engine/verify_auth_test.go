package engine_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// The scheduled verify finds damage in what the next backup relies on: a side object (an R2 index)
// that no longer matches its recorded hash (quick verify), and a keys/writer.age replaced by someone
// who could only encrypt to the public recipients (read-data verify, which holds an identity).
func TestVerifyChecksSideObjectsAndWriterSecret(t *testing.T) {
	f := newFixture(t, 10)
	ctx := context.Background()
	m, err := f.backup(t, ctx)
	if err != nil {
		t.Fatal(err)
	}
	full, err := f.repo.LoadManifest(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte("an index the next incremental backup reads")
	sum := sha256.Sum256(body)
	if err := f.repo.Store.Put(ctx, "index/x.idx", bytes.NewReader(body), store.PutOptions{IfNotExists: true}); err != nil {
		t.Fatal(err)
	}
	with := *full
	with.ID = "00000000000000aa"
	with.Objects = []manifest.Object{{Key: "index/x.idx", Size: int64(len(body)), SHA256: hex.EncodeToString(sum[:])}}
	if err := f.repo.SaveManifest(ctx, &with); err != nil {
		t.Fatal(err)
	}
	if _, err := f.eng.Verify(ctx, &with, engine.VerifyOptions{}); err != nil {
		t.Fatalf("intact side object: %v", err)
	}
	if err := f.repo.Store.Put(ctx, "index/x.idx", strings.NewReader("an index the next incremental backup reaD"), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := f.eng.Verify(ctx, &with, engine.VerifyOptions{})
	if err == nil || res == nil || !strings.Contains(strings.Join(res.Problems, ";"), "object index/x.idx") {
		t.Fatalf("damaged side object not found by quick verify: %v %+v", err, res)
	}

	// keys/writer.age replaced with another secret encrypted to the same (public) recipient.
	rcp, err := age.ParseX25519Recipient(f.repo.Config.Recipients[0].Recipient)
	if err != nil {
		t.Fatal(err)
	}
	var enc bytes.Buffer
	w, _ := age.Encrypt(&enc, rcp)
	w.Write([]byte(strings.Repeat("ab", 32) + "\n"))
	w.Close()
	if err := f.repo.Store.Put(ctx, repo.WriterKeyKey, &enc, store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err = f.eng.Verify(ctx, m, engine.VerifyOptions{ReadData: true, Identities: f.ids})
	if err == nil || res == nil || !strings.Contains(strings.Join(res.Problems, ";"), "it was replaced") {
		t.Fatalf("replaced writer secret not found by read-data verify: %v %+v", err, res)
	}
}
