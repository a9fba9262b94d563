// Test-only helpers of the example app (reachable only with ALLOW_TEST_ROUTES=1): random storage
// state generated inside the object from a seed (the differential test), an exact snapshot of
// everything the object stores, and raw SQL / tagged KV puts for targeted tests.
//
// The generator stays within what the platform accepts (KV values within the V8-serialised size
// limits, SQL values SQLite stores), and produces what an application may store: every JS type
// storage keeps (strings with non-Latin-1 text and lone surrogates, -0, NaN, ±Infinity, BigInts,
// Dates valid and invalid, Maps, Sets, ArrayBuffers, every typed array also as a view of part of a
// buffer, DataViews, sparse arrays, RegExps, Errors, boxed primitives, nested objects), and SQL
// schemas with every storage class in every column affinity, int64 edges, reals that look like
// integers, text that is not UTF-8 or holds NUL, rowid gaps, AUTOINCREMENT, WITHOUT ROWID, foreign
// keys whose parent sorts after the child, self references and cycles, indexes, views, triggers.
import { v8SizeBounds, KV_VALUE_ENFORCED, SQLITE_KV_BYTES } from "../src/v8size.js";
import { decode } from "../src/codec.js";

export function rng(seed: number) {
  let a = seed >>> 0 || 0x9e3779b9;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(xs: T[]): T => xs[int(xs.length)];
  return { next, int, pick, chance: (p: number) => next() < p };
}
type R = ReturnType<typeof rng>;

const ALPHABETS = ["abcxyz019 _-", "äöüßéèñçÿ", "漢字かなカナ한국어", "😀🔑✓", "\u0000\t\n\"\\'", "\ud800\udfff\ud83d"];

function str(r: R, max = 24): string {
  const alpha = r.pick(ALPHABETS);
  const chars = [...alpha];
  let s = "";
  const n = r.int(max + 1);
  for (let i = 0; i < n; i++) s += r.chance(0.1) ? alpha[r.int(alpha.length)] : r.pick(chars); // code units too: lone surrogates
  return s;
}

const NUMS = [0, -0, 1, -1, 42, 63, 64, 2 ** 30 - 1, 2 ** 30, 2 ** 31 - 1, 2 ** 31, -(2 ** 31), 2 ** 53, -(2 ** 53) + 1, 1.5, -2.25e-308, 5e-324, Number.MAX_VALUE, NaN, Infinity, -Infinity, Math.PI];
const TYPED = [Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array];

function bytes(r: R, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = r.int(256);
  return b;
}

export function jsValue(r: R, depth = 0): unknown {
  const leaf = depth >= 3 || r.chance(0.55);
  if (leaf) {
    switch (r.int(12)) {
      case 0: return str(r);
      case 1: return r.pick(NUMS);
      case 2: return (r.next() - 0.5) * 10 ** r.int(20);
      case 3: return r.pick([0n, 1n, -1n, 2n ** 63n, -(2n ** 64n) - 7n, 12345678901234567890123456789n]);
      case 4: return r.pick([true, false, null, undefined]);
      case 5: return r.chance(0.2) ? new Date(NaN) : new Date(r.int(4e12) - 1e12);
      case 6: return bytes(r, r.int(40)).buffer;
      case 7: {
        const C = r.pick(TYPED) as any;
        const buf = bytes(r, 8 * (1 + r.int(6))).buffer;
        const n = buf.byteLength / C.BYTES_PER_ELEMENT;
        if (n >= 2 && r.chance(0.4)) return new C(buf, C.BYTES_PER_ELEMENT, 1 + r.int(n - 1)); // a view of part of it
        return new C(buf);
      }
      case 8: return r.chance(0.5) ? new DataView(bytes(r, 12).buffer, r.int(4), 4) : new DataView(bytes(r, 3).buffer);
      case 9: return r.pick([/a+b/gi, /^[漢]\d*$/u, new RegExp("x", "y")]);
      case 10: {
        const e = r.pick([new Error(str(r)), new TypeError(str(r)), new RangeError("range"), new Error("with cause", { cause: 42 })]);
        return e;
      }
      default: return r.pick([new String(str(r)), new Number(r.pick(NUMS)), new Boolean(r.chance(0.5))]);
    }
  }
  switch (r.int(5)) {
    case 0: {
      const a: unknown[] = [];
      const n = r.int(6);
      for (let i = 0; i < n; i++) a.push(jsValue(r, depth + 1));
      if (r.chance(0.2)) a.length += 2 + r.int(3); // holes at the end
      if (r.chance(0.2)) delete a[0]; // a hole at the start
      if (r.chance(0.1)) (a as any).extra = str(r, 4);
      return a;
    }
    case 1: {
      const m = new Map();
      const n = r.int(5);
      for (let i = 0; i < n; i++) m.set(r.chance(0.7) ? jsValue(r, 3) : jsValue(r, depth + 1), jsValue(r, depth + 1));
      return m;
    }
    case 2: {
      const s = new Set();
      const n = r.int(5);
      for (let i = 0; i < n; i++) s.add(jsValue(r, depth + 1));
      return s;
    }
    case 3: return r.pick(NUMS.filter((x) => typeof x === "number")).constructor === Number ? Array.from({ length: r.int(8) }, () => r.pick(NUMS)) : [];
    default: {
      const o: Record<string, unknown> = {};
      const n = r.int(6);
      for (let i = 0; i < n; i++) o[r.chance(0.2) ? String(r.int(20)) : r.chance(0.1) ? "$t" : str(r, 8)] = jsValue(r, depth + 1);
      return o;
    }
  }
}

/** bigValue is a value near the size limit of the backend (one of the issue's cases among them). */
function bigValue(r: R, backend: "sqlite" | "kv"): unknown {
  const lim = backend === "kv" ? KV_VALUE_ENFORCED : SQLITE_KV_BYTES / 4;
  switch (r.int(3)) {
    case 0: return "漢".repeat(backend === "kv" ? 54001 : 100000); // 108,008 B: legal, ~162 KB as UTF-8
    case 1: return "é".repeat(lim - 64);
    default: return bytes(r, lim - 64).buffer;
  }
}

const TYPES = ["", "INTEGER", "REAL", "TEXT", "BLOB", "NUMERIC", "VARCHAR(10)", "BOOLEAN", "DATETIME", "ANY"];
const NAMES = ["users", "orders", "order", "select", "Ünïcode", "a b", 'q"uote', "t_1", "zeta", "alpha", "漢字"];

function sqlLiteral(r: R): string {
  switch (r.int(16)) {
    case 0: return "NULL";
    case 1: return r.pick(["0", "1", "-1", "42", "9007199254740993", "9223372036854775807", "-9223372036854775808", "-9007199254740993", "4294967296"]);
    case 2: return r.pick(["42.0", "1.0", "-0.0", "0.1", "1e300", "9e999", "-9e999", "2.5", "1.7976931348623157e308", "4.9e-324", "9007199254740993.0"]);
    case 3: return "'" + str(r).replace(/\u0000/g, "").replace(/'/g, "''").replace(/[\ud800-\udfff]/g, "?") + "'";
    case 4: return r.pick(["'42'", "' 42 '", "'4.5'", "'0x10'", "'1e3'", "''"]);
    case 5: return "x'" + [...bytes(r, r.int(20))].map((b) => b.toString(16).padStart(2, "0")).join("") + "'";
    case 6: return r.pick(["CAST(x'41ff00fe' AS TEXT)", "CAST(x'00' AS TEXT)", "('a' || char(0) || 'b')", "CAST(x'efbbbf41' AS TEXT)"]);
    case 7: return String(r.int(1000));
    case 8: return (r.next() * 1000).toFixed(r.int(4));
    default: return String(r.int(200) - 100);
  }
}

const q = (n: string) => '"' + n.replace(/"/g, '""') + '"';
const VOCAB = ["alpha", "beta", "gamma", "délta", "漢字", "restore", "backup", "object"];

/** randomState fills the object from seed: KV (both backends), SQL (SQLite-backed), alarm. */
export async function randomState(storage: any, seed: number, backend: "sqlite" | "kv") {
  const r = rng(seed);
  const info: Record<string, unknown> = { seed, backend };
  const entries: Record<string, unknown> = {};
  const nkv = r.int(25);
  for (let i = 0; i < nkv; i++) {
    // Keys are UTF-16 strings without lone surrogates: storage keeps keys as UTF-8 (a lone surrogate
    // is listed back as U+FFFD; the export names such keys, see the targeted test).
    const k = (r.chance(0.1) ? str(r, 200) : `${str(r, 10)}#${i}`).replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, "?");
    let v = r.chance(0.05) ? bigValue(r, backend) : jsValue(r);
    const lim = backend === "kv" ? KV_VALUE_ENFORCED : SQLITE_KV_BYTES - 4096;
    if (v8SizeBounds(v).max > lim) v = "too big, replaced";
    entries[k] = v;
  }
  const keys = Object.keys(entries);
  for (let i = 0; i < keys.length; i += 100) await storage.put(Object.fromEntries(keys.slice(i, i + 100).map((k) => [k, entries[k]])));
  info.kv = keys.length;
  if (backend === "sqlite") {
    const sql = storage.sql;
    const ntab = 1 + r.int(4);
    const names = [...NAMES].sort(() => r.next() - 0.5).slice(0, ntab);
    const tables: { name: string; cols: string[]; pk: string | null; rowid: boolean }[] = [];
    let cyclic = false;
    storage.transactionSync(() => {
      sql.exec("PRAGMA defer_foreign_keys = ON");
      for (const name of names) {
        const ncol = 1 + r.int(5);
        const cols = Array.from({ length: ncol }, (_, i) => r.pick(["c", "val", "Größe", "x y", "order", "rowid", "oid", "_rowid_"]) + i);
        const defs = cols.map((c) => `${q(c)} ${r.pick(TYPES)}`);
        const constraints: string[] = [];
        const kind = r.int(4);
        let pk: string | null = null;
        let tail = "";
        if (kind === 0) {
          pk = "id";
          defs.unshift(`id INTEGER PRIMARY KEY${r.chance(0.5) ? " AUTOINCREMENT" : ""}`);
        } else if (kind === 1) {
          pk = "k";
          defs.unshift("k TEXT NOT NULL");
          constraints.push("PRIMARY KEY (k)");
          tail = r.chance(0.6) ? " WITHOUT ROWID" : "";
        }
        const parent = tables.length && r.chance(0.6) ? r.pick(tables) : null;
        if (parent && parent.pk) {
          defs.push(`ref REFERENCES ${q(parent.name)}(${parent.pk})`);
          cols.push("ref");
        }
        if (pk === "id" && r.chance(0.3)) {
          defs.push(`selfref INTEGER REFERENCES ${q(name)}(id)`);
          cols.push("selfref");
          cyclic = true;
        }
        if (r.chance(0.2)) defs.push(`gen AS (typeof(${q(cols[0])}))`);
        sql.exec(`CREATE TABLE ${q(name)} (${[...defs, ...constraints].join(", ")})${tail}`);
        const t = { name, cols: cols.filter((c) => c !== "ref" && c !== "selfref"), pk, rowid: tail === "" };
        const nrow = r.int(30);
        const keysUsed: unknown[] = [];
        for (let i = 0; i < nrow; i++) {
          const names2 = [...t.cols];
          const vals = t.cols.map(() => sqlLiteral(r));
          if (pk === "k") {
            names2.unshift("k");
            vals.unshift(`'k${i}'`);
          }
          if (parent && parent.pk) {
            const pkeys = sql.exec(`SELECT ${parent.pk} AS p FROM ${q(parent.name)} ORDER BY random() LIMIT 1`).toArray();
            names2.push("ref");
            vals.push(pkeys.length && r.chance(0.8) ? (typeof pkeys[0].p === "string" ? `'${pkeys[0].p}'` : String(pkeys[0].p)) : "NULL");
          }
          if (pk === "id" && r.chance(0.3)) {
            names2.unshift("id");
            vals.unshift(String(r.int(1000) + (r.chance(0.1) ? 2 ** 40 : 0)));
          }
          try {
            sql.exec(`INSERT INTO ${q(name)} (${names2.map(q).join(",")}) VALUES (${vals.join(",")})`);
          } catch {
            /* a duplicate key: skip the row */
          }
        }
        void keysUsed;
        if (t.rowid && r.chance(0.5)) sql.exec(`DELETE FROM ${q(name)} WHERE rowid % 4 = 1`); // gaps; AUTOINCREMENT counters run ahead
        if (cols.includes("selfref")) sql.exec(`UPDATE ${q(name)} SET selfref = (SELECT max(id) FROM ${q(name)}) WHERE id % 3 = 0`);
        if (r.chance(0.4)) sql.exec(`CREATE INDEX ${q("ix_" + name)} ON ${q(name)} (${q(t.cols[0])}${r.chance(0.5) ? " DESC" : ""})`);
        if (r.chance(0.3)) sql.exec(`CREATE VIEW ${q("v_" + name)} AS SELECT count(*) AS n FROM ${q(name)}`);
        if (r.chance(0.3)) sql.exec(`CREATE TRIGGER ${q("tr_" + name)} AFTER DELETE ON ${q(name)} BEGIN SELECT 1; SELECT CASE WHEN 1 THEN 2 END; END`);
        tables.push(t);
      }
      // A cycle: the first table points back at the last one (a parent that sorts anywhere).
      const first = tables[0];
      const last = tables[tables.length - 1];
      if (tables.length > 1 && last.pk && r.chance(0.3)) {
        sql.exec(`ALTER TABLE ${q(first.name)} ADD COLUMN back REFERENCES ${q(last.name)}(${last.pk}) DEFERRABLE INITIALLY DEFERRED`);
        const p = sql.exec(`SELECT ${last.pk} AS p FROM ${q(last.name)} LIMIT 1`).toArray();
        if (p.length) sql.exec(`UPDATE ${q(first.name)} SET back = ?`, p[0].p);
        cyclic = true;
      }
    });
    storage.transactionSync(() => {
      // Full-text search (FTS5), in a transaction of its own (in one transaction with the tables and
      // their ALTER above, workerd fails with "SQL logic error"): a table with its own content, or one over another table's content.
      if (r.chance(0.35)) {
        const words = () => Array.from({ length: 1 + r.int(6) }, () => r.pick(VOCAB)).join(" ");
        if (r.chance(0.5)) {
          sql.exec(`CREATE VIRTUAL TABLE "fts ${seed}" USING fts5(title, body, note UNINDEXED)`);
          // distinct rowids with gaps (a duplicate rowid in FTS5 makes workerd fail the whole request
          // with an internal "SQL logic error" instead of a constraint error)
          for (let i = 0, n = r.int(20), id = 0; i < n; i++) sql.exec(`INSERT INTO "fts ${seed}" (rowid, title, body, note) VALUES (?, ?, ?, ?)`, (id += 1 + r.int(5)), words(), words(), r.pick([null, 7, 2.5, "n", new Uint8Array([1, 2]).buffer]));
        } else {
          sql.exec("CREATE TABLE docs(id INTEGER PRIMARY KEY, body TEXT)");
          for (let i = 0, n = r.int(20); i < n; i++) sql.exec("INSERT INTO docs(id, body) VALUES (?, ?)", 1 + i * 3, words());
          sql.exec("CREATE VIRTUAL TABLE docs_fts USING fts5(body, content='docs', content_rowid='id')");
          sql.exec("INSERT INTO docs_fts(docs_fts) VALUES ('rebuild')");
        }
      }
    });
    info.tables = tables.length;
    info.cyclic = cyclic;
  }
  if (r.chance(0.6)) await storage.setAlarm(4_102_444_800_000 + r.int(1e9));
  return info;
}

/** describe renders a value with its runtime types, independently of cfbackup's codec. */
export function describe(v: unknown): unknown {
  if (typeof v === "number") return { number: Object.is(v, -0) ? "-0" : String(v) };
  if (typeof v === "bigint") return { bigint: v.toString() };
  if (v === undefined) return { undefined: true };
  if (v === null || typeof v === "string" || typeof v === "boolean") return v;
  const hex = (b: ArrayBufferLike) => [...new Uint8Array(b)].map((x) => x.toString(16).padStart(2, "0")).join("");
  if (v instanceof Date) return { Date: String(v.getTime()) };
  if (v instanceof Map) return { Map: [...v].map(([k, x]) => [describe(k), describe(x)]) };
  if (v instanceof Set) return { Set: [...v].map(describe) };
  if (v instanceof ArrayBuffer) return { ArrayBuffer: hex(v) };
  if (ArrayBuffer.isView(v)) return { [v.constructor.name]: { buffer: hex(v.buffer), offset: v.byteOffset, bytes: v.byteLength } };
  if (v instanceof RegExp) return { RegExp: [v.source, v.flags] };
  if (v instanceof Error) return { [Object.getPrototypeOf(v).constructor.name]: { name: v.name, message: v.message, stack: v.stack, cause: "cause" in v ? describe((v as any).cause) : "none" } };
  if (v instanceof String || v instanceof Number || v instanceof Boolean) return { [v.constructor.name + "Object"]: describe(v.valueOf()) };
  if (Array.isArray(v)) return { Array: { length: v.length, own: Object.keys(v).map((k) => [k, describe((v as any)[k])]) } };
  return { [Object.prototype.toString.call(v).slice(8, -1)]: Object.keys(v as object).map((k) => [k, describe((v as any)[k])]) };
}

/** snapshot is everything the object stores, exactly: KV with types, SQL with storage classes. */
export async function snapshot(storage: any) {
  const kv = [...(await storage.list())].map(([k, v]: [string, unknown]) => [k, describe(v)]);
  let sqlState: unknown = "kv-backed";
  try {
    const sql = storage.sql;
    sql.exec("SELECT 1");
    const shadow = new Set(sql.exec("PRAGMA table_list").toArray().filter((r: any) => r.type === "shadow").map((r: any) => r.name));
    const objs = sql.exec("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE '\\_cf\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY type, name").toArray().filter((o: any) => !shadow.has(o.name));
    const tables: unknown[] = [];
    for (const o of objs) {
      if (o.type !== "table") continue;
      // Generated columns included (table_xinfo); a virtual table's hidden columns are not data.
      const virtual = /^\s*CREATE\s+VIRTUAL\b/i.test(o.sql);
      const cols = sql.exec(`PRAGMA ${virtual ? "table_info" : "table_xinfo"}(${q(o.name)})`).toArray().map((c: any) => c.name as string);
      const lower = new Set(cols.map((c: string) => c.toLowerCase()));
      const rid = /WITHOUT\s+ROWID/i.test(o.sql) ? null : ["_rowid_", "rowid", "oid"].find((n) => !lower.has(n)) ?? null;
      const list = cols.map((c: string) => `typeof(${q(c)}), CASE typeof(${q(c)}) WHEN 'real' THEN ${q(c)} WHEN 'text' THEN hex(CAST(${q(c)} AS BLOB)) ELSE quote(${q(c)}) END`).join(",");
      const rows = sql.exec(`SELECT ${rid ? `quote(${rid}), ` : ""}${list} FROM ${q(o.name)}${rid ? ` ORDER BY ${rid}` : ""}`).raw().toArray();
      const t: Record<string, unknown> = { name: o.name, cols, rows: rows.map((r: unknown[]) => r.map((x) => (typeof x === "number" ? describe(x) : x))) };
      if (/USING\s+fts5/i.test(o.sql)) {
        // the index answers the same queries
        t.match = VOCAB.map((w) => sql.exec(`SELECT rowid FROM ${q(o.name)} WHERE ${q(o.name)} MATCH ? ORDER BY rowid`, `"${w}"`).toArray().map((x: any) => x.rowid));
      }
      tables.push(t);
    }
    const hasSeq = sql.exec("SELECT count(*) AS n FROM sqlite_master WHERE name = 'sqlite_sequence'").toArray()[0].n > 0;
    const seq = hasSeq ? sql.exec("SELECT name, quote(seq) AS seq FROM sqlite_sequence ORDER BY name").toArray() : [];
    sqlState = { schema: objs.map((o: any) => [o.type, o.name, o.tbl_name, o.sql]), tables, seq };
  } catch (e) {
    if (!String(e).includes("SQL is not enabled")) throw e;
  }
  return { kv, sql: sqlState, alarm: await storage.getAlarm() };
}

/** testRoute answers the test-only routes shared by both classes, or returns null. */
export async function testRoute(ctx: any, backend: "sqlite" | "kv", url: URL, req: Request): Promise<Response | null> {
  switch (url.pathname) {
    case "/__test/random":
      return Response.json(await randomState(ctx.storage, Number(url.searchParams.get("seed")), backend));
    case "/__test/snapshot":
      return Response.json(await snapshot(ctx.storage));
    case "/__test/sql": {
      const stmts = (await req.json()) as string[];
      const out = [];
      for (const s of stmts) out.push(ctx.storage.sql.exec(s).toArray());
      return Response.json(out);
    }
    case "/__test/put": {
      const { k, v } = (await req.json()) as { k: string; v: unknown };
      await ctx.storage.put(k, decode(v));
      return Response.json({ ok: true });
    }
  }
  return null;
}
