// The size of a value as Durable Object storage measures it: the length of its V8 serialisation
// (workerd serialises every KV value with V8's ValueSerializer, header included, and checks that
// length against the platform's limits; local workerd/miniflare enforce none of them).
//
// A Worker cannot call V8's serializer, so this follows its rules (V8 value-serializer.cc, format
// version 15) for the value restore will put: the value decode() builds from an export. Where V8's
// choice depends on an internal representation JavaScript cannot see, two bounds are computed:
//   - a number in [2^30, 2^31) may be a Smi (6 bytes) or a heap number (9 bytes);
//   - a two-byte string may be preceded by one byte of alignment padding.
// Everything else (strings by their one-/two-byte form, binary data, Dates, Maps, Sets, BigInts,
// arrays' dense or sparse forms) is exact.

/** KV-backed objects: V8 serialisation of a value, header included, at most 128 KiB + 34 B. */
export const KV_VALUE_ENFORCED = 128 * 1024 + 34;
export const KV_VALUE_ADVERTISED = 128 * 1024;
/** KV-backed objects: key at most 2,048 bytes of UTF-8. */
export const KV_KEY_BYTES = 2048;
/** SQLite-backed objects: key (UTF-8) plus serialised value at most 2 MB. */
export const SQLITE_KV_BYTES = 2 * 1024 * 1024;

export interface SizeBounds {
  min: number;
  max: number;
}

const SMI_MIN = -(2 ** 30);
const SMI_MAX = 2 ** 30 - 1;

function varint(n: number): number {
  let b = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    b++;
  }
  return b;
}

function zigzag(n: number): number {
  return n >= 0 ? 2 * n : -2 * n - 1;
}

function isLatin1(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0xff) return false;
  return true;
}

const isArrayIndex = (k: string) => /^(0|[1-9][0-9]*)$/.test(k) && Number(k) < 2 ** 32 - 1;

class Counter {
  min = 0;
  max = 0;
  add(n: number, m = n) {
    this.min += n;
    this.max += m;
  }
  str(s: string) {
    if (isLatin1(s)) this.add(1 + varint(s.length) + s.length);
    else this.add(1 + varint(2 * s.length) + 2 * s.length, 2 + varint(2 * s.length) + 2 * s.length);
  }
  num(n: number) {
    if (Number.isInteger(n) && !Object.is(n, -0) && n >= SMI_MIN && n <= SMI_MAX) this.add(1 + varint(zigzag(n)));
    else if (Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31 && !Object.is(n, -0)) this.add(1 + varint(zigzag(n)), 9);
    else this.add(9);
  }
  key(k: string) {
    if (isArrayIndex(k)) this.num(Number(k));
    else this.str(k);
  }
  bigint(v: bigint) {
    let a = v < 0n ? -v : v;
    let digits = 0;
    while (a > 0n) {
      a >>= 64n;
      digits++;
    }
    this.add(1 + varint(digits * 8 * 2) + digits * 8);
  }
  buffer(b: ArrayBufferLike) {
    this.add(1 + varint(b.byteLength) + b.byteLength);
  }
}

/** v8SizeBounds returns the bounds of the serialised size of v, header (2 bytes) included. */
export function v8SizeBounds(v: unknown): SizeBounds {
  const c = new Counter();
  c.add(2);
  walk(c, v);
  return { min: c.min, max: c.max };
}

function walk(c: Counter, v: unknown): void {
  switch (typeof v) {
    case "undefined":
    case "boolean":
      return c.add(1);
    case "number":
      return c.num(v);
    case "bigint":
      return c.bigint(v);
    case "string":
      return c.str(v);
    case "object":
      break;
    default:
      throw new TypeError(`a ${typeof v} cannot be stored`);
  }
  if (v === null) return c.add(1);
  if (v instanceof Date) return c.add(9);
  if (v instanceof ArrayBuffer) return c.buffer(v);
  if (ArrayBuffer.isView(v)) {
    c.buffer(v.buffer); // the whole underlying buffer is written first
    const len = v instanceof DataView ? v.byteLength : (v as unknown as { length: number }).length;
    c.add(1 + 1 + varint(v.byteOffset) + varint(len * (v instanceof DataView ? 1 : (v as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT)) + 1);
    return;
  }
  if (v instanceof Map) {
    c.add(1);
    for (const [k, x] of v) {
      walk(c, k);
      walk(c, x);
    }
    return c.add(1 + varint(2 * v.size));
  }
  if (v instanceof Set) {
    c.add(1);
    for (const x of v) walk(c, x);
    return c.add(1 + varint(v.size));
  }
  if (v instanceof RegExp) {
    c.add(1);
    c.str(v.source);
    return c.add(1); // flags fit one varint byte
  }
  if (v instanceof Error) {
    c.add(1);
    if (v.name !== "Error") c.add(1);
    const own = Object.getOwnPropertyDescriptor(v, "message");
    if (own && typeof own.value === "string") {
      c.add(1);
      c.str(own.value);
    }
    if (typeof v.stack === "string") {
      c.add(1);
      c.str(v.stack);
    }
    if ("cause" in v) {
      c.add(1);
      walk(c, (v as { cause?: unknown }).cause);
    }
    return c.add(1);
  }
  if (v instanceof Boolean) return c.add(1);
  if (v instanceof Number) return c.add(9);
  if (v instanceof String) {
    c.add(1);
    return c.str(v.valueOf());
  }
  if (Array.isArray(v)) {
    const keys = Object.keys(v);
    const extra = keys.filter((k) => !isArrayIndex(k));
    if (keys.length - extra.length === v.length) {
      // Dense. An array of numbers only, one of which is not a small integer, is stored as doubles.
      const nums = v.every((x) => typeof x === "number");
      const smi = nums && v.every((x) => Number.isInteger(x) && !Object.is(x, -0) && x >= SMI_MIN && x <= SMI_MAX);
      c.add(1 + varint(v.length));
      if (nums && !smi) c.add(9 * v.length);
      else for (const x of v) walk(c, x);
      for (const k of extra) {
        c.key(k);
        walk(c, (v as unknown as Record<string, unknown>)[k]);
      }
      return c.add(1 + varint(extra.length) + varint(v.length));
    }
    c.add(1 + varint(v.length));
    for (const k of keys) {
      c.key(k);
      walk(c, (v as unknown as Record<string, unknown>)[k]);
    }
    return c.add(1 + varint(keys.length) + varint(v.length));
  }
  const keys = Object.keys(v as object);
  c.add(1);
  for (const k of keys) {
    c.key(k);
    walk(c, (v as Record<string, unknown>)[k]);
  }
  c.add(1 + varint(keys.length));
}

/** utf8Length is a key's size as the platform counts it. */
export function utf8Length(s: string): number {
  return keyEncoder.encode(s).length;
}
const keyEncoder = new TextEncoder();

/**
 * kvProblem says why a key/value pair cannot be put into an object of the given backend, or null.
 * certain=true checks the lower bound (the put would certainly fail); false the upper bound (it may).
 */
export function kvProblem(backend: "sqlite" | "kv", key: string, value: unknown, certain: boolean): string | null {
  // A UTF-16 unit is at most 3 bytes of UTF-8: the key's bytes are counted only near a limit.
  const kMax = key.length * 3;
  const b = v8SizeBounds(value);
  const vb = certain ? b.min : b.max;
  if (backend === "kv") {
    const kb = kMax > KV_KEY_BYTES ? utf8Length(key) : 0;
    if (kb > KV_KEY_BYTES) return `key of ${kb} bytes exceeds the ${KV_KEY_BYTES}-byte key limit of KV-backed objects`;
    if (vb > KV_VALUE_ENFORCED) return `value of ${b.min === b.max ? "" : certain ? "at least " : "up to "}${vb} bytes (V8 serialisation) exceeds the ${KV_VALUE_ADVERTISED}-byte value limit of KV-backed objects`;
    return null;
  }
  const kb = kMax + vb > SQLITE_KV_BYTES ? utf8Length(key) : 0;
  if (kb + vb > SQLITE_KV_BYTES) return `key + value of ${certain ? "at least " : "up to "}${kb + vb} bytes exceeds the 2 MB key+value limit`;
  return null;
}
