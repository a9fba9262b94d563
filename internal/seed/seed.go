// Package seed builds a realistic SQLite database (shaped like an OIDC
// provider's) that exercises every D1 dump hazard cfbackup must survive:
// foreign keys, AUTOINCREMENT, triggers with ';' in their body, views,
// indexes, an FTS5 virtual table, BLOBs, NULLs, integers above 2^53, unicode,
// quotes, newlines and a ~1 MB value. Output is deterministic per Seed.
package seed

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	_ "modernc.org/sqlite" // "sqlite" driver
)

// ErrExists is returned when the target file already exists.
var ErrExists = errors.New("seed: target file already exists")

// Options controls the generated data set.
type Options struct {
	Users int   // number of users (default 100)
	Seed  int64 // PRNG seed; same seed, same bytes of content
}

// Stats holds row counts per table after generation.
type Stats struct {
	Rows map[string]int64
}

const schema = `
CREATE TABLE users (
  id TEXT PRIMARY KEY,
  email TEXT NOT NULL UNIQUE,
  password_hash TEXT NOT NULL,
  profile TEXT,
  external_id INTEGER,
  avatar BLOB,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE TABLE groups (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  description TEXT
);
CREATE TABLE user_groups (
  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  group_id INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
  role TEXT NOT NULL DEFAULT 'member',
  PRIMARY KEY (user_id, group_id)
);
CREATE TABLE oidc_clients (
  client_id TEXT PRIMARY KEY,
  secret_hash TEXT NOT NULL,
  redirect_uris TEXT NOT NULL,
  logo BLOB,
  created_at TEXT NOT NULL
);
CREATE TABLE auth_events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  event_type TEXT NOT NULL,
  ip TEXT,
  user_agent TEXT,
  at TEXT NOT NULL
);
CREATE INDEX idx_auth_events_user_at ON auth_events(user_id, at);
CREATE VIEW active_users AS
  SELECT u.id, u.email, count(e.id) AS logins
  FROM users u JOIN auth_events e ON e.user_id = u.id AND e.event_type = 'login'
  GROUP BY u.id;
CREATE TRIGGER users_touch AFTER UPDATE OF email ON users
BEGIN
  UPDATE users SET updated_at = CASE WHEN NEW.updated_at = OLD.updated_at
    THEN strftime('%Y-%m-%dT%H:%M:%fZ', 'now') ELSE NEW.updated_at END
  WHERE id = NEW.id;
  INSERT INTO auth_events(user_id, event_type, ip, user_agent, at)
    VALUES (NEW.id, 'email_changed; by trigger', NULL, NULL, NEW.updated_at);
END;
CREATE VIRTUAL TABLE users_fts USING fts5(email, profile, content='users');
`

var (
	firstNames = []string{"Ana", "Björn", "Chloé", "Dmitri", "Émile", "Fatima", "Giulia", "Hiroshi", "Ingrid", "José",
		"O'Brien", "Zoë", "李雷", "王芳", "محمد", "שרה", "Søren", "Ngozi", "\"Quoted\"", "Ümit"}
	cities  = []string{"Lisbon", "東京", "القاهرة", "תל אביב", "São Paulo", "Zürich", "Kraków", "Reykjavík"}
	emoji   = []string{"🚀", "🔐", "🌍", "✨", "🧪", "👩‍💻", "🇯🇵", ""}
	events  = []string{"login", "logout", "password_reset", "mfa_challenge", "token_refresh", "login_failed"}
	agents  = []string{"Mozilla/5.0 (X11; Linux x86_64)", "curl/8.5.0", "okhttp/4.12", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)"}
	baseDay = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
)

const batchSize = 2000

// Generate writes a new SQLite database at path. It streams: rows are inserted
// through prepared statements in transactions of batchSize users, so memory
// stays flat for any Users.
func Generate(ctx context.Context, path string, opts Options) (Stats, error) {
	if opts.Users <= 0 {
		opts.Users = 100
	}
	if _, err := os.Stat(path); err == nil {
		return Stats{}, fmt.Errorf("%w: %s", ErrExists, path)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=foreign_keys(1)&_pragma=journal_mode(off)&_pragma=synchronous(off)")
	if err != nil {
		return Stats{}, fmt.Errorf("seed: open: %w", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, schema); err != nil {
		return Stats{}, fmt.Errorf("seed: schema: %w", err)
	}
	rng := rand.New(rand.NewPCG(uint64(opts.Seed), 0x5eed))
	nGroups := 12
	if err := fixedTables(ctx, db, rng, nGroups); err != nil {
		return Stats{}, err
	}
	for start := 0; start < opts.Users; start += batchSize {
		end := min(start+batchSize, opts.Users)
		if err := userBatch(ctx, db, rng, start, end, nGroups); err != nil {
			return Stats{}, err
		}
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO users_fts(users_fts) VALUES('rebuild')`); err != nil {
		return Stats{}, fmt.Errorf("seed: fts: %w", err)
	}
	st := Stats{Rows: map[string]int64{}}
	for _, t := range []string{"users", "groups", "user_groups", "oidc_clients", "auth_events", "users_fts"} {
		var n int64
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM "`+t+`"`).Scan(&n); err != nil {
			return Stats{}, fmt.Errorf("seed: count %s: %w", t, err)
		}
		st.Rows[t] = n
	}
	return st, nil
}

func fixedTables(ctx context.Context, db *sql.DB, rng *rand.Rand, nGroups int) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck
	for g := 1; g <= nGroups; g++ {
		desc := any(fmt.Sprintf("Group %d — «%s» it's \"special\"\nsecond line", g, cities[g%len(cities)]))
		if g%3 == 0 {
			desc = fmt.Sprintf("it's a \"Windows\" line\r\nand a literal \\n in group %d", g)
		}
		if g%5 == 0 {
			desc = nil
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO groups(id, name, description) VALUES(?,?,?)`, g, fmt.Sprintf("group-%02d %s", g, emoji[g%len(emoji)]), desc); err != nil {
			return fmt.Errorf("seed: groups: %w", err)
		}
	}
	for c := 0; c < 8; c++ {
		logo := make([]byte, 64+rng.IntN(512))
		for i := range logo {
			logo[i] = byte(rng.UintN(256))
		}
		var l any = logo
		if c%3 == 2 {
			l = nil
		}
		uris := fmt.Sprintf(`["https://app%d.example.com/callback","http://localhost:%d/cb?x='y'"]`, c, 3000+c)
		if _, err := tx.ExecContext(ctx, `INSERT INTO oidc_clients VALUES(?,?,?,?,?)`, fmt.Sprintf("client-%d", c),
			fmt.Sprintf("$argon2id$v=19$m=65536,t=3,p=4$%016x", rng.Uint64()), uris, l, stamp(rng)); err != nil {
			return fmt.Errorf("seed: oidc_clients: %w", err)
		}
	}
	return tx.Commit()
}

func stamp(rng *rand.Rand) string {
	return baseDay.Add(time.Duration(rng.Int64N(int64(365 * 24 * time.Hour)))).Format("2006-01-02T15:04:05.000Z")
}

func uuidFrom(rng *rand.Rand) string {
	a, b := rng.Uint64(), rng.Uint64()
	return fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", a>>32, (a>>16)&0xffff, a&0xfff, (b>>48)&0x3fff|0x8000, b&0xffffffffffff)
}

func userBatch(ctx context.Context, db *sql.DB, rng *rand.Rand, start, end, nGroups int) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck
	insU, err := tx.PrepareContext(ctx, `INSERT INTO users VALUES(?,?,?,?,?,?,?,?)`)
	if err != nil {
		return err
	}
	defer insU.Close()
	insG, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO user_groups VALUES(?,?,?)`)
	if err != nil {
		return err
	}
	defer insG.Close()
	insE, err := tx.PrepareContext(ctx, `INSERT INTO auth_events(user_id, event_type, ip, user_agent, at) VALUES(?,?,?,?,?)`)
	if err != nil {
		return err
	}
	defer insE.Close()
	for i := start; i < end; i++ {
		id := uuidFrom(rng)
		name := firstNames[rng.IntN(len(firstNames))]
		bio := fmt.Sprintf("Hi, I'm %s from %s %s", name, cities[rng.IntN(len(cities))], emoji[rng.IntN(len(emoji))])
		if i%7 == 0 {
			bio += "\nLikes: \"quotes\", 'apostrophes'; semicolons; and\r\nCRLF"
		}
		if i == 1 {
			bio = strings.Repeat("Ω lorem ipsum 🚀 ", 1<<20/20) // ≈1 MB text value
		}
		profile := fmt.Sprintf(`{"name":%q,"locale":%q,"bio":%q}`, name, []string{"en", "ja", "ar", "he"}[i%4], bio)
		var ext any = int64(1<<53) + rng.Int64N(1<<60) // above 2^53
		if i%11 == 0 {
			ext = nil
		}
		var avatar any
		if i%3 == 0 {
			b := make([]byte, 32+rng.IntN(200))
			for j := range b {
				b[j] = byte(rng.UintN(256))
			}
			avatar = b
		}
		created := stamp(rng)
		if _, err := insU.ExecContext(ctx, id, fmt.Sprintf("user%d@example.com", i),
			fmt.Sprintf("$argon2id$v=19$m=65536,t=3,p=4$%016x%016x", rng.Uint64(), rng.Uint64()),
			profile, ext, avatar, created, created); err != nil {
			return fmt.Errorf("seed: users: %w", err)
		}
		for g := 0; g < 1+rng.IntN(3); g++ {
			if _, err := insG.ExecContext(ctx, id, 1+rng.IntN(nGroups), []string{"member", "admin", "owner"}[rng.IntN(3)]); err != nil {
				return fmt.Errorf("seed: user_groups: %w", err)
			}
		}
		for e := 0; e < 10; e++ {
			var ip any = fmt.Sprintf("203.0.%d.%d", rng.IntN(256), rng.IntN(256))
			if e%4 == 3 {
				ip = fmt.Sprintf("2001:db8::%x", rng.IntN(65536))
			}
			if rng.IntN(20) == 0 {
				ip = nil
			}
			if _, err := insE.ExecContext(ctx, id, events[rng.IntN(len(events))], ip, agents[rng.IntN(len(agents))], stamp(rng)); err != nil {
				return fmt.Errorf("seed: auth_events: %w", err)
			}
		}
	}
	return tx.Commit()
}
