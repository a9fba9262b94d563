// Validators for examples/ that scripts/check-examples.sh runs (docs/SCHEDULING.md "How the examples
// are checked"). Each exits non-zero and names the file and the problem when an example is invalid.
//
//   node validate.mjs kubernetes FILE...  every YAML document against the Kubernetes OpenAPI schemas
//                                         (npm kubernetes-models: new CronJob(obj).validate())
//   node validate.mjs crontab FILE OUT    cron-parser's crontab file parser: every line a variable or
//                                         a valid schedule with a command; no unescaped % (cron turns
//                                         it into a newline); writes each command (cron's \% undone)
//                                         to OUT as a shell script for shellcheck
//   node validate.mjs commands FILE...    prints every cfbackup command line in the files, one JSON
//                                         array of arguments per line (shell expressions replaced by
//                                         "x"), for check-examples.sh to parse with the real binary
import { readFileSync, writeFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";
import { CronFileParser } from "cron-parser";
import { CronJob } from "kubernetes-models/batch/v1/CronJob";
import { Job } from "kubernetes-models/batch/v1/Job";
import { Secret } from "kubernetes-models/v1/Secret";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";

const models = {
  "batch/v1 CronJob": CronJob,
  "batch/v1 Job": Job,
  "v1 Secret": Secret,
  "v1 ConfigMap": ConfigMap,
};

function kubernetes(files) {
  let bad = 0;
  for (const file of files) {
    // Kubernetes reads manifests as YAML 1.1 (sigs.k8s.io/yaml): 0440 is octal there.
    const docs = parseAllDocuments(readFileSync(file, "utf8"), { version: "1.1", strict: true });
    docs.forEach((doc, i) => {
      const where = `${file}: document ${i + 1}`;
      if (doc.errors.length > 0) {
        console.error(`${where}: YAML: ${doc.errors.map((e) => e.message).join("; ")}`);
        bad++;
        return;
      }
      const obj = doc.toJS();
      if (obj === null) return;
      const Model = models[`${obj.apiVersion} ${obj.kind}`];
      if (!Model) {
        console.error(`${where}: no schema for apiVersion ${obj.apiVersion} kind ${obj.kind} (add it to scripts/validators/validate.mjs)`);
        bad++;
        return;
      }
      try {
        new Model(obj).validate();
      } catch (e) {
        console.error(`${where} (${obj.kind} ${obj.metadata?.name}): ${e.message}`);
        bad++;
      }
    });
  }
  return bad;
}

function crontab(file, out) {
  const res = CronFileParser.parseFileSync(file);
  let bad = 0;
  for (const [line, err] of Object.entries(res.errors)) {
    console.error(`${file}: ${line}: ${err.message}`);
    bad++;
  }
  const cmds = [];
  for (const raw of readFileSync(file, "utf8").split("\n")) {
    const entry = raw.trim();
    if (entry === "" || entry.startsWith("#") || /^[^\s=]+\s*=/.test(entry)) continue;
    const atoms = entry.split(/\s+/);
    const n = atoms[0].startsWith("@") ? 1 : 5;
    const cmd = entry.replace(new RegExp(`^(\\S+\\s+){${n}}`), "");
    if (atoms.length <= n || cmd === "") {
      console.error(`${file}: ${entry}: no command after the schedule`);
      bad++;
      continue;
    }
    if (/(^|[^\\])%/.test(cmd)) {
      console.error(`${file}: ${entry}: unescaped % (cron ends the command there and feeds the rest as stdin): write \\%`);
      bad++;
    }
    cmds.push(cmd.replaceAll("\\%", "%"));
  }
  if (res.expressions.length === 0) {
    console.error(`${file}: no cron entries`);
    bad++;
  }
  writeFileSync(out, `#!/bin/sh\n# commands of ${file}\n${cmds.join("\n")}\n`);
  return bad;
}

const subcommands = "backup|verify|test-restore|prune|shard merge";

// Arguments of a shell-ish command tail: quoted strings stay one word; a word holding a shell or
// systemd expansion becomes "x" (a value, never a flag); cron's \% is %.
function words(tail) {
  return (tail.match(/"[^"]*"|'[^']*'|\S+/g) ?? []).map((w) => {
    if (w.includes("$")) return "x";
    return w.replace(/^(["'])(.*)\1$/, "$2").replaceAll("\\%", "%").replaceAll("%%", "%");
  });
}

function commands(files) {
  const out = [];
  for (const file of files) {
    const text = readFileSync(file, "utf8");
    if (/\.ya?ml$/.test(file) && /^kind:\s*(CronJob|Job)/m.test(text)) {
      for (const doc of parseAllDocuments(text, { version: "1.1" })) {
        const obj = doc.toJS();
        const spec = (obj?.kind === "Job" ? obj?.spec?.template?.spec : obj?.spec?.jobTemplate?.spec?.template?.spec) ?? {};
        for (const c of [...(spec.initContainers ?? []), ...(spec.containers ?? [])]) {
          // $(VAR) is the kubelet's expansion of an environment variable (an index: a number).
          if (c.args) out.push({ file, args: c.args.map((a) => String(a).replace(/\$\([A-Z_]+\)/g, "0")) });
        }
      }
      continue;
    }
    const re = new RegExp(`(?:/usr/bin/cfbackup|cfbackup-cron|\\bcfbackup|"\\$IMAGE"|\\brun)\\s+((?:${subcommands})\\b[^'\\n>|]*)`, "g");
    for (const line of text.split("\n")) {
      if (/^\s*#/.test(line)) continue;
      for (const m of line.matchAll(re)) out.push({ file, args: words(m[1]) });
    }
  }
  for (const c of out) console.log(JSON.stringify(c));
  return out.length === 0 ? 1 : 0;
}

const [mode, ...args] = process.argv.slice(2);
let bad;
if (mode === "kubernetes" && args.length > 0) bad = kubernetes(args);
else if (mode === "crontab" && args.length === 2) bad = crontab(args[0], args[1]);
else if (mode === "commands" && args.length > 0) bad = commands(args);
else {
  console.error("usage: node validate.mjs kubernetes FILE... | crontab FILE OUT | commands FILE...");
  process.exit(2);
}
process.exit(bad > 0 ? 1 : 0);
