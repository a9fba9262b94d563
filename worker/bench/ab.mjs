#!/usr/bin/env node
// A/B of two builds of the module in one process: two runtimes (worker directory A and B, each with
// dist/ built), the same seeded objects in each, batched export then import of every object,
// alternating A and B for ROUNDS rounds (the order swapped every round). Prints the runtime's CPU
// per object for each phase and round, the medians, and B/A. docs/DURABLE_OBJECTS.md quotes it.
//
//   node bench/ab.mjs DIR_A DIR_B [OBJECTS=1000] [ROUNDS=6]
//
// An export right after the same runtime's import finds its objects in memory ("warm"); one after
// the other runtime's phases finds many evicted ("cold"): both are listed, by round.
import { start, phase, hwmMiB } from "./lib.mjs";

const [dirA, dirB, n = "1000", rounds = "6"] = process.argv.slice(2);
if (!dirA || !dirB) {
  console.error("usage: node bench/ab.mjs DIR_A DIR_B [OBJECTS] [ROUNDS]");
  process.exit(2);
}
const rts = { A: await start(dirA, Number(n)), B: await start(dirB, Number(n)) };
const res = { A: { export: [], import: [] }, B: { export: [], import: [] } };
for (let r = 0; r < Number(rounds); r++) {
  for (const k of r % 2 ? ["B", "A"] : ["A", "B"]) {
    for (const what of ["export", "import"]) res[k][what].push(await phase(rts[k], what));
  }
}
const med = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
for (const k of ["A", "B"]) {
  for (const what of ["export", "import"]) {
    const xs = res[k][what];
    console.log(`${k} ${what}: runtime CPU ms/object by round ${xs.map((x) => x.cpuMsPerObject.toFixed(2)).join(" ")} (median ${med(xs.map((x) => x.cpuMsPerObject)).toFixed(2)}); objects/s median ${med(xs.map((x) => x.objectsPerSecond)).toFixed(0)}`);
  }
  console.log(`${k} workerd peak RSS ${hwmMiB(rts[k].pids)} MiB`);
}
for (const what of ["export", "import"]) {
  const ra = res.A[what].map((x) => x.cpuMsPerObject);
  const rb = res.B[what].map((x) => x.cpuMsPerObject);
  console.log(`B/A ${what}: median ${(med(rb) / med(ra)).toFixed(2)}`);
}
await rts.A.stop();
await rts.B.stop();
