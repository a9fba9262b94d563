package cftest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver, pure Go
)

// Sentinel errors of the emulated account.
var (
	ErrNotFound       = errors.New("database not found")
	ErrDuplicateName  = errors.New("a database with that name already exists")
	ErrBookmarkTooOld = errors.New("bookmark is outside the Time Travel retention window")
	ErrNoBookmark     = errors.New("no bookmark at or before that time")
)

// snapshot is one Time Travel point: the database file as it was at bookmark.
type snapshot struct {
	Bookmark string    `json:"bookmark"`
	At       time.Time `json:"at"`
	File     string    `json:"file"`
}

// database is one emulated D1 database: a directory with the live SQLite file,
// Time Travel snapshots and uploaded import files. mu serialises writers,
// exports and restores, as D1 runs one operation at a time per database.
type database struct {
	mu        sync.Mutex
	dir       string
	UUID      string    `json:"uuid"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	Order     int64     `json:"order"` // creation order, for stable listing
	// LocationHint and Jurisdiction are what the create request asked for (primary_location_hint,
	// jurisdiction), recorded so tests can see where a restore placed a new database.
	LocationHint string     `json:"primary_location_hint,omitempty"`
	Jurisdiction string     `json:"jurisdiction,omitempty"`
	Seq          uint32     `json:"seq"`
	Snapshots    []snapshot `json:"snapshots"`
}

func (d *database) path() string { return filepath.Join(d.dir, "db.sqlite") }

func dsn(path string) string {
	return "file:" + path + "?_pragma=foreign_keys(1)&_pragma=busy_timeout(10000)"
}

func (d *database) open() (*sql.DB, error) {
	db, err := sql.Open("sqlite", dsn(d.path()))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", d.UUID, err)
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

func (d *database) saveMeta() error {
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(d.dir, "meta.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(d.dir, "meta.json"))
}

func (d *database) current() snapshot { return d.Snapshots[len(d.Snapshots)-1] }

// newBookmark makes a lexically sortable bookmark shaped like D1's
// "00000085-0000024c-00004c6d-<hex>": sequence, unix seconds, nanoseconds/2^12
// and random hex.
func newBookmark(seq uint32, at time.Time) string {
	var r [16]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("%08x-%08x-%08x-%s", seq, uint32(at.Unix()), uint32(at.Nanosecond()>>12), hex.EncodeToString(r[:]))
}

// mark records a new Time Travel point: VACUUM INTO a snapshot file. Callers
// hold d.mu.
func (d *database) mark(ctx context.Context, at time.Time) (snapshot, error) {
	d.Seq++
	bm := newBookmark(d.Seq, at)
	if err := os.MkdirAll(filepath.Join(d.dir, "tt"), 0o700); err != nil {
		return snapshot{}, err
	}
	file := filepath.Join("tt", fmt.Sprintf("%08x.sqlite", d.Seq))
	db, err := d.open()
	if err != nil {
		return snapshot{}, err
	}
	defer db.Close()
	target := filepath.Join(d.dir, file)
	_ = os.Remove(target)
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", target); err != nil {
		return snapshot{}, fmt.Errorf("snapshot %s: %w", d.UUID, err)
	}
	s := snapshot{Bookmark: bm, At: at, File: file}
	d.Snapshots = append(d.Snapshots, s)
	return s, d.saveMeta()
}

// find returns the snapshot for a bookmark, or the latest one at or before t.
func (d *database) find(bookmark string, t time.Time) (snapshot, error) {
	if bookmark != "" {
		for _, s := range d.Snapshots {
			if s.Bookmark == bookmark {
				return s, nil
			}
		}
		// A bookmark between our points resolves to the latest point at or
		// before it, since bookmarks sort in time order.
		i := sort.Search(len(d.Snapshots), func(i int) bool { return d.Snapshots[i].Bookmark > bookmark })
		if i == 0 {
			return snapshot{}, fmt.Errorf("%w: %s", ErrNoBookmark, bookmark)
		}
		return d.Snapshots[i-1], nil
	}
	var found *snapshot
	for i := range d.Snapshots {
		if !d.Snapshots[i].At.After(t) {
			found = &d.Snapshots[i]
		}
	}
	if found == nil {
		return snapshot{}, fmt.Errorf("%w: %s", ErrNoBookmark, t.Format(time.RFC3339))
	}
	return *found, nil
}

// restoreTo overwrites the live file with snapshot s. Callers hold d.mu.
func (d *database) restoreTo(s snapshot) error {
	src, err := os.Open(filepath.Join(d.dir, s.File))
	if err != nil {
		return err
	}
	defer src.Close()
	tmp := d.path() + ".restore"
	dst, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	if err := dst.Close(); err != nil {
		return err
	}
	for _, ext := range []string{"-wal", "-shm", "-journal"} {
		_ = os.Remove(d.path() + ext)
	}
	return os.Rename(tmp, d.path())
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// loadDatabases reads every database directory under root.
func loadDatabases(root string) (map[string]*database, error) {
	out := map[string]*database{}
	ents, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(root, e.Name())
		b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
		if err != nil {
			continue
		}
		d := &database{dir: dir}
		if err := json.Unmarshal(b, d); err != nil {
			return nil, fmt.Errorf("load %s: %w", dir, err)
		}
		if len(d.Snapshots) == 0 {
			continue
		}
		out[d.UUID] = d
	}
	return out, nil
}

// stats returns file_size and num_tables as D1 reports them.
func (d *database) stats(ctx context.Context) (int64, int, error) {
	fi, err := os.Stat(d.path())
	if err != nil {
		return 0, 0, err
	}
	db, err := d.open()
	if err != nil {
		return 0, 0, err
	}
	defer db.Close()
	var n int
	err = db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE type='table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\' AND name NOT LIKE '\_cf\_%' ESCAPE '\'`).Scan(&n)
	return fi.Size(), n, err
}

func isReadOnly(stmt string) bool {
	f := strings.ToUpper(strings.TrimSpace(stmt))
	// A WITH statement that writes moves total_changes, which the caller checks first; one that
	// doesn't (a CTE feeding a SELECT, as restores' fix-up queries are) must not count as a write,
	// or every batch would take a Time Travel bookmark copy of the whole database.
	for _, p := range []string{"SELECT", "EXPLAIN", "VALUES", "WITH"} {
		if strings.HasPrefix(f, p) {
			return true
		}
	}
	return strings.HasPrefix(f, "PRAGMA") && !strings.Contains(f, "=")
}
