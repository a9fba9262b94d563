// Shared parts of the runtime benchmarks in this directory: start the example app in workerd
// (test/harness.mjs's options), seed small objects, send batched export and import requests as
// cfbackup does (32 objects per batch, two batches at once), and read the runtime's CPU time.
import { Miniflare } from "miniflare";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";

export const SECRET = "bench-secret-0123456789abcdef0123456789";
const PREFIX = "/__cfbackup/v1/SessionStore/";

/** children are the processes this one started (workerd). */
function children() {
  return fs.readdirSync("/proc").filter((d) => /^[0-9]+$/.test(d) && Number(stat(d)[1]) === process.pid);
}
function stat(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return s.slice(s.lastIndexOf(")") + 2).split(" ");
  } catch {
    return [];
  }
}
/** cpuMs is user+system CPU of the given processes, milliseconds (USER_HZ 100). */
export function cpuMs(pids) {
  return pids.reduce((a, p) => {
    const f = stat(p);
    return a + (f.length > 12 ? (Number(f[11]) + Number(f[12])) * 10 : 0);
  }, 0);
}
/** hwmMiB is the largest peak resident set (VmHWM) of the given processes. */
export function hwmMiB(pids) {
  return Math.max(0, ...pids.map((p) => {
    try {
      return Number(/VmHWM:\s+(\d+)/.exec(fs.readFileSync(`/proc/${p}/status`, "utf8"))[1]) >> 10;
    } catch {
      return 0;
    }
  }));
}

/**
 * start runs the example app of the worker directory wdir (its dist/ built) with n seeded objects
 * (the objects of BenchmarkSmallObjects: KV values of mixed types, 3–6 rows, an alarm).
 */
export async function start(wdir, n, extra = {}) {
  const { options } = await import(pathToFileURL(path.resolve(wdir, "test/harness.mjs")).href);
  const { sign } = await import(pathToFileURL(path.resolve(wdir, "dist/src/auth.js")).href);
  const persist = fs.mkdtempSync(path.join(os.tmpdir(), "cfbackup-do-bench-"));
  const before = new Set(children());
  const mf = new Miniflare({ ...options({ persist, secret: SECRET }), ...extra });
  const url = (await mf.ready).toString().replace(/\/$/, "");
  const pids = children().filter((p) => !before.has(p));
  const ids = [];
  for (let i = 0; i < n; i += 8) {
    await Promise.all([...Array(Math.min(8, n - i)).keys()].map(async (k) => {
      const j = i + k;
      await (await fetch(`${url}/sessions/name:bench-${j}/__test/seed?i=${j}`)).text();
      ids[j] = (await (await fetch(`${url}/sessions/name:bench-${j}/__test/inspect`)).text()).slice(7, 71);
    }));
  }
  const stop = async () => {
    await mf.dispose();
    fs.rmSync(persist, { recursive: true, force: true });
  };
  return { url, pids, ids, sign, pages: [], stop };
}

/** batch sends one batch of object requests, each signed on its own, and splits the answer. */
async function batch(rt, items) {
  const parts = [];
  for (const it of items) {
    const h = await rt.sign(SECRET, it.method, new URL(rt.url + it.path + (it.query ? "?" + it.query : "")), it.body);
    const line = { method: it.method, path: it.path, query: it.query, ts: h["cfbackup-timestamp"], nonce: h["cfbackup-nonce"], sig: h["cfbackup-signature"], len: it.body.length };
    parts.push(Buffer.from(JSON.stringify(line) + "\n"), Buffer.from(it.body));
  }
  const r = await fetch(rt.url + PREFIX + "_batch", { method: "POST", body: Buffer.concat(parts) });
  const b = Buffer.from(await r.arrayBuffer());
  if (r.status !== 200) throw new Error(`batch: ${r.status} ${b}`);
  const out = [];
  for (let off = 0; off < b.length; ) {
    const nl = b.indexOf(10, off);
    const h = JSON.parse(b.subarray(off, nl).toString());
    if (h.status !== 200) throw new Error(`object answer ${h.status}: ${b.subarray(nl + 1, nl + 1 + h.len)}`);
    out.push(b.subarray(nl + 1, nl + 1 + h.len));
    off = nl + 1 + h.len;
  }
  return out;
}

/**
 * phase exports the first page (256 KiB at most, as cfbackup) of every object, or imports every
 * object's page back in one chunk (seq=0, final=1), and returns the runtime's CPU ms per object
 * and the objects per second.
 */
export async function phase(rt, what) {
  const groups = [];
  for (let i = 0; i < rt.ids.length; i += 32) groups.push(rt.ids.slice(i, i + 32).map((id, k) => [i + k, id]));
  let g = 0;
  const c0 = cpuMs(rt.pids);
  const t0 = Date.now();
  await Promise.all([0, 1].map(async () => {
    while (g < groups.length) {
      const grp = groups[g++];
      if (what === "export") {
        const pages = await batch(rt, grp.map(([, id]) => ({ method: "GET", path: PREFIX + id + "/export", query: "max_bytes=262144", body: new Uint8Array(0) })));
        pages.forEach((p, k) => (rt.pages[grp[k][0]] = p));
      } else {
        await batch(rt, grp.map(([j, id]) => ({ method: "POST", path: PREFIX + id + "/import", query: "final=1&seq=0", body: rt.pages[j] })));
      }
    }
  }));
  return { cpuMsPerObject: (cpuMs(rt.pids) - c0) / rt.ids.length, objectsPerSecond: rt.ids.length / ((Date.now() - t0) / 1000) };
}
