// cfbackup's Durable Object module: mount it in a DO class so cfbackup can export and import the
// object's storage (KV values with their types, SQLite tables, the alarm) over signed HTTP requests.
//
//   import { withCfbackup, routeCfbackup } from "cfbackup-worker";
//   export class Sessions extends withCfbackup(DurableObject) { ... }           // the DO class
//   const r = await routeCfbackup(request, { Sessions: env.SESSIONS }); if (r) return r;  // Worker fetch
//
// Storage is readable only from inside the object, so this is the only way out. Every request is
// signed (see auth.ts); pages are bounded so a large object never exceeds a request's CPU, memory or
// body limits. docs/DURABLE_OBJECTS.md describes the protocol and the NDJSON format.

import { encode, decode } from "./codec.js";
import { checkHeaders, checkSignature, AuthError, ReplayGuard, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE } from "./auth.js";
import { kvProblem, KV_KEY_BYTES, KV_VALUE_ADVERTISED, SQLITE_KV_BYTES } from "./v8size.js";
import { checkCreate, SqlRefused } from "./sqlcheck.js";

export { encode, decode } from "./codec.js";
export { sign, verify, ReplayGuard, AuthError } from "./auth.js";
export { v8SizeBounds, kvProblem } from "./v8size.js";

/**
 * FORMAT names the NDJSON export format written in each header line. Version 2 carries each SQL
 * value's storage class and the rowid, exports sqlite_sequence, lists every table before any row
 * (rows in foreign-key order) and reports values that cannot be restored. Imports accept 1 and 2.
 */
export const FORMAT = "cfbackup-do/2";
export const FORMATS = ["cfbackup-do/1", "cfbackup-do/2"];
/** PREFIX is the URL path prefix of every cfbackup request. */
export const PREFIX = "/__cfbackup/v1/";

/** Platform limits (developers.cloudflare.com/durable-objects/platform/limits); miniflare enforces none. */
export const LIMITS = {
  kvKeyBytes: KV_KEY_BYTES, // KV-backed: key (UTF-8)
  kvValueBytes: KV_VALUE_ADVERTISED, // KV-backed: value (V8 serialisation; 34 bytes of slack are enforced)
  sqliteKeyValueBytes: SQLITE_KV_BYTES, // SQLite-backed: key + value
  kvBatch: 128, // keys per get/put/delete
};

const DEFAULT_LIMIT = 1000;
const MAX_LIMIT = 10000;
const DEFAULT_MAX_BYTES = 4 << 20;
const MAX_MAX_BYTES = 32 << 20;
/** The largest import body read; a longer one is refused before it is read (the Go client sends 4 MiB). */
export const MAX_IMPORT_BYTES = 16 << 20;
/** Warnings (values that cannot be restored) named one by one in an export's end line; more are counted. */
const MAX_WARNINGS = 20;

type SqlCursor = { toArray(): any[]; raw(): { toArray(): any[][] } & Iterable<any[]>; columnNames: string[] };
interface Storage {
  sql?: { exec(q: string, ...b: unknown[]): SqlCursor };
  kv?: { get(k: string): unknown; put(k: string, v: unknown): void; delete(k: string): boolean; list(o?: object): Iterable<[string, unknown]> };
  list(o?: object): Promise<Map<string, unknown>>;
  get(k: string): Promise<unknown>;
  put(entries: Record<string, unknown>): Promise<void>;
  deleteAll(): Promise<void>;
  getAlarm(): Promise<number | null>;
  setAlarm(t: number | Date): Promise<void>;
  deleteAlarm(): Promise<void>;
  transactionSync?<T>(fn: () => T): T;
}
/** State is the part of DurableObjectState the module uses. */
export interface State {
  /** name is set by the runtime when the stub was made with idFromName/getByName (workerd, 2026-03). */
  id: { toString(): string; name?: string };
  storage: Storage;
}

/**
 * NAME_KEY is the KV key under which the module keeps the name an object was created from
 * (idFromName), so a backup taken through idFromString still knows it and a restore into another
 * namespace or account can re-create the object under the same name. It is an ordinary key: it is
 * exported, restored and counted with the others.
 */
export const NAME_KEY = "__cfbackup:name";
const NAME_PREFIX = "name:";
const named = new WeakMap<object, string>();

/**
 * recordName keeps the object's name (its idFromName input) in storage, once per instance: the
 * name given, else the runtime's ctx.id.name. Call it from a class that does not use withCfbackup
 * (or whose objects are reached by other means than fetch, e.g. RPC), with the name the
 * application used. Objects that hold no data yet are left untouched unless force is set.
 */
export async function recordName(state: State, name?: string, force = false): Promise<void> {
  const n = name ?? state.id.name;
  if (typeof n !== "string" || n === "" || named.get(state) === n) return;
  const st = state.storage;
  if ((await st.get(NAME_KEY)) !== n) {
    if (!force && (await st.list({ limit: 1 })).size === 0) return; // no data: do not create storage for it
    await st.put({ [NAME_KEY]: n });
  }
  named.set(state, n);
}

/** objectName is the name the object was created from, if the runtime or storage knows it. */
async function objectName(state: State): Promise<string | undefined> {
  if (typeof state.id.name === "string" && state.id.name !== "") return state.id.name;
  const v = await state.storage.get(NAME_KEY);
  return typeof v === "string" && v !== "" ? v : undefined;
}

/** pathName is the object name a request path addresses (name:<percent-encoded>), or undefined for an ID. */
function pathName(seg: string): string | undefined {
  if (!seg.startsWith(NAME_PREFIX)) return undefined;
  try {
    return decodeURIComponent(seg.slice(NAME_PREFIX.length));
  } catch {
    throw new AuthError(400, "bad_id", "malformed object name");
  }
}
/** Env must carry CFBACKUP_SECRET (wrangler secret put CFBACKUP_SECRET). */
export interface Env {
  CFBACKUP_SECRET?: string;
}

const guards = new WeakMap<object, ReplayGuard>();

/**
 * WIRE names the binary framing this module speaks besides plain NDJSON (docs/DURABLE_OBJECTS.md,
 * "Binary framing"): in a framed body a 0x00 byte starts a frame, a 4-byte big-endian length and that
 * many raw bytes, standing for their base64 inside a JSON string. JSON text never holds a raw 0x00.
 * Every answer of the module carries it in the WIRE_HEADER header, so a client learns the module
 * speaks it; an export is framed only when the request asks for it in that header, an import chunk
 * only when its (signed) query says wire=bin1.
 */
export const WIRE = "bin1";
export const WIRE_HEADER = "cfbackup-wire";
/** FRAMED_TYPE is the content type of a framed export page. */
export const FRAMED_TYPE = "application/x-cfbackup-ndjson-framed";
/** BIN_MIN: a SQL BLOB shorter than this stays base64 in a framed export (a frame saves nothing). */
const BIN_MIN = 1024;

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", [WIRE_HEADER]: WIRE } });
}

/** isCfbackupRequest tells whether a request is for cfbackup (so a DO's fetch can delegate it). */
export function isCfbackupRequest(req: Request): boolean {
  return new URL(req.url).pathname.startsWith(PREFIX);
}

const backends = new WeakMap<object, Storage["sql"] | null>();

/** sqlOf is the object's SQL API, or undefined for a KV-backed class (probed once per object). */
function sqlOf(st: Storage): Storage["sql"] | undefined {
  const known = backends.get(st);
  if (known !== undefined) return known ?? undefined;
  let s: Storage["sql"] | undefined;
  try {
    s = st.sql;
    s?.exec("SELECT 1");
  } catch {
    s = undefined; // KV-backed class: "SQL is not enabled for this Durable Object class"
  }
  backends.set(st, s ?? null);
  return s;
}

/** internal names: the platform's (_cf_*, __cf_*), SQLite's and miniflare's own tables are never exported. */
function isInternal(name: string): boolean {
  return /^(_cf_|__cf_|sqlite_|__miniflare)/i.test(name);
}

const q = (name: string) => '"' + name.replace(/"/g, '""') + '"';

type Counts = { kv: number; tables: number; rows: number; schema: number; sequences: number };
type Cursor = {
  ph: "kv" | "tables" | "sql" | "seq" | "schema" | "done";
  k?: string;
  tb?: string;
  r?: string;
  off?: number;
  n: Counts;
  w?: string[];
  nw?: number;
  fkc?: boolean;
  /** rb: the size of the rows read last, carried to the next page (see exportPage). */
  rb?: number;
};

function encCursor(c: Cursor): string {
  return btoa(unescape(encodeURIComponent(JSON.stringify(c)))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
function decCursor(s: string): Cursor {
  try {
    return JSON.parse(decodeURIComponent(escape(atob(s.replace(/-/g, "+").replace(/_/g, "/")))));
  } catch {
    throw new AuthError(400, "bad_cursor", "malformed cursor");
  }
}

/** readBody reads at most max bytes of a request body; a longer one is refused (413) unread. */
async function readBody(req: Request, max: number): Promise<Uint8Array> {
  const cl = req.headers.get("content-length");
  if (cl !== null && Number(cl) > max) throw new AuthError(413, "too_large", `request body of ${cl} bytes exceeds ${max}: send smaller chunks`);
  if (!req.body) return new Uint8Array(0);
  const rd = req.body.getReader();
  const parts: Uint8Array[] = [];
  let n = 0;
  for (;;) {
    const { done, value } = await rd.read();
    if (done) break;
    n += value.byteLength;
    if (n > max) {
      await rd.cancel();
      throw new AuthError(413, "too_large", `request body exceeds ${max} bytes: send smaller chunks`);
    }
    parts.push(value);
  }
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.byteLength;
  }
  return out;
}

/**
 * handleCfbackup answers one cfbackup request for the object whose state is given: info, export (one
 * page) or import (one chunk). The secret, the signature headers and the timestamp are checked before
 * the body is read, the body is read only up to MAX_IMPORT_BYTES, and the signature over it is
 * checked before anything is read from or written to storage.
 */
export async function handleCfbackup(state: State, env: Env, req: Request): Promise<Response> {
  const url = new URL(req.url);
  const parts = url.pathname.slice(PREFIX.length).split("/");
  if (parts.length !== 3) return json(404, { error: "not_found", message: "not found" });
  const [, id, op] = parts;
  let guard = guards.get(state);
  if (!guard) guards.set(state, (guard = new ReplayGuard()));
  try {
    const h = checkHeaders(env.CFBACKUP_SECRET, req);
    const body = req.method === "POST" ? await readBody(req, MAX_IMPORT_BYTES) : new Uint8Array(0);
    await checkSignature(env.CFBACKUP_SECRET!, req, body, h, guard, Date.now(), url);
    const name = pathName(id);
    if (name === undefined ? id !== state.id.toString() : state.id.name !== undefined && state.id.name !== name) {
      return json(400, { error: "wrong_object", message: `request for object ${id} reached object ${state.id}: check the Worker's cfbackup route` });
    }
    if (op === "info" && req.method === "GET") return json(200, await info(state));
    if (op === "export" && req.method === "GET") return await exportPage(state, url, req.headers.get(WIRE_HEADER) === WIRE);
    if (op === "import" && req.method === "POST") {
      const r = await importChunk(state, url, body);
      // Re-created by name in another namespace: keep the name, so its next backup knows it too.
      if (name !== undefined && r.final) await recordName(state, name, true);
      return json(200, { ...r, id: state.id.toString() });
    }
    return json(405, { error: "bad_method", message: `${req.method} ${op} is not supported` });
  } catch (e) {
    if (e instanceof AuthError) return json(e.status, { error: e.code, message: e.message });
    if (e instanceof ImportError) return json(422, { error: "import_refused", message: e.message });
    if (e instanceof ApplyError) return json(422, { error: "import_failed", message: e.message });
    return json(500, { error: "internal", message: String((e as Error)?.message ?? e) });
  }
}

async function info(state: State) {
  const st = state.storage;
  const sql = sqlOf(st);
  const keys = await st.list({ limit: 1 });
  let tables = 0;
  if (sql) tables = userTables(sql).length;
  const alarm = await st.getAlarm();
  return { id: state.id.toString(), name: (await objectName(state)) ?? null, format: FORMAT, backend: sql ? "sqlite" : "kv", has_data: keys.size > 0 || tables > 0 || alarm !== null, tables, alarm };
}

type Table = { name: string; sql: string };

const USER_TABLE = "type = 'table' AND NOT (name LIKE '\\_cf\\_%' ESCAPE '\\' OR name LIKE '\\_\\_cf\\_%' ESCAPE '\\' OR name LIKE 'sqlite\\_%' ESCAPE '\\' OR name LIKE '\\_\\_miniflare%' ESCAPE '\\')";
const MASTER_WITH_COLS = `SELECT type, name, tbl_name, sql, rowid AS r, CASE WHEN ${USER_TABLE} THEN (SELECT json_group_array(p.name) FROM pragma_table_info(m.name) AS p) END AS cols FROM sqlite_master AS m ORDER BY name`;

/** MasterRow is one row of sqlite_master (r: its rowid; cols: a user table's columns as JSON, when asked for). */
type MasterRow = { type: string; name: string; tbl_name: string; sql: string | null; r: number; cols?: string | null };

/**
 * readMaster reads sqlite_master once, by name: the tables, the other schema objects and whether
 * sqlite_sequence exists all come from it (one query instead of one per question).
 */
function readMaster(sql: NonNullable<Storage["sql"]>, withCols = false): MasterRow[] {
  if (!withCols) return sql.exec("SELECT type, name, tbl_name, sql, rowid AS r FROM sqlite_master ORDER BY name").toArray() as MasterRow[];
  // An export also needs every user table's columns: in the same query, not one PRAGMA table_info
  // each (internal tables are not the module's to read: the runtime refuses them). Should the
  // runtime refuse this query, the columns are read per table as before.
  try {
    return sql.exec(MASTER_WITH_COLS).toArray() as MasterRow[];
  } catch {
    return readMaster(sql);
  }
}

/**
 * userTables lists the object's own tables by name: virtual tables (FTS5) included, their shadow
 * tables not (the virtual table creates and fills them again). master: sqlite_master as read
 * already in this request (readMaster), else it is read.
 */
function userTables(sql: NonNullable<Storage["sql"]>, master = readMaster(sql)): Table[] {
  const all = master.filter((r) => r.type === "table") as Table[];
  // Only a virtual table has shadow tables: without one, the (slower) table_list pragma is skipped.
  const virtual = all.some((r) => r.sql && /^\s*CREATE\s+VIRTUAL\b/i.test(r.sql));
  const shadow = virtual ? new Set(sql.exec("PRAGMA table_list").toArray().filter((r) => r.type === "shadow" && r.schema === "main").map((r) => r.name as string)) : new Set<string>();
  return all.filter((r) => !isInternal(r.name) && r.sql && !shadow.has(r.name)).map((r) => ({ name: r.name, sql: r.sql }));
}

/** isSchemaObject: an index, trigger or view with SQL (not an automatic index). */
function isSchemaObject(r: MasterRow): boolean {
  return (r.type === "index" || r.type === "trigger" || r.type === "view") && r.sql !== null;
}

/** schemaObjects are the user's indexes, triggers and views (with SQL), in the order they were created. */
function schemaObjects(master: MasterRow[]): MasterRow[] {
  return master.filter((r) => isSchemaObject(r) && !isInternal(r.name) && !isInternal(r.tbl_name)).sort((a, b) => a.r - b.r);
}

/** hasSequence tells whether sqlite_sequence exists (some table has AUTOINCREMENT). */
function hasSequence(master: MasterRow[]): boolean {
  return master.some((r) => r.name === "sqlite_sequence");
}

/**
 * schemaOf reads the object's tables, their order and columns once per request (the schema does not
 * change while one request is answered): an export asks for them on every phase and table.
 */
function schemaOf(sql: NonNullable<Storage["sql"]>) {
  let master: MasterRow[] | undefined;
  let tables: Table[] | undefined;
  let order: { tables: Table[]; cyclic: boolean } | undefined;
  const cols = new Map<string, string[]>();
  const getMaster = () => (master ??= readMaster(sql, true));
  return {
    master: getMaster,
    tables: () => (tables ??= userTables(sql, getMaster())),
    order: () => {
      if (!order) {
        const cyc = { v: false };
        order = { tables: fkOrder(sql, (tables ??= userTables(sql, getMaster())), cyc), cyclic: cyc.v };
      }
      return order;
    },
    cols: (name: string) => {
      let c = cols.get(name);
      if (!c) {
        const m = getMaster().find((r) => r.name === name && r.type === "table");
        c = typeof m?.cols === "string" ? (JSON.parse(m.cols) as string[]) : tableCols(sql, name);
        cols.set(name, c);
      }
      return c;
    },
  };
}

/**
 * ftsContent tells how an FTS5/FTS4 table keeps its text: "own" (its rows are exported and inserted
 * again), "external" (it indexes another table: rebuilt from it on import), "none" (contentless: the
 * text is not stored, so it cannot be exported), or null for any other table.
 */
function ftsContent(t: Table): "own" | "external" | "none" | null {
  if (!/^\s*CREATE\s+VIRTUAL\s+TABLE\b[\s\S]*\bUSING\s+fts[345]\b/i.test(t.sql)) return null;
  const m = /\bcontent\s*=\s*(?:'((?:[^']|'')*)'|"((?:[^"]|"")*)"|([A-Za-z0-9_]+))/i.exec(t.sql);
  if (!m) return "own";
  return (m[1] ?? m[2] ?? m[3] ?? "") === "" ? "none" : "external";
}

/**
 * fkOrder orders tables so that a table comes after the tables its foreign keys reference (parents
 * first), by name among equals; tables in a cycle follow in name order. A multi-chunk import then
 * inserts parents before children.
 */
function fkOrder(sql: NonNullable<Storage["sql"]>, tables: Table[], cyclic?: { v: boolean }): Table[] {
  if (tables.length < 2 && !cyclic) return tables; // nothing to order: no foreign key pragma needed
  // A foreign key is written with REFERENCES in its table's CREATE statement (ALTER TABLE rewrites
  // the statement): with none anywhere, no table has one, and no pragma is needed.
  if (!tables.some((t) => /references/i.test(t.sql))) return tables;
  const byLower = new Map(tables.map((t) => [t.name.toLowerCase(), t]));
  const parents = new Map<string, Set<string>>();
  for (const t of tables) {
    const ps = new Set<string>();
    for (const r of sql.exec(`PRAGMA foreign_key_list(${q(t.name)})`).toArray()) {
      const p = byLower.get(String(r.table).toLowerCase());
      if (p && p.name !== t.name) ps.add(p.name);
      else if (p && cyclic) cyclic.v = true; // a self reference
    }
    parents.set(t.name, ps);
  }
  const out: Table[] = [];
  const done = new Set<string>();
  const left = [...tables];
  while (left.length) {
    let i = left.findIndex((t) => [...parents.get(t.name)!].every((p) => done.has(p)));
    if (i < 0) {
      i = 0; // a cycle: break it by name
      if (cyclic) cyclic.v = true;
    }
    const [t] = left.splice(i, 1);
    done.add(t.name);
    out.push(t);
  }
  return out;
}

/** rowidName is a name that reaches the table's rowid (not shadowed by a column), or null. */
function rowidName(t: Table, cols: string[]): string | null {
  if (/\bWITHOUT\s+ROWID\b/i.test(t.sql)) return null;
  if (/^\s*CREATE\s+VIRTUAL\b/i.test(t.sql)) return ftsContent(t) === "own" ? "rowid" : null;
  const lower = new Set(cols.map((c) => c.toLowerCase()));
  for (const n of ["_rowid_", "rowid", "oid"]) if (!lower.has(n)) return n;
  return null;
}

const INT_SAFE = 9007199254740991;
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * exportPage writes one page of the export:
 *   header, kv…, table… (all of them, by name), row… (tables parents first), seq…, schema…, end.
 * Every SQL value is read with its storage class (typeof): integers beyond ±2^53 as decimal text,
 * text as its bytes (so invalid UTF-8 and NUL survive), and the row's rowid.
 */
async function exportPage(state: State, url: URL, framed: boolean): Promise<Response> {
  const st = state.storage;
  const sql = sqlOf(st);
  const backend = sql ? "sqlite" : "kv";
  const limit = Math.min(Math.max(Number(url.searchParams.get("limit") ?? DEFAULT_LIMIT) || DEFAULT_LIMIT, 1), MAX_LIMIT);
  const maxBytes = Math.min(Math.max(Number(url.searchParams.get("max_bytes") ?? DEFAULT_MAX_BYTES) || DEFAULT_MAX_BYTES, 1024), MAX_MAX_BYTES);
  const cs = url.searchParams.get("cursor");
  const c: Cursor = cs ? decCursor(cs) : { ph: "kv", n: { kv: 0, tables: 0, rows: 0, schema: 0, sequences: 0 } };
  const out: (string | Uint8Array)[] = [];
  let lines = 0;
  let bytes = 0;
  const emit = (o: unknown) => {
    const line = JSON.stringify(o) + "\n";
    out.push(line);
    lines++;
    bytes += line.length;
  };
  const warn = (msg: string) => {
    c.nw = (c.nw ?? 0) + 1;
    if ((c.w ??= []).length < MAX_WARNINGS) c.w.push(msg);
  };
  const full = () => lines >= limit || bytes >= maxBytes;
  let rowBytes = c.rb ?? 0; // the size of the rows read last (export lines), which bounds how many are read next
  if (!cs) {
    const header: Record<string, unknown> = { t: "header", format: FORMAT, id: state.id.toString(), backend, alarm: await st.getAlarm(), time: Date.now() };
    const name = await objectName(state);
    if (name !== undefined) header.name = name; // lets a restore into another namespace re-create it by name
    emit(header);
  }
  const schema = sql ? schemaOf(sql) : undefined;
  const tablesInOrder = () => schema?.order().tables ?? [];
  while (!full() && c.ph !== "done") {
    if (c.ph === "kv") {
      const want = Math.max(1, Math.min(limit - lines, LIMITS.kvBatch));
      const opts: Record<string, unknown> = { limit: want };
      if (c.k !== undefined) opts.startAfter = c.k;
      const page = await st.list(opts);
      let done = 0;
      for (const [k, v] of page) {
        emit({ t: "kv", k, v: encode(v) });
        const name = JSON.stringify(k.length > 60 ? k.slice(0, 60) + "…" : k);
        const p = kvProblem(backend, k, v, false);
        if (p) warn(`kv ${name}: ${p}: a restore of this object will fail`);
        // Storage keeps keys as bytes and lists them back as UTF-8: a key written with an unpaired
        // surrogate comes back with U+FFFD instead, under which its value cannot be read.
        if (k.includes("\ufffd") && (await st.get(k)) === undefined) warn(`kv ${name}: the key was written with an unpaired surrogate and lists back with U+FFFD; it is restored under the listed key`);
        c.k = k;
        c.n.kv++;
        done++;
        if (full()) break;
      }
      if (done === page.size && page.size < want) {
        c.ph = sql ? "tables" : "done";
        delete c.k;
      }
      continue;
    }
    if (c.ph === "tables" && sql) {
      const tables = schema!.tables();
      // Resume after the last table written (SQLite orders names by their UTF-8 bytes, so compare by
      // position, not with JavaScript's UTF-16 order).
      let i = c.tb === undefined ? 0 : tables.findIndex((t) => t.name === c.tb) + 1;
      if (i === 0 && c.tb !== undefined) i = tables.findIndex((t) => t.name > c.tb!); // dropped meanwhile
      if (i < 0) i = tables.length;
      for (; i < tables.length && !full(); i++) {
        const t = tables[i];
        const cols = schema!.cols(t.name);
        const fts = ftsContent(t);
        const line: Record<string, unknown> = { t: "table", name: t.name, sql: t.sql, cols, rowid: rowidName(t, cols) };
        if (fts === "external") line.rebuild = true;
        if (fts === "none") warn(`table ${JSON.stringify(t.name)}: a contentless full-text table does not store its text, so its index cannot be exported; it is restored empty`);
        emit(line);
        c.n.tables++;
        c.tb = t.name;
      }
      if (i >= tables.length) {
        c.ph = "sql";
        delete c.tb;
      }
      continue;
    }
    if (c.ph === "sql" && sql) {
      const tables = tablesInOrder();
      let ti = c.tb === undefined ? 0 : tables.findIndex((x) => x.name === c.tb);
      if (ti < 0) ti = tables.length; // dropped meanwhile: the rest of the order is not knowable; stop rows here
      const t = tables[ti];
      if (!t) {
        c.ph = "seq";
        delete c.tb;
        continue;
      }
      if (c.tb !== t.name) {
        c.tb = t.name;
        delete c.r;
        delete c.off;
        delete c.rb; // another table: its rows' size is not known yet
        rowBytes = 0;
      }
      const cols = schema!.cols(t.name);
      const rid = rowidName(t, cols);
      const wantLines = Math.max(1, Math.min(limit - lines, 500));
      const fts = ftsContent(t);
      if (fts === "external" || fts === "none") {
        // no rows of its own: rebuilt from its content table, or not stored at all
        const next = tables[ti + 1];
        if (next) c.tb = next.name;
        else {
          c.ph = "seq";
          delete c.tb;
        }
        continue;
      }
      const list = cols
        .map((x) => {
          const c = q(x);
          return `typeof(${c}), CASE typeof(${c}) WHEN 'text' THEN CAST(${c} AS BLOB) WHEN 'integer' THEN CASE WHEN ${c} > ${INT_SAFE} OR ${c} < -${INT_SAFE} THEN CAST(${c} AS TEXT) ELSE ${c} END ELSE ${c} END`;
        })
        .join(",");
      // No more rows than the page has room for, at the size of the rows read last (16 rows first,
      // enough for most tables of a small object in one query): reading 500 rows for a page that holds
      // three 1 MiB BLOBs read and copied 170 MiB per page. (A cursor left unfinished would keep the
      // table locked: a later import could not drop it.)
      const want = Math.max(1, Math.min(wantLines, rowBytes > 0 ? Math.ceil((maxBytes - bytes) / rowBytes) : 16));
      const rows = rid
        ? sql.exec(`SELECT CAST(${rid} AS TEXT)${list ? ", " + list : ""} FROM ${q(t.name)} WHERE ${rid} > CAST(? AS INTEGER) ORDER BY ${rid} LIMIT ?`, c.r ?? "-9223372036854775808", want).raw().toArray()
        : sql.exec(`SELECT ${list} FROM ${q(t.name)} LIMIT ? OFFSET ?`, want, c.off ?? 0).raw().toArray();
      let done = 0;
      const before = bytes;
      for (const r of rows) {
        const vals = rid ? r.slice(1) : r;
        let cls = "";
        const v: unknown[] = [];
        let bins: ArrayBuffer[] | undefined;
        for (let j = 0; j < vals.length; j += 2) {
          const ty = vals[j] as string;
          let x = vals[j + 1];
          cls += ty === "integer" ? "i" : ty === "real" ? "r" : ty === "text" ? "t" : ty === "blob" ? "b" : "n";
          if (ty === "text" && x instanceof ArrayBuffer) {
            try {
              x = utf8.decode(x);
            } catch {
              /* not valid UTF-8: kept as its bytes, restored with CAST(? AS TEXT) */
            }
          }
          if (framed && x instanceof ArrayBuffer && x.byteLength >= BIN_MIN) {
            v.push(BIN);
            (bins ??= []).push(x);
          } else v.push(encode(x));
        }
        const line: Record<string, unknown> = { t: "row", table: t.name, c: cls, v };
        if (rid) line.r = /^-?[0-9]{1,15}$/.test(r[0]) ? Number(r[0]) : r[0]; // a number while exact, else text
        if (bins) {
          bytes += emitFramedRow(out, line, bins);
          lines++;
        } else emit(line);
        c.n.rows++;
        done++;
        if (rid) c.r = r[0];
        else c.off = (c.off ?? 0) + 1;
        if (full()) break;
      }
      if (done > 0) c.rb = rowBytes = Math.ceil((bytes - before) / done);
      if (done === rows.length && rows.length < want) {
        delete c.r;
        delete c.off;
        const next = tables[ti + 1];
        if (next) c.tb = next.name;
        else {
          c.ph = "seq";
          delete c.tb;
        }
      }
      continue;
    }
    if (c.ph === "seq" && sql) {
      if (schema!.order().cyclic) c.fkc = true;
      if (hasSequence(schema!.master())) {
        for (const r of sql.exec("SELECT name, CAST(seq AS TEXT) AS seq FROM sqlite_sequence ORDER BY name").toArray()) {
          if (isInternal(String(r.name))) continue;
          emit({ t: "seq", name: r.name, seq: r.seq });
          c.n.sequences++;
        }
      }
      c.ph = "schema";
      continue;
    }
    if (sql) {
      for (const r of schemaObjects(schema!.master())) {
        emit({ t: "schema", type: r.type, name: r.name, sql: r.sql });
        c.n.schema++;
      }
    }
    c.ph = "done";
  }
  if (c.ph === "done") {
    const end: Record<string, unknown> = { t: "end", kv: c.n.kv, tables: c.n.tables, rows: c.n.rows, schema: c.n.schema, sequences: c.n.sequences };
    // Foreign keys in a cycle or to their own table: an import in several chunks checks them per
    // chunk, so such an object restores only while its export fits one chunk (cfbackup warns).
    if (c.fkc) end.fk_cycle = true;
    if (c.nw) {
      end.unrestorable = c.nw;
      end.warnings = c.w;
    }
    emit(end);
  } else emit({ t: "next", cursor: encCursor(c) });
  if (framed) return new Response(new Blob(out as BlobPart[]), { headers: { "content-type": FRAMED_TYPE, [WIRE_HEADER]: WIRE } });
  return new Response((out as string[]).join(""), { headers: { "content-type": "application/x-ndjson", [WIRE_HEADER]: WIRE } });
}

/** BIN stands for a framed BLOB in a row's values while its line is written (emitFramedRow). */
const BIN = Symbol("bin");

/** frameHead is the 5 bytes that start a frame of n raw bytes: 0x00 and n, big-endian. */
function frameHead(n: number): Uint8Array {
  return new Uint8Array([0, n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);
}

/**
 * emitFramedRow writes a row line whose BIN values are framed BLOBs: the same bytes as
 * JSON.stringify(line) once every frame is replaced by the base64 of its bytes (key order t, table,
 * c, v, r). It returns the line's length as NDJSON, which bounds the page as in a plain export.
 */
function emitFramedRow(out: (string | Uint8Array)[], line: Record<string, unknown>, bins: ArrayBuffer[]): number {
  let s = `{"t":"row","table":${JSON.stringify(line.table)},"c":${JSON.stringify(line.c)},"v":[`;
  let n = 0;
  let k = 0;
  (line.v as unknown[]).forEach((x, i) => {
    if (i > 0) s += ",";
    if (x !== BIN) {
      s += JSON.stringify(x);
      return;
    }
    const b = bins[k++];
    out.push(s + '{"$t":"ab","v":"', frameHead(b.byteLength), new Uint8Array(b));
    n += s.length + 16 + Math.ceil(b.byteLength / 3) * 4;
    s = '"}';
  });
  s += "]" + (line.r !== undefined ? `,"r":${JSON.stringify(line.r)}` : "") + "}\n";
  out.push(s);
  return n + s.length;
}

/**
 * unframe turns a framed import chunk into its NDJSON text: each frame becomes the string
 * "\u0000<i>" (JSON escapes), which insertOf resolves to bins[i]. Only a row value tagged "ab" is
 * resolved; anywhere else the string stays as it is, like any other string.
 */
function unframe(body: Uint8Array, dec: TextDecoder): { text: string; bins: Uint8Array[] } {
  const parts: string[] = [];
  const bins: Uint8Array[] = [];
  let off = 0;
  for (;;) {
    const z = body.indexOf(0, off);
    parts.push(dec.decode(body.subarray(off, z < 0 ? body.length : z)));
    if (z < 0) break;
    if (z + 5 > body.length) throw new ImportError("truncated frame");
    const n = ((body[z + 1] << 24) | (body[z + 2] << 16) | (body[z + 3] << 8) | body[z + 4]) >>> 0;
    if (z + 5 + n > body.length) throw new ImportError("truncated frame");
    parts.push("\\u0000" + bins.length);
    bins.push(body.subarray(z + 5, z + 5 + n));
    off = z + 5 + n;
  }
  return { text: parts.join(""), bins };
}

/** ImportError: the chunk was refused before anything was changed. */
class ImportError extends Error {}
/** ApplyError: applying the chunk failed deterministically (a constraint, a limit); retrying cannot help. */
class ApplyError extends Error {}

function deterministic(e: unknown): boolean {
  if (e instanceof RangeError || e instanceof TypeError || e instanceof SqlRefused) return true;
  return /SQLITE_(CONSTRAINT|ERROR|MISMATCH|TOOBIG|RANGE|AUTH)/.test(String((e as Error)?.message ?? e));
}

type Stmt = { sql: string; args: unknown[] };

/** isFrameRef: a row value {"$t":"ab","v":"\u0000<i>"} that unframe put in place of a frame. */
function isFrameRef(x: unknown): boolean {
  const o = x as { $t?: unknown; v?: unknown } | null;
  return typeof o === "object" && o !== null && o.$t === "ab" && typeof o.v === "string" && o.v.charCodeAt(0) === 0;
}

/** frameValue is the BLOB of a frame reference (a copy: the chunk's body is not kept). */
function frameValue(o: { v: string }, bins: Uint8Array[]): ArrayBuffer {
  const i = Number(o.v.slice(1));
  const b = Number.isInteger(i) ? bins[i] : undefined;
  if (!b) throw new ImportError("a row refers to a frame the chunk does not have");
  return b.slice().buffer as ArrayBuffer;
}

/** insertOf builds the INSERT of one row line: v2 binds each value as its storage class demands. */
function insertOf(table: string, cols: string[], o: any, rowid: string | null, bins?: Uint8Array[]): Stmt {
  const vals = o.v as unknown[];
  if (!Array.isArray(vals) || vals.length !== cols.length) throw new ImportError(`row of ${table}: ${Array.isArray(vals) ? vals.length : "no"} values for ${cols.length} columns`);
  const names = cols.map(q);
  const exprs: string[] = [];
  const args: unknown[] = [];
  const cls = o.c;
  if (cls !== undefined && (typeof cls !== "string" || cls.length !== cols.length || !/^[irtbn]*$/.test(cls))) throw new ImportError(`row of ${table}: bad storage classes ${JSON.stringify(cls)}`);
  for (let i = 0; i < vals.length; i++) {
    const v = bins && isFrameRef(vals[i]) ? frameValue(vals[i] as { v: string }, bins) : decode(vals[i]);
    const k = cls?.[i];
    if (k === "i") {
      if (!(typeof v === "number" && Number.isInteger(v)) && !(typeof v === "string" && /^-?[0-9]{1,19}$/.test(v))) throw new ImportError(`row of ${table}: bad integer ${JSON.stringify(vals[i])}`);
      exprs.push("CAST(? AS INTEGER)");
      args.push(v);
    } else if (k === "r" && typeof v === "number" && !Number.isFinite(v)) {
      if (Number.isNaN(v)) throw new ImportError(`row of ${table}: NaN is not a REAL SQLite stores`);
      exprs.push(v > 0 ? "9e999" : "-9e999"); // a bound ±Infinity would be stored as NULL
    } else if (k === "t" && v instanceof ArrayBuffer) {
      exprs.push("CAST(? AS TEXT)"); // text that is not valid UTF-8, byte for byte
      args.push(v);
    } else if (k === "n" && v !== null) {
      throw new ImportError(`row of ${table}: a NULL holds a value`);
    } else {
      exprs.push("?");
      args.push(v);
    }
  }
  if (rowid && o.r !== undefined) {
    if (!/^-?[0-9]{1,19}$/.test(String(o.r))) throw new ImportError(`row of ${table}: bad rowid`);
    names.unshift(rowid);
    exprs.unshift("CAST(? AS INTEGER)");
    args.unshift(String(o.r));
  }
  return { sql: `INSERT INTO ${q(table)} (${names.join(",")}) VALUES (${exprs.join(",")})`, args };
}

/**
 * importChunk applies one chunk of an export. seq=0 starts the import by deleting everything the
 * object stores; final=1 sets the alarm (alarm=<ms>) last. A single chunk (seq=0, final=1) on a
 * SQLite-backed object runs in one transaction: it applies completely or not at all. Within a chunk,
 * tables are created before any row is written and foreign keys are checked when the chunk commits
 * (PRAGMA defer_foreign_keys), so the order of tables and rows does not matter.
 */
async function importChunk(state: State, url: URL, body: Uint8Array) {
  const seq = Number(url.searchParams.get("seq") ?? "-1");
  const final = url.searchParams.get("final") === "1";
  const alarmParam = url.searchParams.get("alarm");
  if (!Number.isInteger(seq) || seq < 0) throw new ImportError("seq must be a non-negative integer");
  const st = state.storage;
  const sql = sqlOf(st);
  const backend = sql ? "sqlite" : "kv";
  // Parse and check the whole chunk before changing anything.
  let text: string;
  let bins: Uint8Array[] | undefined;
  try {
    const dec = new TextDecoder("utf-8", { fatal: true });
    if (url.searchParams.get("wire") === WIRE) ({ text, bins } = unframe(body, dec));
    else text = dec.decode(body);
  } catch (e) {
    if (e instanceof ImportError) throw e;
    throw new ImportError("the chunk is not UTF-8");
  }
  const kv: [string, unknown][] = [];
  const creates: Stmt[] = [];
  const created: Table[] = [];
  const rows: Stmt[] = [];
  const seqs: Stmt[] = [];
  const schema: Stmt[] = [];
  const schemaNames: { type: string; name: string; sql: string }[] = [];
  const n = { kv: 0, tables: 0, rows: 0, schema: 0, sequences: 0 };
  const tablesHere = new Map<string, { cols: string[]; rowid: string | null }>();
  let existing: Map<string, Table> | undefined;
  const known = (name: unknown): { cols: string[]; rowid: string | null } => {
    if (typeof name !== "string" || isInternal(name)) throw new ImportError(`row or sequence of table ${JSON.stringify(name)}: not a user table`);
    const here = tablesHere.get(name);
    if (here) return here;
    existing ??= new Map(userTables(sql!).map((t) => [t.name, t]));
    const t = existing.get(name);
    if (!t) throw new ImportError(`row or sequence of table ${JSON.stringify(name)}, which the export did not create`);
    const cols = tableCols(sql!, name);
    const e = { cols, rowid: rowidName(t, cols) };
    tablesHere.set(name, e);
    return e;
  };
  let format = "";
  for (const line of text.split("\n")) {
    if (!line) continue;
    let o: any;
    try {
      o = JSON.parse(line);
    } catch {
      throw new ImportError(`line is not JSON: ${line.slice(0, 80)}`);
    }
    if (o === null || typeof o !== "object") throw new ImportError(`line is not a JSON object: ${line.slice(0, 80)}`);
    try {
      switch (o.t) {
        case "header":
          if (!FORMATS.includes(o.format)) throw new ImportError(`export format ${o.format} is not one of ${FORMATS.join(", ")}: use a matching cfbackup-worker version`);
          format = o.format;
          break;
        case "kv": {
          if (typeof o.k !== "string") throw new ImportError("a kv line needs a string key");
          const v = decode(o.v);
          const p = kvProblem(backend, o.k, v, true);
          if (p) throw new ImportError(`key ${JSON.stringify(o.k.slice(0, 40))}: ${p}`);
          kv.push([o.k, v]);
          n.kv++;
          break;
        }
        case "table": {
          if (!sql) throw new ImportError(`the export has SQL table ${o.name}, but this object's class is KV-backed: restore into a SQLite-backed class (new_sqlite_classes)`);
          if (typeof o.name !== "string" || isInternal(o.name)) throw new ImportError(`table ${JSON.stringify(o.name)} is not a user table`);
          checkCreate(o.sql, "table", o.name);
          if (!Array.isArray(o.cols) || !o.cols.every((x: unknown) => typeof x === "string")) throw new ImportError(`table ${o.name}: cols must be a list of names`);
          const rowid = o.rowid === undefined || o.rowid === null ? null : String(o.rowid);
          if (rowid !== null && !["_rowid_", "rowid", "oid"].includes(rowid)) throw new ImportError(`table ${o.name}: bad rowid name`);
          creates.push({ sql: o.sql, args: [] });
          created.push({ name: o.name, sql: o.sql });
          tablesHere.set(o.name, { cols: o.cols, rowid });
          n.tables++;
          break;
        }
        case "row": {
          if (!sql) throw new ImportError("the export has SQL rows, but this object's class is KV-backed");
          const t = known(o.table);
          rows.push(insertOf(o.table, t.cols, format === "cfbackup-do/1" ? { v: o.v } : o, t.rowid, bins));
          n.rows++;
          break;
        }
        case "seq": {
          if (!sql) throw new ImportError("the export has SQL sequences, but this object's class is KV-backed");
          known(o.name);
          if (!/^-?[0-9]{1,19}$/.test(String(o.seq))) throw new ImportError(`sequence of ${o.name}: bad value`);
          seqs.push({ sql: "DELETE FROM sqlite_sequence WHERE name = ?", args: [o.name] });
          seqs.push({ sql: "INSERT INTO sqlite_sequence(name, seq) VALUES (?, CAST(? AS INTEGER))", args: [o.name, String(o.seq)] });
          n.sequences++;
          break;
        }
        case "schema":
          if (!sql) throw new ImportError("the export has SQL schema, but this object's class is KV-backed");
          if (!["index", "trigger", "view"].includes(o.type)) throw new ImportError(`schema line of type ${JSON.stringify(o.type)}`);
          if (typeof o.name !== "string" || isInternal(o.name)) throw new ImportError(`schema object ${JSON.stringify(o.name)} is not a user object`);
          checkCreate(o.sql, o.type, o.name);
          schema.push({ sql: o.sql, args: [] });
          schemaNames.push({ type: o.type, name: o.name, sql: o.sql });
          n.schema++;
          break;
        case "next":
        case "end":
          break;
        default:
          throw new ImportError(`unknown line type ${JSON.stringify(o.t)}`);
      }
    } catch (e) {
      if (e instanceof SqlRefused) throw new ImportError(`refused SQL: ${e.message}`);
      if (e instanceof TypeError && !(e instanceof ImportError)) throw new ImportError(`bad value: ${e.message}`);
      throw e;
    }
  }
  let alarm: number | null = null;
  if (final && alarmParam) {
    alarm = Number(alarmParam);
    if (!Number.isFinite(alarm)) throw new ImportError("alarm must be epoch milliseconds");
  }
  const apply = (kept?: Kept) => {
    const stmts = [...creates.filter((_, i) => !kept?.tables.has(created[i].name)), ...rows, ...seqs, ...schema.filter((_, i) => !kept?.indexes.has(schemaNames[i].name))];
    if (stmts.length) sql!.exec("PRAGMA defer_foreign_keys = ON");
    for (const s of stmts) sql!.exec(s.sql, ...s.args);
    if (final) {
      // Full-text tables over another table's content are rebuilt once every row is in.
      // A first chunk wiped the object, so its tables are the ones it created.
      for (const t of seq === 0 ? created : userTables(sql!)) if (ftsContent(t) === "external") sql!.exec(`INSERT INTO ${q(t.name)} (${q(t.name)}) VALUES ('rebuild')`);
    }
  };
  let atomic = false;
  // The alarm as it is before this chunk: setting it to the value it already has is skipped, since
  // an alarm write is a commit of its own and a call to the alarm scheduler (restoring in place).
  let alarmBefore = final ? await st.getAlarm() : null;
  try {
    if (seq === 0 && final && sql && st.kv && st.transactionSync) {
      // Whole object in one chunk: wipe and write inside one SQLite transaction.
      st.transactionSync(() => {
        const master = readMaster(sql);
        const kept = keepable(sql, master, created, schemaNames);
        wipeSync(st, sql, master, kept, new Set(kv.map(([k]) => k)));
        for (const [k, v] of kv) st.kv!.put(k, v);
        apply(kept);
      });
      atomic = true;
    } else {
      if (seq === 0) {
        await st.deleteAll();
        await st.deleteAlarm();
        alarmBefore = null;
      }
      for (let i = 0; i < kv.length; i += LIMITS.kvBatch) {
        await st.put(Object.fromEntries(kv.slice(i, i + LIMITS.kvBatch)));
      }
      if (sql) {
        if (st.transactionSync) st.transactionSync(() => apply());
        else apply();
      }
    }
  } catch (e) {
    if (deterministic(e)) throw new ApplyError(`${(e as Error)?.message ?? e}${atomic || (seq === 0 && final) ? " (nothing was changed)" : ""}`);
    throw e;
  }
  if (final && alarm !== alarmBefore) {
    if (alarm !== null) await st.setAlarm(alarm);
    else await st.deleteAlarm();
  }
  return { seq, final, atomic, backend, ...n, alarm };
}

function tableCols(sql: NonNullable<Storage["sql"]>, table: string): string[] {
  return sql.exec(`PRAGMA table_info(${q(table)})`).toArray().map((r) => r.name as string);
}

/**
 * Kept is what a one-chunk import keeps of the object's schema instead of dropping and creating it
 * again: tables whose CREATE statement is the export's, byte for byte (emptied instead), and those
 * tables' indexes that the export has too. Every schema change makes SQLite read the schema again and
 * prepare every statement again; a restore over an object with the same schema (the same object, or
 * an application that creates its tables in its constructor) then changes none.
 */
type Kept = { tables: Set<string>; indexes: Set<string> };

function keepable(sql: NonNullable<Storage["sql"]>, master: MasterRow[], created: Table[], schema: { type: string; name: string; sql: string }[]): Kept {
  const want = new Map(created.filter((t) => !/^\s*CREATE\s+VIRTUAL\b/i.test(t.sql)).map((t) => [t.name, t.sql]));
  const tables = new Set<string>();
  const indexes = new Set<string>();
  if (want.size === 0) return { tables, indexes };
  for (const t of userTables(sql, master)) if (want.get(t.name) === t.sql) tables.add(t.name);
  const wantIdx = new Map(schema.filter((x) => x.type === "index").map((x) => [x.name, x.sql]));
  for (const r of master) {
    if (r.type === "index" && r.sql !== null && tables.has(r.tbl_name) && wantIdx.get(r.name) === r.sql) indexes.add(r.name);
  }
  return { tables, indexes };
}

/**
 * wipeSync removes every user trigger, view, index and table and every KV key (but those in
 * rewritten, which the caller puts next), synchronously, inside the caller's transaction. Foreign keys are checked at commit (by then every table is gone), and
 * children are dropped before their parents, so a parent table with referencing rows drops cleanly.
 */
function wipeSync(st: Storage, sql: NonNullable<Storage["sql"]>, master = readMaster(sql), kept?: Kept, rewritten?: Set<string>) {
  sql.exec("PRAGMA defer_foreign_keys = ON");
  const objs = master.filter(isSchemaObject);
  for (const r of objs.sort((a, b) => (a.type < b.type ? -1 : a.type > b.type ? 1 : 0))) {
    if (isInternal(r.name)) continue;
    // Indexes go with their tables, except on a kept table, where only the kept ones stay.
    if (r.type === "index" && (!kept?.tables.has(r.tbl_name) || kept.indexes.has(r.name))) continue;
    sql.exec(`DROP ${r.type.toUpperCase()} IF EXISTS ${q(r.name)}`);
  }
  // Children before parents; a kept table is emptied where it would have been dropped (DROP TABLE
  // empties it first too), so foreign-key actions run as they would have.
  for (const t of fkOrder(sql, userTables(sql, master)).reverse()) sql.exec(kept?.tables.has(t.name) ? `DELETE FROM ${q(t.name)}` : `DROP TABLE IF EXISTS ${q(t.name)}`);
  if (kept?.tables.size && hasSequence(master)) {
    for (const t of kept.tables) sql.exec("DELETE FROM sqlite_sequence WHERE name = ?", t); // the export's seq lines set them again
  }
  // A key the caller writes again next is overwritten, not deleted first.
  const keys = [...st.kv!.list()].map(([k]) => k).filter((k) => !rewritten?.has(k));
  for (const k of keys) st.kv!.delete(k);
}

/**
 * withCfbackup is the mixin form: `class X extends withCfbackup(DurableObject)` answers cfbackup's
 * requests and hands every other request to the class's own fetch (which may be defined in X itself:
 * the constructor wraps whatever fetch the finished class has).
 */
export function withCfbackup<T extends new (...args: any[]) => any>(Base: T) {
  return class extends Base {
    constructor(...args: any[]) {
      super(...args);
      const own = (this as any).fetch as ((req: Request) => Promise<Response>) | undefined;
      const state = args[0] as State;
      const env = args[1] as Env;
      (this as any).fetch = async (req: Request): Promise<Response> => {
        if (isCfbackupRequest(req)) return handleCfbackup(state, env, req);
        if (!own) return new Response("not found", { status: 404 });
        const res = await own.call(this, req);
        // An object reached by name (ctx.id.name) keeps its name once it holds data.
        if (state.id.name) await recordName(state).catch(() => undefined);
        return res;
      };
    }
  };
}

interface Namespace {
  idFromString(id: string): unknown;
  idFromName(name: string): unknown;
  get(id: unknown): { fetch(req: Request): Promise<Response> };
}

/**
 * routeCfbackup forwards /__cfbackup/v1/<Class>/<id>/... to that object of the namespace bound for
 * Class, or returns null for other paths. IDs are bound to their namespace: an ID from another
 * namespace or account is refused. <id> may instead be name:<percent-encoded name>: the object is
 * then idFromName(name), which is how a restore re-creates named objects in another namespace.
 */
export async function routeCfbackup(req: Request, namespaces: Record<string, Namespace | undefined>): Promise<Response | null> {
  if (!isCfbackupRequest(req)) return null;
  const [cls, id, ...rest] = new URL(req.url).pathname.slice(PREFIX.length).split("/");
  const ns = namespaces[cls];
  // Answered before any signature check, so it names nothing: not the classes routed here.
  if (!ns || !Object.prototype.hasOwnProperty.call(namespaces, cls)) return json(404, { error: "not_found", message: "not found" });
  if (id === BATCH && rest.length === 0) return routeBatch(req, ns, cls);
  const stub = stubOf(ns, id);
  return stub instanceof Response ? stub : stub.fetch(req);
}

/** stubOf is the stub of the object a path segment addresses (an ID or name:<name>), or the error answer. */
function stubOf(ns: Namespace, id: string): { fetch(req: Request): Promise<Response> } | Response {
  let oid: unknown;
  try {
    const name = pathName(id);
    oid = name === undefined ? ns.idFromString(id) : ns.idFromName(name);
  } catch (e) {
    if (e instanceof AuthError) return json(e.status, { error: e.code, message: e.message });
    return json(400, { error: "bad_id", message: `${(e as Error).message} (object IDs are bound to their namespace; restoring into another namespace or account needs the original names)` });
  }
  return ns.get(oid);
}

/** BATCH is the path segment, in place of an object ID, of a batch: /__cfbackup/v1/<Class>/_batch. */
export const BATCH = "_batch";
/** MAX_BATCH_ITEMS bounds the object requests of one batch (and so the subrequests it fans out). */
export const MAX_BATCH_ITEMS = 32;

type BatchItem = { method: string; path: string; query: string; ts: string; nonce: string; sig: string; body: Uint8Array };

/**
 * parseBatch splits a batch body into its object requests: each is a JSON line
 * {method, path, query, ts, nonce, sig, len} followed by len bytes of body.
 */
function parseBatch(body: Uint8Array, cls: string): BatchItem[] {
  const items: BatchItem[] = [];
  const bad = (m: string) => new AuthError(400, "bad_batch", `malformed batch: ${m}`);
  let off = 0;
  while (off < body.length) {
    const nl = body.indexOf(10, off);
    if (nl < 0) throw bad("a request line has no newline");
    let h: any;
    try {
      h = JSON.parse(utf8.decode(body.subarray(off, nl)));
    } catch {
      throw bad("a request line is not JSON");
    }
    const len = h?.len;
    if (!Number.isInteger(len) || len < 0 || len > body.length - nl - 1) throw bad("bad len");
    if (!["GET", "POST"].includes(h.method)) throw bad("method must be GET or POST");
    for (const k of ["path", "query", "ts", "nonce", "sig"]) if (typeof h[k] !== "string") throw bad(`${k} must be a string`);
    const parts = h.path.startsWith(PREFIX) ? h.path.slice(PREFIX.length).split("/") : [];
    // Every request of a batch is for the batch's class: the batch is routed by it.
    if (parts.length !== 3 || parts[0] !== cls || parts[1] === BATCH) throw bad(`path ${JSON.stringify(h.path.slice(0, 120))} is not an object request of class ${cls}`);
    items.push({ method: h.method, path: h.path, query: h.query, ts: h.ts, nonce: h.nonce, sig: h.sig, body: body.subarray(nl + 1, nl + 1 + len) });
    off = nl + 1 + len;
    if (items.length > MAX_BATCH_ITEMS) throw new AuthError(413, "too_large", `a batch holds at most ${MAX_BATCH_ITEMS} requests`);
  }
  return items;
}

/**
 * routeBatch answers a batch: several object requests of one class in one HTTP request, sent to their
 * objects at once (at most MAX_BATCH_ITEMS). Each object request is signed on its own, exactly as if
 * it came alone, and the object checks its signature and replay as always: the batch only carries
 * them, so it adds no trust. The answer frames each object's answer, in request order, as a JSON line
 * {status, len} followed by len bytes of its body.
 */
async function routeBatch(req: Request, ns: Namespace, cls: string): Promise<Response> {
  if (req.method !== "POST") return json(405, { error: "bad_method", message: "a batch is a POST" });
  let items: BatchItem[];
  try {
    items = parseBatch(await readBody(req, MAX_IMPORT_BYTES), cls);
  } catch (e) {
    if (e instanceof AuthError) return json(e.status, { error: e.code, message: e.message });
    throw e;
  }
  const origin = new URL(req.url).origin;
  const answers = await Promise.all(
    items.map(async (it): Promise<[number, Uint8Array]> => {
      const stub = stubOf(ns, it.path.slice(PREFIX.length).split("/")[1]);
      let res: Response;
      try {
        const headers: Record<string, string> = { [HEADER_TIMESTAMP]: it.ts, [HEADER_NONCE]: it.nonce, [HEADER_SIGNATURE]: it.sig };
        if (it.method === "POST") headers["content-type"] = "application/x-ndjson";
        const url = origin + it.path + (it.query ? "?" + it.query : "");
        res = stub instanceof Response ? stub : await stub.fetch(new Request(url, { method: it.method, headers, body: it.method === "POST" ? (it.body as unknown as BodyInit) : undefined }));
      } catch (e) {
        res = json(500, { error: "internal", message: String((e as Error)?.message ?? e) });
      }
      return [res.status, new Uint8Array(await res.arrayBuffer())];
    }),
  );
  const enc = new TextEncoder();
  const out: Uint8Array[] = [];
  for (const [status, b] of answers) out.push(enc.encode(JSON.stringify({ status, len: b.byteLength }) + "\n"), b);
  return new Response(new Blob(out as BlobPart[]).stream(), { headers: { "content-type": "application/x-cfbackup-batch" } });
}
