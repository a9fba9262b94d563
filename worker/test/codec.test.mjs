// Unit tests of the tagged-JSON codec (run in Node; the same module runs in workerd).
import { test } from "node:test";
import assert from "node:assert/strict";
import { encode, decode } from "../dist/src/codec.js";
import { v8SizeBounds, kvProblem } from "../dist/src/v8size.js";
import v8 from "node:v8";

const rt = (v) => decode(JSON.parse(JSON.stringify(encode(v))));

test("structured-clone types survive a JSON round trip with their types", () => {
  const v = {
    d: new Date(1700000000123), bad: new Date(NaN), u8: new Uint8Array([0, 1, 255]), ab: new Uint8Array([7, 8]).buffer,
    f64: new Float64Array([Math.PI, -0]), big: new BigInt64Array([-(2n ** 63n)]), dv: new DataView(new Uint8Array([1, 2, 3]).buffer, 1, 2),
    m: new Map([[1, "a"], [{ k: 1 }, new Set([1n])]]), s: new Set(["x", undefined, null]), bi: 2n ** 100n,
    u: undefined, n: null, nan: NaN, inf: Infinity, ninf: -Infinity, nz: -0, z: 0, str: "ünï", arr: [1, [2, [undefined]]],
    re: /a+b/gi, err: new RangeError("boom"), boxed: new String("s"), tag: { $t: "o", v: 1 },
  };
  const got = rt(v);
  assert.deepStrictEqual(got.d, v.d);
  assert.ok(got.d instanceof Date);
  assert.ok(Number.isNaN(got.bad.getTime()));
  assert.ok(got.u8 instanceof Uint8Array);
  assert.deepStrictEqual([...got.u8], [0, 1, 255]);
  assert.ok(got.ab instanceof ArrayBuffer);
  assert.deepStrictEqual([...new Uint8Array(got.ab)], [7, 8]);
  assert.ok(got.f64 instanceof Float64Array);
  assert.ok(Object.is(got.f64[1], -0));
  assert.equal(got.big[0], -(2n ** 63n));
  assert.ok(got.dv instanceof DataView);
  assert.deepStrictEqual([got.dv.getUint8(0), got.dv.getUint8(1), got.dv.byteLength], [2, 3, 2]);
  assert.ok(got.m instanceof Map);
  assert.equal(got.m.get(1), "a");
  const [[, set]] = [...got.m].slice(1);
  assert.ok(set instanceof Set && set.has(1n));
  assert.ok(got.s.has(undefined) && got.s.has(null));
  assert.equal(got.bi, 2n ** 100n);
  assert.ok("u" in got && got.u === undefined);
  assert.equal(got.n, null);
  assert.ok(Number.isNaN(got.nan));
  assert.equal(got.inf, Infinity);
  assert.equal(got.ninf, -Infinity);
  assert.ok(Object.is(got.nz, -0));
  assert.ok(Object.is(got.z, 0));
  assert.equal(got.str, "ünï");
  assert.deepStrictEqual(got.arr, [1, [2, [undefined]]]);
  assert.ok(got.re instanceof RegExp && got.re.source === "a+b" && got.re.flags === "gi");
  assert.ok(got.err instanceof Error && got.err.name === "RangeError" && got.err.message === "boom");
  assert.ok(got.boxed instanceof String);
  assert.deepStrictEqual(got.tag, { $t: "o", v: 1 }, "a user object that looks like a tag stays a plain object");
});

test("top-level primitives keep their identity", () => {
  for (const v of ["", "s", true, false, null, 0, 1.5, -2]) assert.deepStrictEqual(rt(v), v);
  assert.equal(rt(undefined), undefined);
  assert.ok(Object.is(rt(-0), -0));
});

test("circular values are refused with a clear error, shared non-circular ones are copied", () => {
  const a = { x: 1 };
  a.self = a;
  assert.throws(() => encode(a), /circular/);
  const shared = { y: 2 };
  assert.deepStrictEqual(rt({ p: shared, q: shared }), { p: { y: 2 }, q: { y: 2 } });
});

test("unknown tags and malformed input are errors, not silent data", () => {
  assert.throws(() => decode({ $t: "nope" }), /unknown type tag/);
  assert.throws(() => decode({ $t: "ta", k: "Evil", v: "" }), /unknown typed array/);
});

test("v8SizeBounds matches V8's own serializer (Node's v8.serialize) on values without typed arrays", () => {
  const cjk = "漢".repeat(54001);
  const cases = [
    undefined, null, true, false, 0, 1, -1, 63, 64, -65, 2 ** 30 - 1, -(2 ** 30), 2 ** 31 + 0.5, 1.5, -0, NaN, Infinity, 2 ** 53,
    0n, 1n, -1n, 2n ** 64n, -(2n ** 200n), "", "abc", "ünï", "a".repeat(300), "漢字", "🔑", "\ud800", cjk, "é".repeat(70000),
    new Date(0), new Date(NaN), new ArrayBuffer(0), new Uint8Array(200).buffer,
    [], [1, 2, 3], [1, 2.5], [1, "x", { y: 2 }], [-0, 1], [2 ** 40, 1], { a: 1, b: "x", 3: true, "10": [1] }, { "é": "ü", "漢": "字" },
    new Map([[1, "a"], ["k", new Set([1n, "s"])]]), new Set(), new Set([null, undefined]), /a+b/gi, new String("sé"), new Number(3), new Boolean(false),
    { nested: [[1, [2, [3, { deep: new Date(0) }]]], "x"] }, JSON.parse('{"a":[1,2,{"b":"c"}],"n":12345678}'),
  ];
  const sparse = [1, , 3]; // eslint-disable-line no-sparse-arrays
  sparse.extra = "p";
  cases.push(sparse, new Array(5));
  for (const v of cases) {
    const real = v8.serialize(v).length;
    const { min, max } = v8SizeBounds(v);
    assert.ok(min <= real && real <= max, `${String(v).slice(0, 40)} (${typeof v}): V8 wrote ${real} bytes, bounds [${min}, ${max}]`);
  }
  // The case: 54,001 CJK characters are 108,008 bytes, a legal KV value.
  assert.equal(v8.serialize(cjk).length, 108008);
  assert.deepStrictEqual(v8SizeBounds(cjk), { min: 108008, max: 108009 });
  assert.equal(kvProblem("kv", "k", cjk, true), null);
  assert.equal(kvProblem("kv", "k", cjk, false), null);
  // Just over the limit, in Latin-1 (1 byte per character) and in CJK (2 per character).
  assert.match(kvProblem("kv", "k", "é".repeat(131110), true), /exceeds the 131072-byte value limit/);
  assert.match(kvProblem("kv", "k", "漢".repeat(65560), true), /exceeds/);
  assert.equal(kvProblem("kv", "k", "漢".repeat(65530), false), null);
  assert.match(kvProblem("kv", "k".repeat(2049), 1, true), /2048-byte key limit/);
  assert.equal(kvProblem("sqlite", "k".repeat(2049), "x".repeat(1 << 20), true), null);
  assert.match(kvProblem("sqlite", "k", new Uint8Array(2 << 20), true), /2 MB/);
});

test("typed arrays are sized with their whole buffer, as V8 writes it", () => {
  const buf = new ArrayBuffer(64);
  const view = new Uint16Array(buf, 8, 4);
  const { min, max } = v8SizeBounds(view);
  // header 2 + ArrayBuffer (tag, varint 64, 64 bytes) + view (tag, subtag, offset, length, flags)
  assert.equal(min, 2 + 1 + 1 + 64 + 5);
  assert.equal(max, min);
  const got = rt(view);
  assert.ok(got instanceof Uint16Array && got.byteOffset === 8 && got.length === 4 && got.buffer.byteLength === 64);
  const dv = rt(new DataView(buf, 3, 5));
  assert.ok(dv instanceof DataView && dv.byteOffset === 3 && dv.byteLength === 5 && dv.buffer.byteLength === 64);
});

test("sparse arrays keep their holes and extra properties", () => {
  const a = [1, , undefined]; // eslint-disable-line no-sparse-arrays
  a.length = 6;
  a.p = "x";
  const got = rt(a);
  assert.equal(got.length, 6);
  assert.ok(!(1 in got) && 2 in got && got[2] === undefined && !(5 in got));
  assert.equal(got.p, "x");
});
