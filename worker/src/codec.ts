// Tagged JSON for structured-clone values.
//
// Durable Object storage keeps values as structured clones: Date, Map, Set, BigInt, ArrayBuffer and
// typed arrays come back as themselves. Plain JSON would turn a Uint8Array into {"0":5} and a Date into
// a string, so every value that is not a JSON string, boolean, null or finite number is written as an
// object with a type tag "$t". Plain objects are tagged too ({"$t":"o","v":{...}}), so a user object
// can never be mistaken for a tag. docs/DURABLE_OBJECTS.md lists the tags.

export type Tagged = null | boolean | number | string | Tagged[] | { $t: string; [k: string]: unknown };

const typedArrays: Record<string, { new (b: ArrayBuffer): ArrayBufferView }> = {
  Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array,
  Float32Array, Float64Array, BigInt64Array, BigUint64Array,
};

/** Base64 of bytes (no padding removed), written without Node's Buffer so it runs in workerd. */
export function toBase64(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, Array.from(b.subarray(i, i + 0x8000)));
  }
  return btoa(s);
}

export function fromBase64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function bytesOf(v: ArrayBufferView): Uint8Array {
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

/** encode turns a structured-clone value into tagged JSON. Cycles are refused with a clear error. */
export function encode(v: unknown, seen: Set<object> = new Set()): Tagged {
  switch (typeof v) {
    case "string":
    case "boolean":
      return v;
    case "undefined":
      return { $t: "u" };
    case "bigint":
      return { $t: "bi", v: v.toString() };
    case "number":
      if (Number.isNaN(v)) return { $t: "n", v: "NaN" };
      if (v === Infinity) return { $t: "n", v: "Infinity" };
      if (v === -Infinity) return { $t: "n", v: "-Infinity" };
      if (Object.is(v, -0)) return { $t: "n", v: "-0" };
      return v;
    case "object":
      break;
    default:
      throw new TypeError(`cannot encode a value of type ${typeof v}`);
  }
  if (v === null) return null;
  const o = v as object;
  if (seen.has(o)) throw new TypeError("cannot encode a value with circular or shared references");
  seen.add(o);
  try {
    if (Array.isArray(o)) return o.map((x) => encode(x, seen));
    if (o instanceof Date) return { $t: "d", v: o.getTime() };
    if (o instanceof ArrayBuffer) return { $t: "ab", v: toBase64(new Uint8Array(o)) };
    if (o instanceof DataView) return { $t: "dv", v: toBase64(bytesOf(o)) };
    if (ArrayBuffer.isView(o)) {
      const kind = (o as object).constructor.name;
      if (!(kind in typedArrays)) throw new TypeError(`cannot encode typed array ${kind}`);
      return { $t: "ta", k: kind, v: toBase64(bytesOf(o)) };
    }
    if (o instanceof Map) return { $t: "m", v: [...o].map(([k, x]) => [encode(k, seen), encode(x, seen)]) };
    if (o instanceof Set) return { $t: "s", v: [...o].map((x) => encode(x, seen)) };
    if (o instanceof RegExp) return { $t: "re", src: o.source, flags: o.flags };
    if (o instanceof Error) return { $t: "err", name: o.name, msg: o.message };
    if (o instanceof Boolean || o instanceof Number || o instanceof String) {
      return { $t: "box", v: encode(o.valueOf(), seen) };
    }
    const out: Record<string, Tagged> = {};
    for (const k of Object.keys(o)) out[k] = encode((o as Record<string, unknown>)[k], seen);
    return { $t: "o", v: out };
  } finally {
    seen.delete(o);
  }
}

/** decode turns tagged JSON back into the value encode was given. */
export function decode(t: unknown): unknown {
  if (t === null || typeof t === "string" || typeof t === "boolean" || typeof t === "number") return t;
  if (Array.isArray(t)) return t.map(decode);
  if (typeof t !== "object") throw new TypeError(`bad tagged value: ${typeof t}`);
  const o = t as Record<string, any>;
  switch (o.$t) {
    case "u":
      return undefined;
    case "bi":
      return BigInt(o.v);
    case "n":
      return o.v === "-0" ? -0 : Number(o.v);
    case "d":
      return new Date(o.v === null ? NaN : o.v);
    case "ab": {
      const b = fromBase64(o.v);
      return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
    }
    case "dv": {
      const b = fromBase64(o.v);
      return new DataView(b.buffer as ArrayBuffer, b.byteOffset, b.byteLength);
    }
    case "ta": {
      const C = typedArrays[o.k];
      if (!C) throw new TypeError(`unknown typed array ${o.k}`);
      const b = fromBase64(o.v);
      return new C((b.buffer as ArrayBuffer).slice(b.byteOffset, b.byteOffset + b.byteLength));
    }
    case "m":
      return new Map((o.v as unknown[][]).map(([k, x]) => [decode(k), decode(x)]));
    case "s":
      return new Set((o.v as unknown[]).map(decode));
    case "re":
      return new RegExp(o.src, o.flags);
    case "err": {
      const e = new Error(o.msg);
      e.name = o.name;
      return e;
    }
    case "box":
      return Object(decode(o.v));
    case "o": {
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(o.v)) out[k] = decode(o.v[k]);
      return out;
    }
  }
  throw new TypeError(`unknown type tag ${JSON.stringify(o.$t)}`);
}

/**
 * approxSize estimates a value's stored size in bytes (binary data by its byte length, strings by their
 * UTF-8 length, 8 bytes per number): the platform's limits are on the V8 serialisation, which a Worker
 * cannot compute, and local miniflare enforces none.
 */
export function approxSize(v: unknown): number {
  switch (typeof v) {
    case "string":
      return new TextEncoder().encode(v).length;
    case "number":
    case "bigint":
      return 8;
    case "boolean":
    case "undefined":
      return 1;
  }
  if (v === null) return 1;
  if (v instanceof ArrayBuffer) return v.byteLength;
  if (ArrayBuffer.isView(v)) return v.byteLength;
  if (v instanceof Date) return 8;
  if (v instanceof Map) {
    let n = 0;
    for (const [k, x] of v) n += approxSize(k) + approxSize(x);
    return n;
  }
  if (v instanceof Set || Array.isArray(v)) {
    let n = 0;
    for (const x of v as Iterable<unknown>) n += approxSize(x);
    return n;
  }
  let n = 0;
  for (const [k, x] of Object.entries(v as object)) n += k.length + approxSize(x);
  return n;
}
