// The SQL an import may run: exactly what an export can contain. A `table` line holds one CREATE
// TABLE (or CREATE VIRTUAL TABLE) statement for the table it names, a `schema` line one CREATE
// INDEX / TRIGGER / VIEW statement for the object it names; nothing else. Rows, sequences and the
// wipe are statements the module writes itself, with values bound as parameters.
//
// The platform's own authorizer already refuses ATTACH, TEMP objects, writable_schema,
// load_extension and the internal _cf_ tables; but the SQL API runs several statements given in one
// string, so a second statement smuggled after the CREATE would run too. checkCreate tokenizes the
// statement the way SQLite does (strings, quoted identifiers, comments) and refuses anything that is
// not one single CREATE of the expected kind and name.

export class SqlRefused extends Error {}

type Tok = { k: "w" | "id" | "s" | "p"; t: string };

function tokenize(sql: string): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql[i];
    if (/\s/.test(c)) {
      i++;
    } else if (c === "-" && sql[i + 1] === "-") {
      while (i < n && sql[i] !== "\n") i++;
    } else if (c === "/" && sql[i + 1] === "*") {
      const e = sql.indexOf("*/", i + 2);
      i = e < 0 ? n : e + 2;
    } else if (c === "'" || c === '"' || c === "`") {
      let j = i + 1;
      let v = "";
      for (;;) {
        if (j >= n) throw new SqlRefused("unterminated quoted text");
        if (sql[j] === c) {
          if (sql[j + 1] === c) {
            v += c;
            j += 2;
            continue;
          }
          break;
        }
        v += sql[j++];
      }
      out.push({ k: c === "'" ? "s" : "id", t: v });
      i = j + 1;
    } else if (c === "[") {
      const e = sql.indexOf("]", i + 1);
      if (e < 0) throw new SqlRefused("unterminated [identifier]");
      out.push({ k: "id", t: sql.slice(i + 1, e) });
      i = e + 1;
    } else if (/[A-Za-z0-9_$\u0080-\uffff]/.test(c)) {
      let j = i;
      while (j < n && /[A-Za-z0-9_$\u0080-\uffff]/.test(sql[j])) j++;
      out.push({ k: "w", t: sql.slice(i, j) });
      i = j;
    } else {
      out.push({ k: "p", t: c });
      i++;
    }
  }
  return out;
}

const kw = (t: Tok | undefined, w: string) => t !== undefined && t.k === "w" && t.t.toUpperCase() === w;

/**
 * checkCreate throws SqlRefused unless sql is one CREATE statement of the given kind ("table",
 * "index", "trigger", "view") whose object is named name (in the main schema).
 */
export function checkCreate(sql: unknown, kind: string, name: unknown): void {
  if (typeof sql !== "string" || typeof name !== "string") throw new SqlRefused("a schema line needs sql and name strings");
  const t = tokenize(sql);
  let i = 0;
  if (!kw(t[i++], "CREATE")) throw new SqlRefused(`not a CREATE statement: ${sql.slice(0, 60)}`);
  if (kw(t[i], "TEMP") || kw(t[i], "TEMPORARY")) throw new SqlRefused("TEMP objects are not part of an export");
  if (kind === "index" && kw(t[i], "UNIQUE")) i++;
  if (kind === "table" && kw(t[i], "VIRTUAL")) i++;
  if (!kw(t[i++], kind.toUpperCase())) throw new SqlRefused(`a ${kind} line holds another statement: ${sql.slice(0, 60)}`);
  if (kw(t[i], "IF")) {
    if (!kw(t[i + 1], "NOT") || !kw(t[i + 2], "EXISTS")) throw new SqlRefused("malformed IF NOT EXISTS");
    i += 3;
  }
  let got = t[i++];
  if (t[i]?.k === "p" && t[i].t === ".") {
    if (!got || got.t.toLowerCase() !== "main") throw new SqlRefused(`objects of schema ${got?.t} are not part of an export`);
    got = t[i + 1];
    i += 2;
  }
  if (!got || (got.k !== "w" && got.k !== "id" && got.k !== "s") || got.t.toLowerCase() !== name.toLowerCase()) {
    throw new SqlRefused(`the statement creates ${got?.t ?? "nothing"}, the line names ${name}`);
  }
  // One statement: a ';' may only end it, or end a statement inside a trigger's BEGIN … END body.
  let body = false;
  for (; i < t.length; i++) {
    const x = t[i];
    if (kind === "trigger" && !body && kw(x, "BEGIN")) {
      body = true;
      continue;
    }
    if (x.k !== "p" || x.t !== ";") continue;
    if (body) {
      if (kw(t[i + 1], "END")) {
        body = false;
        i++;
      }
      continue;
    }
    for (let j = i + 1; j < t.length; j++) {
      if (!(t[j].k === "p" && t[j].t === ";")) throw new SqlRefused(`more than one statement in a schema line: ${sql.slice(0, 80)}`);
    }
    break;
  }
}
