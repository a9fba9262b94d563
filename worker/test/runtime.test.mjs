// Tests against the real Workers runtime (workerd through miniflare): signatures, replay, missing
// secret, export paging and import, on the example app.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Miniflare } from "miniflare";
import { options } from "./harness.mjs";
import { sign } from "../dist/src/auth.js";

process.env.CLOUDFLARE_CF_FETCH_ENABLED = "false";
const SECRET = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t-0001";
let mf, base;

before(async () => {
  mf = new Miniflare(options({ secret: SECRET }));
  base = (await mf.ready).toString().replace(/\/$/, "");
});
after(() => mf?.dispose());

async function idOf(kind, name) {
  const r = await fetch(`${base}/${kind}/name:${name}/__test/seed?i=7`);
  assert.equal(r.status, 200, await r.text());
  const ins = await (await fetch(`${base}/${kind}/name:${name}/__test/inspect`)).json();
  return ins.id;
}

async function call(method, path, { body = new Uint8Array(), secret = SECRET, headers, now } = {}) {
  const url = new URL(base + path);
  const h = headers ?? (await sign(secret, method, url, body, now));
  return fetch(url, { method, headers: h, body: method === "POST" ? body : undefined });
}

async function exportAll(cls, id, limit = 1000) {
  let cursor = "", text = "", pages = 0;
  for (;;) {
    const r = await call("GET", `/__cfbackup/v1/${cls}/${id}/export?limit=${limit}${cursor ? "&cursor=" + cursor : ""}`);
    assert.equal(r.status, 200);
    const lines = (await r.text()).trimEnd().split("\n").map((l) => JSON.parse(l));
    pages++;
    const last = lines.pop();
    text += lines.map((l) => JSON.stringify(l) + "\n").join("");
    if (last.t === "end") return { text: text + JSON.stringify(last) + "\n", end: last, pages };
    cursor = last.cursor;
  }
}

test("unsigned, wrongly signed, stale and replayed requests are refused and change nothing", async () => {
  const id = await idOf("sessions", "auth");
  const p = `/__cfbackup/v1/SessionStore/${id}/info`;
  assert.equal((await fetch(base + p)).status, 401);
  assert.equal((await call("GET", p, { secret: SECRET + "x" })).status, 403);
  assert.equal((await call("GET", p, { now: Date.now() - 10 * 60 * 1000 })).status, 403);
  const url = new URL(base + p);
  const h = await sign(SECRET, "GET", url, new Uint8Array());
  assert.equal((await fetch(url, { headers: h })).status, 200);
  const again = await fetch(url, { headers: h });
  assert.equal(again.status, 403);
  assert.match((await again.json()).error, /replayed/);
  // A signature for one object does not open another, and a tampered query is refused.
  const other = await idOf("sessions", "auth2");
  assert.equal((await fetch(new URL(base + `/__cfbackup/v1/SessionStore/${other}/info`), { headers: await sign(SECRET, "GET", url, new Uint8Array()) })).status, 403);
  const imp = new URL(base + `/__cfbackup/v1/SessionStore/${id}/import?seq=0&final=1`);
  const body = new TextEncoder().encode("");
  const hh = await sign(SECRET, "POST", imp, body);
  const tampered = new URL(base + `/__cfbackup/v1/SessionStore/${id}/import?seq=0&final=1&alarm=1`);
  assert.equal((await fetch(tampered, { method: "POST", headers: hh, body })).status, 403);
  // a changed body is refused too
  assert.equal((await fetch(imp, { method: "POST", headers: hh, body: new TextEncoder().encode("{}\n") })).status, 403);
  const ins = await (await fetch(`${base}/sessions/${id}/__test/inspect`)).json();
  assert.ok(ins.kv.length > 0, "the object still holds its data");
});

test("a Worker without CFBACKUP_SECRET refuses everything with a clear error", async () => {
  const mf2 = new Miniflare(options({}));
  try {
    const b2 = (await mf2.ready).toString().replace(/\/$/, "");
    await fetch(`${b2}/sessions/name:x/__test/seed?i=1`);
    const id = (await (await fetch(`${b2}/sessions/name:x/__test/inspect`)).json()).id;
    const url = new URL(`${b2}/__cfbackup/v1/SessionStore/${id}/export`);
    const r = await fetch(url, { headers: await sign(SECRET, "GET", url, new Uint8Array()) });
    assert.equal(r.status, 503);
    assert.match((await r.json()).message, /wrangler secret put CFBACKUP_SECRET/);
  } finally {
    await mf2.dispose();
  }
});

test("export pages with a cursor; import restores types, tables and alarm", async () => {
  const id = await idOf("sessions", "roundtrip");
  const before = await (await fetch(`${base}/sessions/${id}/__test/inspect`)).json();
  const one = await exportAll("SessionStore", id, 10000);
  const paged = await exportAll("SessionStore", id, 3);
  assert.equal(one.pages, 1);
  assert.ok(paged.pages > 3, `paged export took ${paged.pages} pages`);
  const strip = (t) => t.split("\n").filter((l) => !l.includes('"t":"header"')).join("\n");
  assert.equal(strip(paged.text), strip(one.text), "paging does not change the content");
  assert.equal(one.end.tables, 1);
  assert.ok(one.end.rows >= 3 && one.end.kv >= 10);
  // Wipe by importing an empty object, then restore in small chunks.
  const wipe = await call("POST", `/__cfbackup/v1/SessionStore/${id}/import?seq=0&final=1`, {
    body: new TextEncoder().encode(JSON.stringify({ t: "header", format: "cfbackup-do/1" }) + "\n"),
  });
  assert.equal(wipe.status, 200);
  const empty = await (await fetch(`${base}/sessions/${id}/__test/inspect`)).json();
  assert.equal(empty.kv.length, 0);
  assert.equal(empty.alarm, null);
  const lines = one.text.trimEnd().split("\n");
  const alarm = JSON.parse(lines[0]).alarm;
  for (let i = 0, seq = 0; i < lines.length; i += 4, seq++) {
    const final = i + 4 >= lines.length;
    const r = await call("POST", `/__cfbackup/v1/SessionStore/${id}/import?seq=${seq}&final=${final ? 1 : 0}${final && alarm ? "&alarm=" + alarm : ""}`, {
      body: new TextEncoder().encode(lines.slice(i, i + 4).join("\n") + "\n"),
    });
    assert.equal(r.status, 200, await r.clone().text());
  }
  const after = await (await fetch(`${base}/sessions/${id}/__test/inspect`)).json();
  assert.deepStrictEqual(after, before);
});

test("SQL data into a KV-backed class is refused before anything changes", async () => {
  const sid = await idOf("sessions", "src");
  const kid = await idOf("ratelimit", "dst");
  const before = await (await fetch(`${base}/ratelimit/${kid}/__test/inspect`)).json();
  const { text } = await exportAll("SessionStore", sid);
  const r = await call("POST", `/__cfbackup/v1/RateLimiter/${kid}/import?seq=0&final=1`, { body: new TextEncoder().encode(text) });
  assert.equal(r.status, 422);
  assert.match((await r.json()).message, /KV-backed/);
  assert.deepStrictEqual(await (await fetch(`${base}/ratelimit/${kid}/__test/inspect`)).json(), before);
});

test("a KV-backed object round-trips through export and a multi-chunk import", async () => {
  const id = await idOf("ratelimit", "kvrt");
  const before = await (await fetch(`${base}/ratelimit/${id}/__test/inspect`)).json();
  const { text, end } = await exportAll("RateLimiter", id, 2);
  assert.equal(end.tables, 0);
  const lines = text.trimEnd().split("\n");
  const alarm = JSON.parse(lines[0]).alarm;
  for (let i = 0, seq = 0; i < lines.length; i += 2, seq++) {
    const final = i + 2 >= lines.length;
    const r = await call("POST", `/__cfbackup/v1/RateLimiter/${id}/import?seq=${seq}&final=${final ? 1 : 0}${final && alarm ? "&alarm=" + alarm : ""}`, {
      body: new TextEncoder().encode(lines.slice(i, i + 2).join("\n") + "\n"),
    });
    assert.equal(r.status, 200);
  }
  assert.deepStrictEqual(await (await fetch(`${base}/ratelimit/${id}/__test/inspect`)).json(), before);
});

test("IDs are bound to their namespace", async () => {
  const sid = await idOf("sessions", "bound");
  const r = await call("GET", `/__cfbackup/v1/RateLimiter/${sid}/info`);
  assert.equal(r.status, 400);
  assert.match((await r.json()).message, /bound to their namespace/);
});

// unframeText turns a framed export page back into NDJSON: each frame (0x00, 4-byte length, bytes)
// becomes the base64 of its bytes.
function unframeText(b) {
  let out = "", off = 0;
  const dec = new TextDecoder();
  for (;;) {
    const z = b.indexOf(0, off);
    out += dec.decode(b.subarray(off, z < 0 ? b.length : z));
    if (z < 0) return out;
    const n = new DataView(b.buffer, b.byteOffset + z + 1, 4).getUint32(0);
    out += Buffer.from(b.subarray(z + 5, z + 5 + n)).toString("base64");
    off = z + 5 + n;
  }
}

test("binary framing: a framed export is the plain export; framed imports write the BLOBs; a forged frame reference is refused", async () => {
  const id = await idOf("sessions", "framed");
  assert.equal((await (await fetch(`${base}/sessions/name:framed/__test/fill?mb=2`)).text()), id);
  const digest = await (await fetch(`${base}/sessions/${id}/__test/digest`)).text();
  const p = `/__cfbackup/v1/SessionStore/${id}/export?max_bytes=33554432`;
  const plain = await call("GET", p);
  assert.equal(plain.headers.get("cfbackup-wire"), "bin1"); // the module says it speaks the framing
  const url = new URL(base + p);
  const framed = await fetch(url, { headers: { ...(await sign(SECRET, "GET", url, new Uint8Array())), "cfbackup-wire": "bin1" } });
  assert.equal(framed.headers.get("content-type"), "application/x-cfbackup-ndjson-framed");
  const fb = new Uint8Array(await framed.arrayBuffer());
  const strip = (t) => t.split("\n").filter((l) => !l.includes('"t":"header"')).join("\n");
  const text = await plain.text();
  assert.ok(fb.length < text.length * 0.8, `framed ${fb.length} bytes, plain ${text.length}`);
  assert.equal(strip(unframeText(fb)), strip(text));
  // Import the framed page as one chunk (the frames as the Go client sends them) over a wiped object.
  const alarm = JSON.parse(text.slice(0, text.indexOf("\n"))).alarm; // the client sends it with the final chunk
  const imp = (body, wire = true) => call("POST", `/__cfbackup/v1/SessionStore/${id}/import?seq=0&final=1${wire ? `&wire=bin1&alarm=${alarm}` : ""}`, { body });
  const empty = new TextEncoder().encode('{"t":"header","format":"cfbackup-do/2"}\n{"t":"end","kv":0,"tables":0,"rows":0,"schema":0}\n');
  assert.equal((await imp(empty, false)).status, 200);
  assert.notEqual(await (await fetch(`${base}/sessions/${id}/__test/digest`)).text(), digest);
  const r = await imp(fb);
  assert.equal(r.status, 200, await r.clone().text());
  assert.equal((await r.json()).rows, JSON.parse(text.trimEnd().split("\n").pop()).rows);
  assert.equal(await (await fetch(`${base}/sessions/${id}/__test/digest`)).text(), digest);
  // A reference to a frame the chunk does not carry is refused, and nothing changes.
  const forged = new TextEncoder().encode(strip(text).split("\n").filter((l) => !l.includes('"t":"row"')).join("\n").replace('{"t":"end"', '{"t":"row","table":"blobs","c":"ib","v":[1,{"$t":"ab","v":"\\u00007"}],"r":1}\n{"t":"end"'));
  const bad = await imp(new Uint8Array([...new TextEncoder().encode('{"t":"header","format":"cfbackup-do/2"}\n'), ...forged]));
  assert.equal(bad.status, 422);
  assert.match((await bad.json()).message, /frame/);
  assert.equal(await (await fetch(`${base}/sessions/${id}/__test/digest`)).text(), digest);
});
