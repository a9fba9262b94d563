#!/usr/bin/env node
// Starts the example app (dist/example) in the real Workers runtime (workerd, through miniflare 4)
// for Go tests, benchmarks and demos. Prints one JSON line {"url": …, "persist": …} on stdout once the
// Worker is listening, then runs until stdin closes or SIGTERM/SIGINT arrives.
//
//   node test/harness.mjs [--persist DIR] [--port N] [--name SCRIPT] [--no-test-routes]
// --name sets the Worker's script name (default oidc-example): the runtime derives object IDs from
// it, so a Worker of another name stands for another account (same names, other IDs).
// CFBACKUP_SECRET in the environment becomes the Worker's secret (absent: the module refuses all).
import { Miniflare } from "miniflare";
import { fileURLToPath } from "node:url";
import path from "node:path";

process.env.CLOUDFLARE_CF_FETCH_ENABLED ??= "false";
process.env.DO_NOT_TRACK ??= "1";
const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};

export function options({ persist, port = 0, secret, testRoutes = true, name = "oidc-example" } = {}) {
  const bindings = {};
  if (secret !== undefined) bindings.CFBACKUP_SECRET = secret;
  if (testRoutes) bindings.ALLOW_TEST_ROUTES = "1";
  return {
    name,
    // The compiled modules, listed explicitly (entry first); workerd resolves "../src/index.js" among them.
    modules: ["example/index.js", "example/fuzz.js", "src/index.js", "src/codec.js", "src/auth.js", "src/v8size.js", "src/sqlcheck.js"].map((p) => ({ type: "ESModule", path: path.join(root, "dist", p) })),
    modulesRoot: path.join(root, "dist"),
    compatibilityDate: "2026-07-01",
    host: "127.0.0.1",
    port,
    durableObjectsPersist: persist ?? false,
    bindings,
    durableObjects: {
      SESSIONS: { className: "SessionStore", useSQLite: true },
      RATELIMIT: { className: "RateLimiter", useSQLite: false },
    },
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const persist = opt("--persist", undefined);
  const mf = new Miniflare(options({ persist, port: Number(opt("--port", "0")), secret: process.env.CFBACKUP_SECRET, testRoutes: !args.includes("--no-test-routes"), name: opt("--name", "oidc-example") }));
  const url = await mf.ready;
  process.stdout.write(JSON.stringify({ url: url.toString().replace(/\/$/, ""), persist: persist ?? null }) + "\n");
  let closing = false;
  const stop = async () => {
    if (closing) return;
    closing = true;
    await mf.dispose();
    process.exit(0);
  };
  process.stdin.on("end", stop);
  process.stdin.on("close", stop);
  process.stdin.resume();
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}
