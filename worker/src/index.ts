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

import { encode, decode, approxSize } from "./codec.js";
import { verify, AuthError, ReplayGuard } from "./auth.js";

export { encode, decode } from "./codec.js";
export { sign, verify, ReplayGuard, AuthError } from "./auth.js";

/** FORMAT names the NDJSON export format written in each header line. */
export const FORMAT = "cfbackup-do/1";
/** PREFIX is the URL path prefix of every cfbackup request. */
export const PREFIX = "/__cfbackup/v1/";

/** Platform limits (developers.cloudflare.com/durable-objects/platform/limits); miniflare enforces none. */
export const LIMITS = {
  kvKeyBytes: 2048, // KV-backed: key
  kvValueBytes: 131072, // KV-backed: value
  sqliteKeyValueBytes: 2 * 1024 * 1024, // SQLite-backed: key + value
  kvBatch: 128, // keys per get/put/delete
};

const DEFAULT_LIMIT = 1000;
const MAX_LIMIT = 10000;
const DEFAULT_MAX_BYTES = 4 << 20;
const MAX_MAX_BYTES = 32 << 20;
const MAX_IMPORT_BYTES = 64 << 20;

type SqlCursor = { toArray(): any[]; raw(): { toArray(): any[][] } & Iterable<any[]>; columnNames: string[] };
interface Storage {
  sql?: { exec(q: string, ...b: unknown[]): SqlCursor };
  kv?: { get(k: string): unknown; put(k: string, v: unknown): void; delete(k: string): boolean; list(o?: object): Iterable<[string, unknown]> };
  list(o?: object): Promise<Map<string, unknown>>;
  put(entries: Record<string, unknown>): Promise<void>;
  deleteAll(): Promise<void>;
  getAlarm(): Promise<number | null>;
  setAlarm(t: number | Date): Promise<void>;
  deleteAlarm(): Promise<void>;
  transactionSync?<T>(fn: () => T): T;
}
/** State is the part of DurableObjectState the module uses. */
export interface State {
  id: { toString(): string };
  storage: Storage;
}
/** Env must carry CFBACKUP_SECRET (wrangler secret put CFBACKUP_SECRET). */
export interface Env {
  CFBACKUP_SECRET?: string;
}

const guards = new WeakMap<object, ReplayGuard>();

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}

/** isCfbackupRequest tells whether a request is for cfbackup (so a DO's fetch can delegate it). */
export function isCfbackupRequest(req: Request): boolean {
  return new URL(req.url).pathname.startsWith(PREFIX);
}

function sqlOf(st: Storage): Storage["sql"] | undefined {
  try {
    const s = st.sql;
    s?.exec("SELECT 1");
    return s;
  } catch {
    return undefined; // KV-backed class: "SQL is not enabled for this Durable Object class"
  }
}

/** internal names: the platform's (_cf_*, __cf_*), SQLite's and miniflare's own tables are never exported. */
function isInternal(name: string): boolean {
  return /^(_cf_|__cf_|sqlite_|__miniflare)/i.test(name);
}

const q = (name: string) => '"' + name.replace(/"/g, '""') + '"';

type Cursor = { ph: "kv" | "sql" | "schema" | "done"; k?: string; tb?: string; started?: boolean; r?: number; off?: number; n: { kv: number; tables: number; rows: number; schema: number } };

function encCursor(c: Cursor): string {
  return btoa(JSON.stringify(c)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
function decCursor(s: string): Cursor {
  try {
    return JSON.parse(atob(s.replace(/-/g, "+").replace(/_/g, "/")));
  } catch {
    throw new AuthError(400, "bad_cursor", "malformed cursor");
  }
}

/**
 * handleCfbackup answers one cfbackup request for the object whose state is given: info, export (one
 * page) or import (one chunk). It checks the signature first; nothing is read or changed otherwise.
 */
export async function handleCfbackup(state: State, env: Env, req: Request): Promise<Response> {
  const url = new URL(req.url);
  const parts = url.pathname.slice(PREFIX.length).split("/");
  if (parts.length !== 3) return json(404, { error: "not_found", message: `use ${PREFIX}<Class>/<object id>/{info,export,import}` });
  const [, id, op] = parts;
  const body = new Uint8Array(req.method === "POST" ? await req.arrayBuffer() : new ArrayBuffer(0));
  let guard = guards.get(state);
  if (!guard) guards.set(state, (guard = new ReplayGuard()));
  try {
    await verify(env.CFBACKUP_SECRET, req, body, guard);
    if (id !== state.id.toString()) {
      return json(400, { error: "wrong_object", message: `request for object ${id} reached object ${state.id}: check the Worker's cfbackup route` });
    }
    if (op === "info" && req.method === "GET") return json(200, await info(state));
    if (op === "export" && req.method === "GET") return await exportPage(state, url);
    if (op === "import" && req.method === "POST") return json(200, await importChunk(state, url, body));
    return json(405, { error: "bad_method", message: `${req.method} ${op} is not supported` });
  } catch (e) {
    if (e instanceof AuthError) return json(e.status, { error: e.code, message: e.message });
    if (e instanceof ImportError) return json(422, { error: "import_refused", message: e.message });
    return json(500, { error: "internal", message: String((e as Error)?.message ?? e) });
  }
}

async function info(state: State) {
  const st = state.storage;
  const sql = sqlOf(st);
  const keys = await st.list({ limit: 1 });
  let tables = 0;
  if (sql) {
    tables = sql.exec("SELECT name FROM sqlite_master WHERE type='table'").toArray().filter((r) => !isInternal(r.name)).length;
  }
  const alarm = await st.getAlarm();
  return { id: state.id.toString(), format: FORMAT, backend: sql ? "sqlite" : "kv", has_data: keys.size > 0 || tables > 0 || alarm !== null, tables, alarm };
}

function userTables(sql: NonNullable<Storage["sql"]>): { name: string; sql: string }[] {
  return sql
    .exec("SELECT name, sql FROM sqlite_master WHERE type='table' ORDER BY name")
    .toArray()
    .filter((r) => !isInternal(r.name) && r.sql);
}

async function exportPage(state: State, url: URL): Promise<Response> {
  const st = state.storage;
  const sql = sqlOf(st);
  const limit = Math.min(Math.max(Number(url.searchParams.get("limit") ?? DEFAULT_LIMIT) || DEFAULT_LIMIT, 1), MAX_LIMIT);
  const maxBytes = Math.min(Math.max(Number(url.searchParams.get("max_bytes") ?? DEFAULT_MAX_BYTES) || DEFAULT_MAX_BYTES, 1024), MAX_MAX_BYTES);
  const cs = url.searchParams.get("cursor");
  const c: Cursor = cs ? decCursor(cs) : { ph: "kv", n: { kv: 0, tables: 0, rows: 0, schema: 0 } };
  const out: string[] = [];
  let bytes = 0;
  const emit = (o: unknown) => {
    const line = JSON.stringify(o) + "\n";
    out.push(line);
    bytes += line.length;
  };
  const full = () => out.length >= limit || bytes >= maxBytes;
  if (!cs) {
    emit({ t: "header", format: FORMAT, id: state.id.toString(), backend: sql ? "sqlite" : "kv", alarm: await st.getAlarm(), time: Date.now() });
  }
  while (!full() && c.ph !== "done") {
    if (c.ph === "kv") {
      const want = Math.max(1, Math.min(limit - out.length, LIMITS.kvBatch));
      const opts: Record<string, unknown> = { limit: want };
      if (c.k !== undefined) opts.startAfter = c.k;
      const page = await st.list(opts);
      let done = 0;
      for (const [k, v] of page) {
        emit({ t: "kv", k, v: encode(v) });
        c.k = k;
        c.n.kv++;
        done++;
        if (full()) break;
      }
      if (done === page.size && page.size < want) {
        c.ph = sql ? "sql" : "done";
        delete c.k;
      }
      continue;
    }
    if (c.ph === "sql" && sql) {
      const tables = userTables(sql);
      let t = c.tb === undefined ? tables[0] : tables.find((x) => x.name === c.tb);
      if (!t && c.tb !== undefined) t = tables.find((x) => x.name > c.tb!); // the table was dropped meanwhile
      if (!t) {
        c.ph = "schema";
        delete c.tb;
        continue;
      }
      if (c.tb !== t.name) {
        c.tb = t.name;
        c.started = false;
        delete c.r;
        delete c.off;
      }
      const cols = tableCols(sql, t.name);
      if (!c.started) {
        emit({ t: "table", name: t.name, sql: t.sql, cols });
        c.started = true;
        c.n.tables++;
        continue;
      }
      const withoutRowid = /\bWITHOUT\s+ROWID\b/i.test(t.sql);
      const want = Math.max(1, Math.min(limit - out.length, 500));
      const list = cols.map(q).join(",");
      const rows = withoutRowid
        ? sql.exec(`SELECT ${list} FROM ${q(t.name)} LIMIT ? OFFSET ?`, want, c.off ?? 0).raw().toArray()
        : sql.exec(`SELECT _rowid_, ${list} FROM ${q(t.name)} WHERE _rowid_ > ? ORDER BY _rowid_ LIMIT ?`, c.r ?? -Number.MAX_SAFE_INTEGER, want).raw().toArray();
      let done = 0;
      for (const r of rows) {
        emit({ t: "row", table: t.name, v: (withoutRowid ? r : r.slice(1)).map((x) => encode(x)) });
        c.n.rows++;
        done++;
        if (withoutRowid) c.off = (c.off ?? 0) + 1;
        else c.r = r[0];
        if (full()) break;
      }
      if (done === rows.length && rows.length < want) {
        const next = tables.find((x) => x.name > t!.name);
        delete c.r;
        delete c.off;
        c.started = false;
        if (next) c.tb = next.name;
        else {
          c.ph = "schema";
          delete c.tb;
        }
      }
      continue;
    }
    if (sql) {
      for (const r of sql.exec("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE type IN ('index','trigger','view') AND sql IS NOT NULL ORDER BY rowid").toArray()) {
        if (isInternal(r.name) || isInternal(r.tbl_name)) continue;
        emit({ t: "schema", type: r.type, name: r.name, sql: r.sql });
        c.n.schema++;
      }
    }
    c.ph = "done";
  }
  if (c.ph === "done") emit({ t: "end", kv: c.n.kv, tables: c.n.tables, rows: c.n.rows, schema: c.n.schema });
  else emit({ t: "next", cursor: encCursor(c) });
  return new Response(out.join(""), { headers: { "content-type": "application/x-ndjson" } });
}

class ImportError extends Error {}

/**
 * importChunk applies one chunk of an export. seq=0 starts the import by deleting everything the
 * object stores; final=1 sets the alarm (alarm=<ms>) last. A single chunk (seq=0, final=1) on a
 * SQLite-backed object runs in one transaction: it applies completely or not at all.
 */
async function importChunk(state: State, url: URL, body: Uint8Array) {
  if (body.byteLength > MAX_IMPORT_BYTES) throw new ImportError(`chunk of ${body.byteLength} bytes exceeds ${MAX_IMPORT_BYTES}: send smaller chunks`);
  const seq = Number(url.searchParams.get("seq") ?? "-1");
  const final = url.searchParams.get("final") === "1";
  const alarmParam = url.searchParams.get("alarm");
  if (!Number.isInteger(seq) || seq < 0) throw new ImportError("seq must be a non-negative integer");
  const st = state.storage;
  const sql = sqlOf(st);
  const backend = sql ? "sqlite" : "kv";
  // Parse and check the whole chunk before changing anything.
  const text = new TextDecoder().decode(body);
  const kv: [string, unknown][] = [];
  const stmts: { sql: string; args: unknown[] }[] = [];
  const n = { kv: 0, tables: 0, rows: 0, schema: 0 };
  const colsOf = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    if (!line) continue;
    let o: any;
    try {
      o = JSON.parse(line);
    } catch {
      throw new ImportError(`line is not JSON: ${line.slice(0, 80)}`);
    }
    switch (o.t) {
      case "header":
        if (o.format !== FORMAT) throw new ImportError(`export format ${o.format} is not ${FORMAT}: use a matching cfbackup-worker version`);
        break;
      case "kv": {
        const v = decode(o.v);
        const kb = new TextEncoder().encode(o.k).length;
        const vb = approxSize(v);
        if (backend === "kv" && (kb > LIMITS.kvKeyBytes || vb > LIMITS.kvValueBytes)) {
          throw new ImportError(`key ${JSON.stringify(String(o.k).slice(0, 40))}: ${kb} B key / ~${vb} B value exceed the KV-backed limits (${LIMITS.kvKeyBytes} B / ${LIMITS.kvValueBytes} B)`);
        }
        if (kb + vb > LIMITS.sqliteKeyValueBytes) throw new ImportError(`key ${JSON.stringify(String(o.k).slice(0, 40))}: ~${kb + vb} B exceeds the 2 MB key+value limit`);
        kv.push([o.k, v]);
        n.kv++;
        break;
      }
      case "table":
        if (!sql) throw new ImportError(`the export has SQL table ${o.name}, but this object's class is KV-backed: restore into a SQLite-backed class (new_sqlite_classes)`);
        stmts.push({ sql: o.sql, args: [] });
        colsOf.set(o.name, o.cols);
        n.tables++;
        break;
      case "row": {
        if (!sql) throw new ImportError("the export has SQL rows, but this object's class is KV-backed");
        const cols = colsOf.get(o.table) ?? (await tableCols(sql, o.table));
        colsOf.set(o.table, cols);
        const args = (o.v as unknown[]).map(decode);
        stmts.push({ sql: `INSERT INTO ${q(o.table)} (${cols.map(q).join(",")}) VALUES (${args.map(() => "?").join(",")})`, args });
        n.rows++;
        break;
      }
      case "schema":
        if (!sql) throw new ImportError("the export has SQL schema, but this object's class is KV-backed");
        stmts.push({ sql: o.sql, args: [] });
        n.schema++;
        break;
      case "next":
      case "end":
        break;
      default:
        throw new ImportError(`unknown line type ${JSON.stringify(o.t)}`);
    }
  }
  let alarm: number | null = null;
  if (final && alarmParam) {
    alarm = Number(alarmParam);
    if (!Number.isFinite(alarm)) throw new ImportError("alarm must be epoch milliseconds");
  }
  const apply = () => {
    for (const s of stmts) sql!.exec(s.sql, ...s.args);
  };
  let atomic = false;
  if (seq === 0 && final && sql && st.kv && st.transactionSync) {
    // Whole object in one chunk: wipe and write inside one SQLite transaction.
    st.transactionSync(() => {
      wipeSync(st, sql);
      for (const [k, v] of kv) st.kv!.put(k, v);
      apply();
    });
    atomic = true;
  } else {
    if (seq === 0) {
      await st.deleteAll();
      await st.deleteAlarm();
    }
    for (let i = 0; i < kv.length; i += LIMITS.kvBatch) {
      await st.put(Object.fromEntries(kv.slice(i, i + LIMITS.kvBatch)));
    }
    if (sql) {
      if (st.transactionSync) st.transactionSync(apply);
      else apply();
    }
  }
  if (final) {
    if (alarm !== null) await st.setAlarm(alarm);
    else await st.deleteAlarm();
  }
  return { seq, final, atomic, backend, ...n, alarm };
}

function tableCols(sql: NonNullable<Storage["sql"]>, table: string): string[] {
  return sql.exec(`PRAGMA table_info(${q(table)})`).toArray().map((r) => r.name as string);
}

/** wipeSync removes every user table, index, view and trigger and every KV key, synchronously. */
function wipeSync(st: Storage, sql: NonNullable<Storage["sql"]>) {
  for (const r of sql.exec("SELECT type, name FROM sqlite_master WHERE type IN ('view','trigger','table') ORDER BY type='table'").toArray()) {
    if (isInternal(r.name)) continue;
    sql.exec(`DROP ${r.type.toUpperCase()} IF EXISTS ${q(r.name)}`);
  }
  const keys = [...st.kv!.list()].map(([k]) => k);
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
      (this as any).fetch = (req: Request): Promise<Response> => {
        if (isCfbackupRequest(req)) return handleCfbackup(state, env, req);
        if (!own) return Promise.resolve(new Response("not found", { status: 404 }));
        return own.call(this, req);
      };
    }
  };
}

interface Namespace {
  idFromString(id: string): unknown;
  get(id: unknown): { fetch(req: Request): Promise<Response> };
}

/**
 * routeCfbackup forwards /__cfbackup/v1/<Class>/<id>/... to that object of the namespace bound for
 * Class, or returns null for other paths. IDs are bound to their namespace: an ID from another
 * namespace or account is refused.
 */
export async function routeCfbackup(req: Request, namespaces: Record<string, Namespace | undefined>): Promise<Response | null> {
  if (!isCfbackupRequest(req)) return null;
  const [cls, id] = new URL(req.url).pathname.slice(PREFIX.length).split("/");
  const ns = namespaces[cls];
  if (!ns) return json(404, { error: "unknown_class", message: `no Durable Object class ${cls} is routed for cfbackup here (known: ${Object.keys(namespaces).join(", ")})` });
  let oid: unknown;
  try {
    oid = ns.idFromString(id);
  } catch (e) {
    return json(400, { error: "bad_id", message: `${(e as Error).message} (object IDs are bound to their namespace; restoring into another namespace or account needs the original names)` });
  }
  return ns.get(oid).fetch(req);
}
