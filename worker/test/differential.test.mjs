// Differential test in the real runtime (workerd through miniflare): random storage state generated
// inside an object from a seed (example/fuzz.ts) → cfbackup export → import into a fresh object →
// compare everything value by value, with SQLite storage classes (typeof) and JavaScript runtime
// type names. Then the same import again over the now-live object (the wipe path).
//
// A fixed seed set runs in `npm test`; DO_FUZZ_SEEDS=N (and DO_FUZZ_START) runs more:
//   DO_FUZZ_SEEDS=500 node --test test/differential.test.mjs
// Every case is reproducible from its seed. Figures are printed at the end.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Miniflare } from "miniflare";
import { options } from "./harness.mjs";
import { sign } from "../dist/src/auth.js";

process.env.CLOUDFLARE_CF_FETCH_ENABLED = "false";
const SECRET = "differential-secret-0123456789abcdef0123";
const START = Number(process.env.DO_FUZZ_START ?? 1);
const SEEDS = Number(process.env.DO_FUZZ_SEEDS ?? 40);
let mf, base;

before(async () => {
  mf = new Miniflare(options({ secret: SECRET }));
  base = (await mf.ready).toString().replace(/\/$/, "");
});
after(() => mf?.dispose());

const routes = { sqlite: ["sessions", "SessionStore"], kv: ["ratelimit", "RateLimiter"] };

async function call(method, path, body = new Uint8Array()) {
  const url = new URL(base + path);
  return fetch(url, { method, headers: await sign(SECRET, method, url, body), body: method === "POST" ? body : undefined });
}

async function get(path, init) {
  const r = await fetch(base + path, init);
  const t = await r.text();
  if (r.status !== 200) throw new Error(`${path}: ${r.status} ${t}`);
  return JSON.parse(t);
}

async function exportAll(cls, id, limit) {
  let cursor = "", lines = [];
  for (;;) {
    const r = await call("GET", `/__cfbackup/v1/${cls}/${id}/export?limit=${limit}${cursor ? "&cursor=" + cursor : ""}`);
    const t = await r.text();
    if (r.status !== 200) throw new Error(`export: ${r.status} ${t}`);
    const ls = t.trimEnd().split("\n");
    const last = JSON.parse(ls.pop());
    lines.push(...ls);
    if (last.t === "end") return { lines: [...lines, JSON.stringify(last)], end: last };
    cursor = last.cursor;
  }
}

async function importAll(cls, id, lines, perChunk) {
  const alarm = JSON.parse(lines[0]).alarm;
  for (let i = 0, seq = 0; i < lines.length; i += perChunk, seq++) {
    const final = i + perChunk >= lines.length;
    const r = await call("POST", `/__cfbackup/v1/${cls}/${id}/import?seq=${seq}&final=${final ? 1 : 0}${final && alarm != null ? "&alarm=" + alarm : ""}`, new TextEncoder().encode(lines.slice(i, i + perChunk).join("\n") + "\n"));
    const t = await r.text();
    if (r.status !== 200) throw new Error(`import chunk ${seq}: ${r.status} ${t}`);
  }
}

/** diff lists where two snapshots differ, as "class: where". */
function diff(a, b, path = "", out = []) {
  if (out.length > 20) return out;
  if (JSON.stringify(a) === JSON.stringify(b)) return out;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null || Array.isArray(a) !== Array.isArray(b)) {
    out.push(`${path}: ${JSON.stringify(a)?.slice(0, 120)} ≠ ${JSON.stringify(b)?.slice(0, 120)}`);
    return out;
  }
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const k of keys) diff(a[k], b[k], `${path}/${k}`, out);
  return out;
}

function classOf(d) {
  const [p] = d.split(":");
  if (p.startsWith("/kv")) return "kv value";
  if (p.startsWith("/sql/tables")) return "sql value or storage class";
  if (p.startsWith("/sql/seq")) return "sqlite_sequence";
  if (p.startsWith("/sql/schema")) return "schema";
  if (p.startsWith("/alarm")) return "alarm";
  return "other";
}

const figures = { cases: 0, objects: 0, kv: 0, rows: 0, tables: 0, schema: 0, sequences: 0, multiChunk: 0, overLive: 0, failures: 0, classes: {} };

test(`differential: ${SEEDS} seeded random objects (seeds ${START}..${START + SEEDS - 1}) export → import → identical`, async () => {
  const failures = [];
  for (let seed = START; seed < START + SEEDS; seed++) {
    const backend = seed % 4 === 0 ? "kv" : "sqlite";
    const [route, cls] = routes[backend];
    const src = `fz-src-${seed}`, dst = `fz-dst-${seed}`;
    figures.cases++;
    try {
      const info = await get(`/${route}/name:${src}/__test/random?seed=${seed}`);
      const want = await get(`/${route}/name:${src}/__test/snapshot`);
      const srcId = (await get(`/${route}/name:${src}/__test/inspect`)).id;
      await get(`/${route}/name:${dst}/__test/snapshot`); // the object exists (its constructor ran)
      const dstId = (await get(`/${route}/name:${dst}/__test/inspect`)).id;
      const { lines, end } = await exportAll(cls, srcId, seed % 3 === 0 ? 7 : 1000);
      figures.objects++;
      figures.kv += end.kv;
      figures.rows += end.rows;
      figures.tables += end.tables;
      figures.schema += end.schema;
      figures.sequences += end.sequences ?? 0;
      assert.equal(end.unrestorable, undefined, `seed ${seed}: the generator stays within the limits, yet the export names ${JSON.stringify(end.warnings)}`);
      // One chunk (atomic), or several when the object has no foreign-key cycle (docs: a multi-chunk
      // import checks foreign keys per chunk).
      const multi = backend === "kv" || (!info.cyclic && seed % 2 === 0);
      if (multi) figures.multiChunk++;
      await importAll(cls, dstId, lines, multi ? 5 : lines.length);
      let got = await get(`/${route}/name:${dst}/__test/snapshot`);
      let d = diff(want, got);
      if (d.length === 0) {
        // Again, over the live object: the wipe must cope with foreign keys.
        figures.overLive++;
        await importAll(cls, dstId, lines, lines.length);
        got = await get(`/${route}/name:${dst}/__test/snapshot`);
        d = diff(want, got).map((x) => "over live: " + x);
      }
      if (d.length) {
        failures.push({ seed, backend, d });
        for (const x of d) figures.classes[classOf(x.replace("over live: ", ""))] = (figures.classes[classOf(x.replace("over live: ", ""))] ?? 0) + 1;
      }
    } catch (e) {
      failures.push({ seed, backend, d: [String(e.message ?? e).slice(0, 400)] });
      figures.classes["error"] = (figures.classes["error"] ?? 0) + 1;
    }
  }
  figures.failures = failures.length;
  console.log("differential figures: " + JSON.stringify(figures));
  for (const f of failures.slice(0, 10)) console.log(`seed ${f.seed} (${f.backend}):\n  ${f.d.join("\n  ")}`);
  assert.equal(failures.length, 0, `${failures.length} of ${figures.cases} seeds differ (first: seed ${failures[0]?.seed})`);
});
