#!/usr/bin/env node
// A V8 CPU profile of the runtime while it answers cfbackup's batched requests: starts the example
// app with the inspector on, seeds OBJECTS small objects, runs the phases (export, import, in the
// order given; a phase repeated profiles its objects in memory), writes OUT-<phase>.cpuprofile
// (open it in a browser's developer tools) and prints the functions by self and by total time.
//
//   node bench/profile.mjs [OBJECTS=1000] [OUT=/tmp/cfbackup-do] [PHASES=export,import] [PORT=9329]
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { start, phase } from "./lib.mjs";

const [n = "1000", out = "/tmp/cfbackup-do", phases = "export,import", port = "9329"] = process.argv.slice(2);
const wdir = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const rt = await start(wdir, Number(n), { inspectorPort: Number(port) });
const targets = await (await fetch(`http://127.0.0.1:${port}/json`)).json();
const target = targets.find((t) => /oidc-example/.test(t.webSocketDebuggerUrl));
const ws = new WebSocket(target.webSocketDebuggerUrl);
await new Promise((r) => ws.on("open", r));
let next = 0;
const pending = new Map();
ws.on("message", (d) => {
  const m = JSON.parse(d.toString());
  pending.get(m.id)?.(m);
  pending.delete(m.id);
});
const call = (method, params = {}) => new Promise((r) => {
  pending.set(++next, r);
  ws.send(JSON.stringify({ id: next, method, params }));
});
await call("Profiler.enable");
await call("Profiler.setSamplingInterval", { interval: 100 });
for (const what of phases.split(",")) {
  await call("Profiler.start");
  const r = await phase(rt, what);
  const { result } = await call("Profiler.stop");
  fs.writeFileSync(`${out}-${what}.cpuprofile`, JSON.stringify(result.profile));
  console.log(`${what}: ${r.cpuMsPerObject.toFixed(2)} ms of runtime CPU per object, ${r.objectsPerSecond.toFixed(0)} objects/s; ${out}-${what}.cpuprofile`);
  summary(result.profile);
}
ws.close();
await rt.stop();

/** summary prints the 25 functions with the most self time and the most total time, ms. */
function summary(p) {
  const byId = new Map(p.nodes.map((x) => [x.id, x]));
  const parent = new Map();
  for (const x of p.nodes) for (const c of x.children ?? []) parent.set(c, x.id);
  const ms = (p.endTime - p.startTime) / p.samples.length / 1000;
  const name = (x) => `${x.callFrame.functionName || "(anonymous)"} ${x.callFrame.url.split("/").slice(-2).join("/")}:${x.callFrame.lineNumber + 1}`;
  const self = new Map();
  const total = new Map();
  for (const s of p.samples) {
    self.set(name(byId.get(s)), (self.get(name(byId.get(s))) ?? 0) + ms);
    const seen = new Set();
    for (let x = s; x !== undefined; x = parent.get(x)) {
      const k = name(byId.get(x));
      if (!seen.has(k)) total.set(k, (total.get(k) ?? 0) + ms);
      seen.add(k);
    }
  }
  for (const [title, m] of [["self", self], ["total", total]]) {
    console.log(`  by ${title} time (ms):`);
    for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`  ${v.toFixed(0).padStart(7)}  ${k}`);
  }
}
