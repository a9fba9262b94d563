// Object names (issue 15 §4): an object created with idFromName exports its name, and the route
// name:<name> re-creates it under that name in another namespace (here: a Worker of another script
// name, whose runtime derives other IDs from the same names).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Miniflare } from "miniflare";
import { options } from "./harness.mjs";
import { sign } from "../dist/src/auth.js";

process.env.CLOUDFLARE_CF_FETCH_ENABLED = "false";
const SECRET = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t-0002";
let mf, base, mf2, base2;

before(async () => {
  mf = new Miniflare(options({ secret: SECRET }));
  base = (await mf.ready).toString().replace(/\/$/, "");
  mf2 = new Miniflare(options({ secret: SECRET, name: "other-account" }));
  base2 = (await mf2.ready).toString().replace(/\/$/, "");
});
after(async () => {
  await mf?.dispose();
  await mf2?.dispose();
});

async function call(b, method, path, body = new Uint8Array()) {
  const url = new URL(b + path);
  return fetch(url, { method, headers: await sign(SECRET, method, url, body), body: method === "POST" ? body : undefined });
}

const inspect = async (b, ref) => (await fetch(`${b}/sessions/${ref}/__test/inspect`)).json();

test("an object created by name exports its name; an unnamed one does not", async () => {
  assert.equal((await fetch(`${base}/sessions/name:${encodeURIComponent("Ålice / 1")}/__test/seed?i=3`)).status, 200);
  const id = (await inspect(base, "name:" + encodeURIComponent("Ålice / 1"))).id;
  const info = await (await call(base, "GET", `/__cfbackup/v1/SessionStore/${id}/info`)).json();
  assert.equal(info.name, "Ålice / 1");
  const header = JSON.parse((await (await call(base, "GET", `/__cfbackup/v1/SessionStore/${id}/export`)).text()).split("\n")[0]);
  assert.equal(header.name, "Ålice / 1");

  const r = await fetch(`${base}/sessions/unique/__test/seed?i=4`);
  const uid = r.headers.get("x-object-id");
  const h2 = JSON.parse((await (await call(base, "GET", `/__cfbackup/v1/SessionStore/${uid}/export`)).text()).split("\n")[0]);
  assert.equal(h2.name, undefined);
  assert.equal((await (await call(base, "GET", `/__cfbackup/v1/SessionStore/${uid}/info`)).json()).name, null);
});

test("import by name re-creates the object under the same name in another namespace", async () => {
  await fetch(`${base}/sessions/name:bob/__test/seed?i=5`);
  const src = await inspect(base, "name:bob");
  const exp = await (await call(base, "GET", `/__cfbackup/v1/SessionStore/${src.id}/export`)).text();
  // The source ID means nothing in the other namespace...
  assert.equal((await call(base2, "GET", `/__cfbackup/v1/SessionStore/${src.id}/info`)).status, 400);
  // ...its name does.
  const alarm = JSON.parse(exp.split("\n")[0]).alarm;
  const q = `seq=0&final=1${alarm === null ? "" : "&alarm=" + alarm}`;
  const r = await call(base2, "POST", `/__cfbackup/v1/SessionStore/name:bob/import?${q}`, new TextEncoder().encode(exp));
  assert.equal(r.status, 200, await r.clone().text());
  const rep = await r.json();
  const dst = await inspect(base2, "name:bob");
  assert.equal(rep.id, dst.id);
  assert.notEqual(dst.id, src.id);
  delete src.id;
  delete dst.id;
  assert.deepEqual(dst, src);
});

test("a malformed name is refused", async () => {
  const r = await call(base, "GET", "/__cfbackup/v1/SessionStore/name:%E0%A4%A/info");
  assert.equal(r.status, 400);
  assert.equal((await r.json()).error, "bad_id");
});
