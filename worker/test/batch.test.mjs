// The batch endpoint (/__cfbackup/v1/<Class>/_batch) in the real Workers runtime: object requests
// carried together, each signed and checked by its object as if it came alone.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Miniflare } from "miniflare";
import { options } from "./harness.mjs";
import { sign } from "../dist/src/auth.js";

process.env.CLOUDFLARE_CF_FETCH_ENABLED = "false";
const SECRET = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t-0002";
const enc = new TextEncoder();
let mf, base;

before(async () => {
  mf = new Miniflare(options({ secret: SECRET }));
  base = (await mf.ready).toString().replace(/\/$/, "");
});
after(() => mf?.dispose());

async function idOf(name, i = 7) {
  assert.equal((await fetch(`${base}/sessions/name:${name}/__test/seed?i=${i}`)).status, 200);
  return (await (await fetch(`${base}/sessions/name:${name}/__test/inspect`)).json()).id;
}

/** item signs one object request as the Go client does and frames it for a batch. */
async function item(method, pathAndQuery, body = new Uint8Array(), secret = SECRET) {
  const url = new URL(base + pathAndQuery);
  const h = await sign(secret, method, url, body);
  const line = JSON.stringify({ method, path: url.pathname, query: url.search.slice(1), ts: h["cfbackup-timestamp"], nonce: h["cfbackup-nonce"], sig: h["cfbackup-signature"], len: body.byteLength }) + "\n";
  return [enc.encode(line), body];
}

async function batch(parts, cls = "SessionStore") {
  const r = await fetch(`${base}/__cfbackup/v1/${cls}/_batch`, { method: "POST", body: new Blob(parts.flat()) });
  if (r.status !== 200) return { status: r.status, body: await r.json() };
  const b = new Uint8Array(await r.arrayBuffer());
  const out = [];
  for (let off = 0; off < b.length; ) {
    const nl = b.indexOf(10, off);
    const h = JSON.parse(new TextDecoder().decode(b.subarray(off, nl)));
    out.push({ status: h.status, text: new TextDecoder().decode(b.subarray(nl + 1, nl + 1 + h.len)) });
    off = nl + 1 + h.len;
  }
  return { status: 200, answers: out };
}

test("a batch exports several objects, each answer as its single request would be", async () => {
  const a = await idOf("batch-a", 1);
  const b = await idOf("batch-b", 2);
  const res = await batch([await item("GET", `/__cfbackup/v1/SessionStore/${a}/export`), await item("GET", `/__cfbackup/v1/SessionStore/${b}/export?limit=5`), await item("GET", `/__cfbackup/v1/SessionStore/${"0".repeat(64)}/export`)]);
  assert.equal(res.status, 200);
  assert.deepEqual(res.answers.map((x) => x.status), [200, 200, 400]);
  const single = await fetch(base + `/__cfbackup/v1/SessionStore/${a}/export`, { headers: await sign(SECRET, "GET", new URL(base + `/__cfbackup/v1/SessionStore/${a}/export`), new Uint8Array()) });
  const strip = (t) => t.split("\n").filter((l) => l && JSON.parse(l).t !== "header").join("\n");
  assert.equal(strip(res.answers[0].text), strip(await single.text()));
  assert.equal(JSON.parse(res.answers[0].text.split("\n")[0]).id, a);
  assert.equal(JSON.parse(res.answers[1].text.trimEnd().split("\n").pop()).t, "next"); // limit=5 pages
  assert.match(res.answers[2].text, /bad_id/);
});

test("a batch imports into several objects; a replayed or altered request is refused by its object", async () => {
  const a = await idOf("batch-imp-a", 3);
  const b = await idOf("batch-imp-b", 4);
  const body = enc.encode(['{"t":"header","format":"cfbackup-do/2"}', '{"t":"kv","k":"only","v":"x"}', '{"t":"end","kv":1,"tables":0,"rows":0,"schema":0}', ""].join("\n"));
  const ia = await item("POST", `/__cfbackup/v1/SessionStore/${a}/import?final=1&seq=0`, body);
  const ib = await item("POST", `/__cfbackup/v1/SessionStore/${b}/import?final=1&seq=0`, body);
  ib[1] = enc.encode(new TextDecoder().decode(body).replace('"x"', '"y"')); // altered after signing
  ib[0] = enc.encode(new TextDecoder().decode(ib[0]).replace(/"len":\d+/, `"len":${ib[1].byteLength}`));
  const res = await batch([ia, ib]);
  assert.deepEqual(res.answers.map((x) => x.status), [200, 403]);
  assert.equal(JSON.parse(res.answers[0].text).kv, 1);
  assert.match(res.answers[1].text, /bad_signature/);
  const ins = async (n) => (await (await fetch(`${base}/sessions/name:${n}/__test/inspect`)).json()).kv.map(([k]) => k);
  assert.deepEqual(await ins("batch-imp-a"), ["only"]);
  assert.ok((await ins("batch-imp-b")).includes("session"), "the altered import changed nothing");
  const again = await batch([ia]);
  assert.equal(again.answers[0].status, 403);
  assert.match(again.answers[0].text, /replayed/);
});

test("malformed, oversized, foreign-class and unsigned batches are refused", async () => {
  const a = await idOf("batch-bad", 5);
  assert.equal((await batch([[enc.encode("not json\n")]])).body.error, "bad_batch");
  assert.equal((await batch([[enc.encode('{"method":"GET","path":"/x","query":"","ts":"1","nonce":"a","sig":"b","len":99}\n')]])).body.error, "bad_batch");
  const other = await item("GET", `/__cfbackup/v1/RateLimiter/${a}/info`);
  assert.equal((await batch([other])).body.error, "bad_batch");
  const many = [];
  for (let i = 0; i < 33; i++) many.push(await item("GET", `/__cfbackup/v1/SessionStore/${a}/info`));
  assert.equal((await batch(many)).status, 413);
  assert.equal((await fetch(`${base}/__cfbackup/v1/SessionStore/_batch`)).status, 405);
  assert.equal((await batch([await item("GET", `/__cfbackup/v1/SessionStore/${a}/info`, new Uint8Array(), SECRET + "x")])).answers[0].status, 403);
  assert.equal((await batch([], "NoSuchClass")).status, 404);
});
