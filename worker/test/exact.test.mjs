// Targeted tests in the real runtime for issue 12 §5 and the Worker bullets of §3: each reproduces
// one reported bug (it failed before the fix) and checks what happens now.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Miniflare } from "miniflare";
import { options } from "./harness.mjs";
import { sign } from "../dist/src/auth.js";
import { encode } from "../dist/src/codec.js";

process.env.CLOUDFLARE_CF_FETCH_ENABLED = "false";
const SECRET = "exact-secret-0123456789abcdef0123456789ab";
let mf, base;
before(async () => {
  mf = new Miniflare(options({ secret: SECRET }));
  base = (await mf.ready).toString().replace(/\/$/, "");
});
after(() => mf?.dispose());

const enc = new TextEncoder();
async function call(method, path, body = new Uint8Array()) {
  const url = new URL(base + path);
  return fetch(url, { method, headers: await sign(SECRET, method, url, body), body: method === "POST" ? body : undefined });
}
async function get(path, init) {
  const r = await fetch(base + path, init);
  const t = await r.text();
  assert.equal(r.status, 200, `${path}: ${t}`);
  return JSON.parse(t);
}
const post = (path, body) => get(path, { method: "POST", body: JSON.stringify(body) });
const idOf = async (route, name) => (await get(`/${route}/name:${name}/__test/inspect`)).id;
async function exportText(cls, id) {
  const r = await call("GET", `/__cfbackup/v1/${cls}/${id}/export`);
  assert.equal(r.status, 200);
  return r.text();
}
async function importText(cls, id, text) {
  const alarm = JSON.parse(text.split("\n")[0]).alarm;
  return call("POST", `/__cfbackup/v1/${cls}/${id}/import?seq=0&final=1${alarm ? "&alarm=" + alarm : ""}`, enc.encode(text));
}
const endOf = (text) => JSON.parse(text.trimEnd().split("\n").pop());

test("KV-backed: a 54,001-character CJK value (108,008 B as V8 serialises it, 162,002 B as UTF-8) is restored", async () => {
  const src = await idOf("ratelimit", "cjk-src");
  const dst = await idOf("ratelimit", "cjk-dst");
  const big = "漢".repeat(54001);
  await post(`/ratelimit/${src}/__test/put`, { k: "cjk", v: encode(big) });
  const text = await exportText("RateLimiter", src);
  assert.equal(endOf(text).unrestorable, undefined, "a legal value is not reported");
  const r = await importText("RateLimiter", dst, text);
  assert.equal(r.status, 200, await r.clone().text());
  const snap = await get(`/ratelimit/${dst}/__test/snapshot`);
  assert.equal(snap.kv.find(([k]) => k === "cjk")[1], big);
});

test("a value the platform would refuse on restore is named when the backup is taken, and refused before anything changes", async () => {
  const src = await idOf("ratelimit", "toobig-src");
  // Local workerd enforces no size limit, production does: 140,000 Latin-1 characters are 140,006 B.
  await post(`/ratelimit/${src}/__test/put`, { k: "huge", v: encode("é".repeat(140000)) });
  const text = await exportText("RateLimiter", src);
  const end = endOf(text);
  assert.equal(end.unrestorable, 1);
  assert.match(end.warnings[0], /kv "huge": value of 140006 bytes \(V8 serialisation\) exceeds the 131072-byte value limit/);
  const dst = await idOf("ratelimit", "toobig-dst");
  const before = await get(`/ratelimit/${dst}/__test/snapshot`);
  const r = await importText("RateLimiter", dst, text);
  assert.equal(r.status, 422);
  assert.equal((await r.json()).error, "import_refused");
  assert.deepStrictEqual(await get(`/ratelimit/${dst}/__test/snapshot`), before);
});

test("a KV key with an unpaired surrogate (listed back as U+FFFD) is named when the backup is taken", async () => {
  const src = await idOf("sessions", "surrogate-key");
  await post(`/sessions/${src}/__test/put`, { k: "lone\ud800key", v: 1 });
  const end = endOf(await exportText("SessionStore", src));
  assert.equal(end.unrestorable, 1);
  assert.match(end.warnings[0], /unpaired surrogate/);
});

const FK = [
  "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT)",
  "CREATE TABLE orders(id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), total)",
  "INSERT INTO users VALUES (1, 'ann'), (2, 'bob')",
  "INSERT INTO orders VALUES (10, 1, 42), (11, 2, 42.0), (12, 2, '42'), (13, 1, x'2a'), (14, 1, NULL), (15, 1, 9223372036854775807), (16, 2, -9007199254740993)",
];

test("a foreign key whose parent table sorts after the child restores into a fresh object and over the live one", async () => {
  const src = await idOf("sessions", "fk-src");
  await post(`/sessions/${src}/__test/sql`, FK);
  const want = await get(`/sessions/${src}/__test/snapshot`);
  const text = await exportText("SessionStore", src);
  const dst = await idOf("sessions", "fk-dst");
  let r = await importText("SessionStore", dst, text);
  assert.equal(r.status, 200, await r.clone().text());
  assert.deepStrictEqual(await get(`/sessions/${dst}/__test/snapshot`), want);
  r = await importText("SessionStore", dst, text); // over the live object: DROP TABLE users must not fail
  assert.equal(r.status, 200, await r.clone().text());
  assert.deepStrictEqual(await get(`/sessions/${dst}/__test/snapshot`), want);
  r = await importText("SessionStore", src, text); // and over the source itself
  assert.equal(r.status, 200, await r.clone().text());
  assert.deepStrictEqual(await get(`/sessions/${src}/__test/snapshot`), want);
});

test("values keep their storage class: 42 stays INTEGER in an untyped column, 42.0 REAL, int64 edges exact", async () => {
  const src = await idOf("sessions", "class-src");
  await post(`/sessions/${src}/__test/sql`, FK);
  const text = await exportText("SessionStore", src);
  const dst = await idOf("sessions", "class-dst");
  assert.equal((await importText("SessionStore", dst, text)).status, 200);
  const [rows] = await post(`/sessions/${dst}/__test/sql`, ["SELECT id, typeof(total) AS ty, CAST(total AS TEXT) AS v FROM orders ORDER BY id"]);
  assert.deepStrictEqual(rows.map((x) => [x.id, x.ty, x.v]), [
    [10, "integer", "42"], [11, "real", "42.0"], [12, "text", "42"], [13, "blob", "*"], [14, "null", null],
    [15, "integer", "9223372036854775807"], [16, "integer", "-9007199254740993"],
  ]);
});

test("AUTOINCREMENT counters (sqlite_sequence) come back: used ids are not issued again", async () => {
  const src = await idOf("sessions", "seq-src");
  await post(`/sessions/${src}/__test/sql`, [
    "CREATE TABLE tickets(id INTEGER PRIMARY KEY AUTOINCREMENT, what)",
    "INSERT INTO tickets(what) VALUES ('a'), ('b'), ('c')",
    "DELETE FROM tickets WHERE id >= 2",
  ]);
  const text = await exportText("SessionStore", src);
  const dst = await idOf("sessions", "seq-dst");
  assert.equal((await importText("SessionStore", dst, text)).status, 200);
  const [, [row]] = await post(`/sessions/${dst}/__test/sql`, ["INSERT INTO tickets(what) VALUES ('d')", "SELECT max(id) AS id FROM tickets"]);
  assert.equal(row.id, 4, "the next id after a restore is 4, as it would have been");
});

function forged(id, lines) {
  return [{ t: "header", format: "cfbackup-do/2", id, backend: "sqlite", alarm: null, time: 0 }, ...lines, { t: "end" }].map((l) => JSON.stringify(l)).join("\n") + "\n";
}

test("the import runs only what an export can contain: smuggled statements and internal tables are refused, nothing changes", async () => {
  const dst = await idOf("sessions", "forged");
  await post(`/sessions/${dst}/__test/sql`, ["INSERT INTO events(at, kind) VALUES (1, 'keep me')"]);
  const before = await get(`/sessions/${dst}/__test/snapshot`);
  const cases = [
    [{ t: "table", name: "a", sql: "CREATE TABLE a(x); DROP TABLE events", cols: ["x"] }, /more than one statement/],
    [{ t: "table", name: "a", sql: "CREATE TABLE a(x) /* ; */; DELETE FROM events", cols: ["x"] }, /more than one statement/],
    [{ t: "table", name: "a", sql: "DROP TABLE events", cols: [] }, /not a CREATE/],
    [{ t: "table", name: "a", sql: "CREATE TABLE b(x)", cols: ["x"] }, /creates b, the line names a/],
    [{ t: "table", name: "a", sql: "CREATE TEMP TABLE a(x)", cols: ["x"] }, /TEMP/],
    [{ t: "table", name: "a", sql: "CREATE TABLE other.a(x)", cols: ["x"] }, /schema other/],
    [{ t: "schema", type: "trigger", name: "tr", sql: "CREATE TRIGGER tr AFTER INSERT ON events BEGIN SELECT 1; END; DELETE FROM events" }, /more than one statement/],
    [{ t: "schema", type: "index", name: "ix", sql: "CREATE VIEW ix AS SELECT 1" }, /another statement/],
    [{ t: "schema", type: "pragma", name: "p", sql: "PRAGMA writable_schema=ON" }, /schema line of type/],
    [{ t: "row", table: "_cf_KV", c: "tb", v: ["k", { $t: "ab", v: "AA==" }] }, /not a user table/],
    [{ t: "row", table: "sqlite_master", c: "t", v: ["x"] }, /not a user table/],
    [{ t: "seq", name: "sqlite_sequence", seq: "1" }, /not a user table/],
    [{ t: "row", table: "events", c: "i", v: ["1; DROP TABLE events"] }, /row of events/],
  ];
  for (const [line, want] of cases) {
    const r = await importText("SessionStore", dst, forged(dst, [line]));
    const b = await r.json();
    assert.equal(r.status, 422, JSON.stringify(line));
    assert.equal(b.error, "import_refused");
    assert.match(b.message, want, JSON.stringify(line));
  }
  assert.deepStrictEqual(await get(`/sessions/${dst}/__test/snapshot`), before);
  // A trigger body's own statements are fine.
  const ok = await importText("SessionStore", dst, forged(dst, [
    { t: "table", name: "a", sql: "CREATE TABLE a(x)", cols: ["x"], rowid: "_rowid_" },
    { t: "schema", type: "trigger", name: "tr", sql: "CREATE TRIGGER tr AFTER INSERT ON a BEGIN SELECT CASE WHEN 1 THEN 2 END; SELECT ';'; END" },
  ]));
  assert.equal(ok.status, 200, await ok.clone().text());
});

test("a chunk that fails deterministically (a constraint) answers 422 import_failed and changes nothing", async () => {
  const dst = await idOf("sessions", "constraint");
  const before = await get(`/sessions/${dst}/__test/snapshot`);
  const r = await importText("SessionStore", dst, forged(dst, [
    { t: "table", name: "a", sql: "CREATE TABLE a(x NOT NULL)", cols: ["x"], rowid: "_rowid_" },
    { t: "row", table: "a", c: "n", v: [null], r: 1 },
  ]));
  assert.equal(r.status, 422);
  const b = await r.json();
  assert.equal(b.error, "import_failed");
  assert.match(b.message, /NOT NULL constraint failed.*nothing was changed/);
  assert.deepStrictEqual(await get(`/sessions/${dst}/__test/snapshot`), before);
});

test("format 1 exports (no storage classes) still import", async () => {
  const dst = await idOf("sessions", "v1");
  const v1 = [
    { t: "header", format: "cfbackup-do/1", id: dst, backend: "sqlite", alarm: null, time: 0 },
    { t: "kv", k: "k", v: { $t: "d", v: 5 } },
    { t: "table", name: "zz", sql: "CREATE TABLE zz(a INTEGER, b)", cols: ["a", "b"] },
    { t: "row", table: "zz", v: [1, "x"] },
    { t: "end", kv: 1, tables: 1, rows: 1, schema: 0 },
  ].map((l) => JSON.stringify(l)).join("\n") + "\n";
  const r = await importText("SessionStore", dst, v1);
  assert.equal(r.status, 200, await r.clone().text());
  const [rows] = await post(`/sessions/${dst}/__test/sql`, ["SELECT a, b FROM zz"]);
  assert.deepStrictEqual(rows, [{ a: 1, b: "x" }]);
});

test("an unknown class is answered 404 without naming the classes routed", async () => {
  const r = await fetch(`${base}/__cfbackup/v1/Nope/${"0".repeat(64)}/info`);
  assert.equal(r.status, 404);
  const t = await r.text();
  assert.ok(!/SessionStore|RateLimiter/.test(t), t);
});

test("an unsigned POST is refused before its body is read; a signed body over the bound is refused unread", async () => {
  const id = await idOf("sessions", "body");
  // A body that never ends: a module that reads the body first never answers.
  const { request } = await import("node:http");
  const u = new URL(`${base}/__cfbackup/v1/SessionStore/${id}/import?seq=0&final=1`);
  const send = (headers) => new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path: u.pathname + u.search, method: "POST", headers }, (res) => {
      let b = "";
      res.on("data", (d) => (b += d));
      res.on("end", () => resolve({ status: res.statusCode, body: b }));
      clearInterval(tick);
      clearTimeout(timer);
    });
    req.on("error", () => {});
    const timer = setTimeout(() => (clearInterval(tick), req.destroy(), reject(new Error("no answer within 5 s: the body was read before it was checked"))), 5000);
    const tick = setInterval(() => req.write(new Uint8Array(64 << 10)), 20);
  });
  const unsigned = await send({ "transfer-encoding": "chunked" });
  assert.equal(unsigned.status, 401);
  // Signed, but declaring 17 MiB: refused from its length, before it is read.
  const h = await sign(SECRET, "POST", u, new Uint8Array(17 << 20));
  const big = await send({ ...h, "content-length": String(17 << 20) });
  assert.equal(big.status, 413);
  assert.equal(JSON.parse(big.body).error, "too_large");
});

test("foreign keys in a cycle or to their own table are flagged in the end line (a multi-chunk import checks them per chunk)", async () => {
  const id = await idOf("sessions", "fkcycle");
  assert.equal(endOf(await exportText("SessionStore", id)).fk_cycle, undefined);
  await post(`/sessions/${id}/__test/sql`, ["CREATE TABLE tree(id INTEGER PRIMARY KEY, parent REFERENCES tree(id))", "INSERT INTO tree VALUES (1, NULL), (2, 1)"]);
  assert.equal(endOf(await exportText("SessionStore", id)).fk_cycle, true);
});

test("full-text tables (FTS5) restore: own content re-inserted, external content rebuilt, contentless named at backup", async () => {
  const src = await idOf("sessions", "fts-src");
  await post(`/sessions/${src}/__test/sql`, [
    "CREATE VIRTUAL TABLE notes USING fts5(title, body)",
    "INSERT INTO notes(rowid, title, body) VALUES (3, 'alpha', 'restore me'), (9, 'beta', 'backup 漢字')",
    "CREATE TABLE docs(id INTEGER PRIMARY KEY, body TEXT)",
    "INSERT INTO docs VALUES (1, 'gamma ray'), (5, 'alpha centauri')",
    "CREATE VIRTUAL TABLE docs_fts USING fts5(body, content='docs', content_rowid='id')",
    "INSERT INTO docs_fts(docs_fts) VALUES ('rebuild')",
  ]);
  const want = await get(`/sessions/${src}/__test/snapshot`);
  const text = await exportText("SessionStore", src);
  assert.equal(endOf(text).unrestorable, undefined);
  const dst = await idOf("sessions", "fts-dst");
  const r = await importText("SessionStore", dst, text);
  assert.equal(r.status, 200, await r.clone().text());
  assert.deepStrictEqual(await get(`/sessions/${dst}/__test/snapshot`), want);
  const [a, b] = await post(`/sessions/${dst}/__test/sql`, ["SELECT rowid FROM notes WHERE notes MATCH 'restore'", "SELECT rowid FROM docs_fts WHERE docs_fts MATCH 'alpha'"]);
  assert.deepStrictEqual([a, b], [[{ rowid: 3 }], [{ rowid: 5 }]]);
  // Contentless: the text is not stored anywhere, so the backup says so.
  await post(`/sessions/${src}/__test/sql`, ["CREATE VIRTUAL TABLE blind USING fts5(body, content='')", "INSERT INTO blind(rowid, body) VALUES (1, 'secret')"]);
  const end = endOf(await exportText("SessionStore", src));
  assert.equal(end.unrestorable, 1);
  assert.match(end.warnings[0], /table "blind": a contentless full-text table/);
});

test("a one-chunk import over a live object deletes what the export lacks and overwrites the rest (keys, rows, indexes, foreign keys)", async () => {
  const id = await idOf("sessions", "overwrite-live");
  await post(`/sessions/${id}/__test/put`, { k: "a", v: encode("first") });
  await post(`/sessions/${id}/__test/put`, { k: "b", v: encode(2) });
  await post(`/sessions/${id}/__test/sql`, [
    "CREATE TABLE parent(id INTEGER PRIMARY KEY, v TEXT)",
    "CREATE TABLE child(id INTEGER PRIMARY KEY, p INTEGER REFERENCES parent(id) ON DELETE CASCADE)",
    "INSERT INTO parent VALUES (1, 'one'), (2, 'two')",
    "INSERT INTO child VALUES (10, 1), (20, 2)",
  ]);
  const want = await get(`/sessions/${id}/__test/snapshot`);
  const text = await exportText("SessionStore", id);
  // The live object moves on: a value changed, a key, rows, an index and a table added, a row gone.
  await post(`/sessions/${id}/__test/put`, { k: "a", v: encode("changed") });
  await post(`/sessions/${id}/__test/put`, { k: "stale", v: encode(3) });
  await post(`/sessions/${id}/__test/sql`, [
    "INSERT INTO parent VALUES (3, 'three')",
    "INSERT INTO child VALUES (30, 3)",
    "DELETE FROM child WHERE id = 10",
    "CREATE INDEX child_p ON child(p)",
    "CREATE TABLE extra(x)",
    "INSERT INTO events(at, kind) VALUES (1, 'late')",
  ]);
  assert.notDeepEqual(await get(`/sessions/${id}/__test/snapshot`), want);
  const r = await importText("SessionStore", id, text);
  assert.equal(r.status, 200, await r.clone().text());
  assert.deepEqual(await get(`/sessions/${id}/__test/snapshot`), want);
});
