// Unit tests of the tagged-JSON codec (run in Node; the same module runs in workerd).
import { test } from "node:test";
import assert from "node:assert/strict";
import { encode, decode, approxSize } from "../dist/src/codec.js";

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

test("approxSize counts binary data by its bytes", () => {
  assert.equal(approxSize(new Uint8Array(1000)), 1000);
  assert.ok(approxSize({ a: "x".repeat(200000) }) > 131072);
});
