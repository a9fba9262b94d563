// Example app for cfbackup's Durable Object module: an OIDC session store.
//
// - SessionStore: a SQLite-backed class (new_sqlite_classes). One object per login session holds the
//   session record in KV storage (Dates, a Set of scopes, a Map of claims, binary nonces, a BigInt
//   counter…), an audit table in SQLite, and an alarm that expires the session.
// - RateLimiter: a legacy KV-backed class (new_classes) with a token bucket per client.
//
// Mounting cfbackup is the two marked lines. Test-only routes (seed, inspect, wipe) answer only when
// the ALLOW_TEST_ROUTES binding is "1" (the test harness sets it; a deployment never does).
import { DurableObject } from "cloudflare:workers";
import { withCfbackup, routeCfbackup, isCfbackupRequest, handleCfbackup, recordName } from "../src/index.js";
import { testRoute } from "./fuzz.js";

interface Env {
  SESSIONS: any;
  RATELIMIT: any;
  CFBACKUP_SECRET?: string;
  ALLOW_TEST_ROUTES?: string;
}

/** describe renders a value with its runtime types, independently of cfbackup's codec. */
function describe(v: unknown): unknown {
  const tag = Object.prototype.toString.call(v).slice(8, -1);
  if (typeof v === "number") return { number: Object.is(v, -0) ? "-0" : String(v) };
  if (typeof v === "bigint") return { bigint: v.toString() };
  if (v === undefined) return { undefined: true };
  if (v === null || typeof v === "string" || typeof v === "boolean") return v;
  if (v instanceof Date) return { Date: v.getTime() };
  if (v instanceof Map) return { Map: [...v].map(([k, x]) => [describe(k), describe(x)]) };
  if (v instanceof Set) return { Set: [...v].map(describe) };
  if (v instanceof ArrayBuffer) return { ArrayBuffer: [...new Uint8Array(v)] };
  if (ArrayBuffer.isView(v)) return { [tag]: [...new Uint8Array(v.buffer, v.byteOffset, v.byteLength)] };
  if (Array.isArray(v)) return { Array: v.map(describe) };
  return { [tag]: Object.fromEntries(Object.entries(v as object).map(([k, x]) => [k, describe(x)])) };
}

function seeded(n: number) {
  let x = n * 2654435761 + 1;
  return () => ((x = (x * 1103515245 + 12345) % 2147483648) / 2147483648);
}

export class SessionStore extends withCfbackup(DurableObject) {   // cfbackup, line 1 of 2
  constructor(ctx: any, env: Env) {
    super(ctx, env);
    ctx.storage.sql.exec(`CREATE TABLE IF NOT EXISTS events(
      id INTEGER PRIMARY KEY, at INTEGER NOT NULL, kind TEXT NOT NULL, ip TEXT, detail BLOB)`);
    ctx.storage.sql.exec("CREATE INDEX IF NOT EXISTS events_at ON events(at)");
  }

  async fetch(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const env = this.env as Env;
    if (url.pathname === "/session" && req.method === "PUT") {
      const b = (await req.json()) as { sub: string; ttl: number; scopes: string[] };
      const now = Date.now();
      await this.ctx.storage.put("session", { sub: b.sub, created: new Date(now), expires: new Date(now + b.ttl * 1000), scopes: new Set(b.scopes) });
      this.ctx.storage.sql.exec("INSERT INTO events(at, kind) VALUES (?, 'login')", now);
      await this.ctx.storage.setAlarm(now + b.ttl * 1000);
      return new Response("ok");
    }
    if (url.pathname === "/session" && req.method === "GET") {
      const s = await this.ctx.storage.get("session");
      return s ? Response.json(describe(s)) : new Response("no session", { status: 404 });
    }
    if (env.ALLOW_TEST_ROUTES === "1") {
      const r = await testRoute(this.ctx, "sqlite", url, req);
      if (r) return r;
    }
    if (env.ALLOW_TEST_ROUTES === "1" && url.pathname === "/__test/seed") {
      const i = Number(url.searchParams.get("i"));
      const rnd = seeded(i);
      const created = 1_700_000_000_000 + i * 1000;
      const st = this.ctx.storage;
      await st.put({
        session: {
          sub: `user-${i}`,
          created: new Date(created),
          expires: new Date(created + 86_400_000),
          scopes: new Set(["openid", "profile", i % 2 ? "email" : "offline_access"]),
          claims: new Map<unknown, unknown>([["amr", ["pwd", "mfa"]], [42, { acr: "urn:mace:incommon:iap:silver" }], ["auth_time", BigInt(created) * 1000n]]),
          nonce: new Uint8Array(Array.from({ length: 16 }, () => Math.floor(rnd() * 256))),
          refresh: i % 3 === 0 ? null : `rt-${i}`,
          idp: undefined,
          nested: [[1, [2, [3, { deep: new Date(0) }]]], "x"],
        },
        "counter": BigInt(i) ** 5n - 7n,
        "weird-numbers": [NaN, Infinity, -Infinity, -0, 0, 1.5e-300, Number.MAX_SAFE_INTEGER],
        "raw": new Uint8Array([i & 255, 0, 255]).buffer,
        "floats": new Float64Array([Math.PI, -1, i]),
        "i16": new Int16Array([-32768, 32767, i]),
        "big64": new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n]),
        "dv": new DataView(new Uint8Array([9, 8, 7]).buffer),
        "unicode key ✓ 🔑": "value ünïcødé",
        "empty": "",
      });
      for (let k = 0; k < 3 + (i % 4); k++) {
        st.sql.exec("INSERT INTO events(at, kind, ip, detail) VALUES (?, ?, ?, ?)", created + k, k ? "refresh" : "login", k % 2 ? null : `10.0.${i % 256}.${k}`, new Uint8Array([k, i & 255]));
      }
      if (i % 5 !== 0) await st.setAlarm(4_102_444_800_000 + i); // far future (2100), so it never fires in tests
      return new Response("ok");
    }
    if (env.ALLOW_TEST_ROUTES === "1" && url.pathname === "/__test/fill") {
      // Bulk data for benchmarks: mb rows of 1 MiB pseudo-random blobs (below the 2 MB row limit).
      const mb = Number(url.searchParams.get("mb"));
      const sql = this.ctx.storage.sql;
      sql.exec("CREATE TABLE IF NOT EXISTS blobs(id INTEGER PRIMARY KEY, data BLOB NOT NULL)");
      const rnd = seeded(mb);
      for (let k = 0; k < mb; k++) {
        const b = new Uint8Array(1 << 20);
        for (let j = 0; j < b.length; j += 4096) b[j] = Math.floor(rnd() * 256);
        sql.exec("INSERT INTO blobs(data) VALUES (?)", b);
      }
      return new Response(this.ctx.id.toString()); // its ID (inspect would ship every BLOB)
    }
    if (env.ALLOW_TEST_ROUTES === "1" && url.pathname === "/__test/digest") {
      // A digest of everything the object stores, for comparing large objects without shipping them.
      const st = this.ctx.storage;
      const enc = new TextEncoder();
      const parts: Uint8Array[] = [enc.encode(JSON.stringify([...(await st.list())].map(([k, v]) => [k, describe(v)])))];
      for (const t of st.sql.exec("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\' ORDER BY name").toArray()) {
        for (const r of st.sql.exec(`SELECT * FROM "${t.name}" ORDER BY rowid`).raw()) {
          for (const v of r) parts.push(v instanceof ArrayBuffer ? new Uint8Array(v) : enc.encode(JSON.stringify(describe(v))));
        }
      }
      let n = 0;
      for (const p of parts) n += p.length;
      const all = new Uint8Array(n);
      let o = 0;
      for (const p of parts) { all.set(p, o); o += p.length; }
      const d = await crypto.subtle.digest("SHA-256", all);
      return Response.json({ bytes: n, sha256: [...new Uint8Array(d)].map((x) => x.toString(16).padStart(2, "0")).join(""), alarm: await st.getAlarm() });
    }
    if (env.ALLOW_TEST_ROUTES === "1" && url.pathname === "/__test/inspect") return Response.json(await inspect(this.ctx));
    return new Response("not found", { status: 404 });
  }

  async alarm() {
    await this.ctx.storage.deleteAll(); // the session expired
  }
}

/** RateLimiter is a legacy KV-backed class written in the older style; it delegates to cfbackup in fetch. */
export class RateLimiter {
  constructor(private state: any, private env: Env) {}

  async fetch(req: Request): Promise<Response> {
    if (isCfbackupRequest(req)) return handleCfbackup(this.state, this.env, req);   // cfbackup (class-style mount)
    const res = await this.serve(req);
    await recordName(this.state); // keeps ctx.id.name in storage for restores into another account
    return res;
  }

  private async serve(req: Request): Promise<Response> {
    const url = new URL(req.url);
    if (this.env.ALLOW_TEST_ROUTES === "1") {
      const r = await testRoute(this.state, "kv", url, req);
      if (r) return r;
    }
    if (this.env.ALLOW_TEST_ROUTES === "1" && url.pathname === "/__test/seed") {
      const i = Number(url.searchParams.get("i"));
      const entries: Record<string, unknown> = {};
      for (let k = 0; k < 5; k++) entries[`bucket:10.1.${i}.${k}`] = { tokens: k * 1.25, updated: new Date(1_700_000_000_000 + k), history: new Set([k, k + 1]) };
      entries["config"] = new Map([["rate", 10], ["burst", 20]]);
      await this.state.storage.put(entries);
      if (i % 2) await this.state.storage.setAlarm(4_102_444_800_000 + i);
      return new Response("ok");
    }
    if (this.env.ALLOW_TEST_ROUTES === "1" && url.pathname === "/__test/inspect") return Response.json(await inspect(this.state));
    const ip = req.headers.get("cf-connecting-ip") ?? "unknown";
    const key = `bucket:${ip}`;
    const b = ((await this.state.storage.get(key)) as { tokens: number; updated: Date } | undefined) ?? { tokens: 20, updated: new Date() };
    const now = Date.now();
    b.tokens = Math.min(20, b.tokens + ((now - b.updated.getTime()) / 1000) * 10);
    b.updated = new Date(now);
    if (b.tokens < 1) return new Response("slow down", { status: 429 });
    b.tokens -= 1;
    await this.state.storage.put(key, b);
    return new Response("ok");
  }

  async alarm() {
    await this.state.storage.delete((await this.state.storage.list({ prefix: "bucket:" })).keys());
  }
}

async function inspect(ctx: any) {
  const kv = [...(await ctx.storage.list())].map(([k, v]) => [k, describe(v)]);
  let tables: unknown = null;
  try {
    const sql = ctx.storage.sql;
    tables = sql
      .exec("SELECT name, sql FROM sqlite_master WHERE name NOT LIKE '\\_cf\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name")
      .toArray()
      .map((t: any) => ({ ...t, rows: t.sql.startsWith("CREATE TABLE") ? sql.exec(`SELECT * FROM "${t.name}" ORDER BY rowid`).raw().toArray().map((r: unknown[]) => r.map(describe)) : null }));
  } catch {
    tables = "kv-backed";
  }
  return { id: ctx.id.toString(), kv, tables, alarm: await ctx.storage.getAlarm() };
}

export default {
  async fetch(req: Request, env: Env): Promise<Response> {
    const r = await routeCfbackup(req, { SessionStore: env.SESSIONS, RateLimiter: env.RATELIMIT });   // cfbackup, line 2 of 2
    if (r) return r;
    const url = new URL(req.url);
    const m = url.pathname.match(/^\/(sessions|ratelimit)\/([0-9a-f]{64}|name:[^/]+|unique)(\/.*)$/);
    if (!m) return new Response("not found", { status: 404 });
    const ns = m[1] === "sessions" ? env.SESSIONS : env.RATELIMIT;
    // Test route: an ID of this namespace, minted without creating the object (for ID-mapping files).
    if (env.ALLOW_TEST_ROUTES === "1" && m[2] === "unique" && m[3] === "/__test/mint") return new Response(ns.newUniqueId().toString());
    const id = m[2] === "unique" ? ns.newUniqueId() : m[2].startsWith("name:") ? ns.idFromName(decodeURIComponent(m[2].slice(5))) : ns.idFromString(m[2]);
    const inner = new URL(m[3] + url.search, url);
    const res = await ns.get(id).fetch(new Request(inner, req));
    if (m[2] !== "unique") return res;
    const out = new Response(res.body, res); // a new unnamed object: say which ID it got
    out.headers.set("x-object-id", id.toString());
    return out;
  },
};
