-- The database behind testdata/compat/v1: small, but it makes every D1 item kind
-- (table, fixup, schema, virtual) and every awkward value class appear in the repository.
CREATE TABLE authors (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL UNIQUE,
  external_id INTEGER,      -- beyond 2^53: D1's export rounds it, a fixup item restores it
  score REAL
);
CREATE TABLE posts (
  id INTEGER PRIMARY KEY,
  author_id INTEGER NOT NULL REFERENCES authors(id),
  title TEXT NOT NULL,
  body TEXT,
  cover BLOB
);
CREATE INDEX posts_by_author ON posts(author_id);
CREATE VIEW post_titles AS SELECT a.name, p.title FROM posts p JOIN authors a ON a.id = p.author_id;
CREATE TRIGGER posts_title_trim AFTER INSERT ON posts WHEN NEW.title <> trim(NEW.title)
BEGIN UPDATE posts SET title = trim(NEW.title) WHERE id = NEW.id; END;
CREATE VIRTUAL TABLE notes_fts USING fts5(note);

INSERT INTO authors (name, external_id, score) VALUES ('Ada', 9007199254740993, 1.5);
INSERT INTO authors (name, external_id, score) VALUES ('Bjørn «東京» it''s', -9223372036854775808, NULL);
INSERT INTO authors (name, external_id, score) VALUES ('Ché; "quoted"', 42, -0.25);
INSERT INTO posts VALUES (1, 1, 'Hello', 'first line' || char(10) || 'second line; with semicolon', X'00FF10');
INSERT INTO posts VALUES (2, 2, 'Emoji 🚀', NULL, NULL);
INSERT INTO posts VALUES (3, 2, 'CRLF', 'a' || char(13) || char(10) || 'b', X'');
INSERT INTO posts VALUES (4, 3, 'Ünïcödé', 'INSERT INTO posts VALUES(99);', NULL);
INSERT INTO notes_fts (note) VALUES ('backups are only as good as their restores');
INSERT INTO notes_fts (note) VALUES ('age lz4 tar sqlite3');
DELETE FROM authors WHERE 0; -- keeps sqlite_sequence at 3
