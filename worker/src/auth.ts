// Request signatures: HMAC-SHA256 over the method, path, canonical query, body SHA-256, timestamp and
// nonce, keyed with the CFBACKUP_SECRET the operator set with `wrangler secret put`. The Go client
// (pkg/source/durableobject) signs the same string; docs/DURABLE_OBJECTS.md specifies it.

export const SIGNATURE_SCHEME = "CFBACKUP-HMAC-SHA256";
export const HEADER_TIMESTAMP = "cfbackup-timestamp";
export const HEADER_NONCE = "cfbackup-nonce";
export const HEADER_SIGNATURE = "cfbackup-signature";
/** Requests whose timestamp is further than this from the object's clock are refused. */
export const MAX_SKEW_SECONDS = 300;
/** The shortest secret accepted: a weak secret is refused rather than silently used. */
export const MIN_SECRET_LENGTH = 32;

const enc = new TextEncoder();

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

export function hex(b: ArrayBuffer): string {
  let s = "";
  for (const x of new Uint8Array(b)) s += HEX[x];
  return s;
}

/** EMPTY_SHA256 is the SHA-256 of no bytes (the body of every GET): not computed again per request. */
const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

export async function sha256Hex(body: ArrayBuffer | Uint8Array): Promise<string> {
  if (body.byteLength === 0) return EMPTY_SHA256;
  return hex(await crypto.subtle.digest("SHA-256", body as BufferSource));
}

/** rfc3986 percent-encodes everything but unreserved characters (Go's side does the same). */
export function rfc3986(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
}

/** canonicalQuery sorts parameters by key, then value, and percent-encodes both. */
export function canonicalQuery(params: URLSearchParams): string {
  const pairs = [...params].map(([k, v]) => [rfc3986(k), rfc3986(v)]);
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  return pairs.map(([k, v]) => `${k}=${v}`).join("&");
}

export function stringToSign(method: string, path: string, query: string, bodySha: string, ts: string, nonce: string): string {
  return [SIGNATURE_SCHEME, method.toUpperCase(), path, query, bodySha, ts, nonce].join("\n");
}

/** The key of the last secret used: every request of a restore is checked with the same secret. */
let lastKey: { secret: string; key: Promise<CryptoKey> } | undefined;

function hmacKey(secret: string): Promise<CryptoKey> {
  if (lastKey?.secret !== secret) {
    const key = crypto.subtle.importKey("raw", enc.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    const entry = { secret, key };
    key.catch(() => {
      if (lastKey === entry) lastKey = undefined;
    });
    lastKey = entry;
  }
  return lastKey.key;
}

export async function hmacHex(secret: string, msg: string): Promise<string> {
  return hex(await crypto.subtle.sign("HMAC", await hmacKey(secret), enc.encode(msg)));
}

/** sign returns the headers for a request (used by tests and by Node-side tools). */
export async function sign(secret: string, method: string, url: URL, body: Uint8Array, now = Date.now(), nonce?: string): Promise<Record<string, string>> {
  const ts = String(Math.floor(now / 1000));
  const n = nonce ?? hex(crypto.getRandomValues(new Uint8Array(16)).buffer as ArrayBuffer);
  const sig = await hmacHex(secret, stringToSign(method, url.pathname, canonicalQuery(url.searchParams), await sha256Hex(body), ts, n));
  return { [HEADER_TIMESTAMP]: ts, [HEADER_NONCE]: n, [HEADER_SIGNATURE]: sig };
}

/** timingSafeEqual compares two hex strings in time independent of where they differ. */
export function timingSafeEqual(a: string, b: string): boolean {
  const x = enc.encode(a);
  const y = enc.encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

/** AuthError carries the HTTP status and a message that names the fix. */
export class AuthError extends Error {
  constructor(public status: number, public code: string, message: string) {
    super(message);
  }
}

/**
 * ReplayGuard remembers the signatures it accepted until they fall out of the time window, so a
 * captured request cannot be sent again while its timestamp would still pass.
 */
export class ReplayGuard {
  private seen = new Map<string, number>();
  constructor(private windowMs = 2 * MAX_SKEW_SECONDS * 1000, private max = 100_000) {}
  /** check returns false when sig was seen within the window; otherwise records it. */
  check(sig: string, now: number): boolean {
    for (const [k, exp] of this.seen) {
      if (exp > now && this.seen.size < this.max) break;
      this.seen.delete(k);
    }
    if (this.seen.has(sig)) return false;
    this.seen.set(sig, now + this.windowMs);
    return true;
  }
}

/** SignedHeaders are a request's signature headers, checked for form and freshness by checkHeaders. */
export interface SignedHeaders {
  ts: string;
  nonce: string;
  sig: string;
}

/** verify checks a request's signature and freshness; it throws AuthError. body is the raw body. */
export async function verify(secret: string | undefined, req: Request, body: Uint8Array, guard: ReplayGuard, now = Date.now()): Promise<void> {
  const h = checkHeaders(secret, req, now);
  await checkSignature(secret!, req, body, h, guard, now);
}

/**
 * checkHeaders checks everything that can be checked before the body is read: a usable secret, the
 * three signature headers well formed, and a timestamp inside the window. It throws AuthError.
 */
export function checkHeaders(secret: string | undefined, req: Request, now = Date.now()): SignedHeaders {
  if (!secret) {
    throw new AuthError(503, "no_secret", "CFBACKUP_SECRET is not set on this Worker, so cfbackup requests are refused: run 'wrangler secret put CFBACKUP_SECRET' with the same value as cfbackup's CFBACKUP_WORKER_SECRET");
  }
  if (secret.length < MIN_SECRET_LENGTH) {
    throw new AuthError(503, "weak_secret", `CFBACKUP_SECRET is shorter than ${MIN_SECRET_LENGTH} characters, so cfbackup requests are refused: set a longer one (e.g. openssl rand -hex 32)`);
  }
  const ts = req.headers.get(HEADER_TIMESTAMP);
  const nonce = req.headers.get(HEADER_NONCE);
  const sig = req.headers.get(HEADER_SIGNATURE);
  if (!ts || !nonce || !sig) {
    throw new AuthError(401, "unsigned", "request is not signed (cfbackup-timestamp, cfbackup-nonce and cfbackup-signature headers are required)");
  }
  if (!/^[0-9]{1,12}$/.test(ts) || !/^[0-9a-f]{16,64}$/.test(nonce) || !/^[0-9a-f]{64}$/.test(sig)) {
    throw new AuthError(401, "malformed", "malformed signature headers");
  }
  const skew = Math.abs(now / 1000 - Number(ts));
  if (skew > MAX_SKEW_SECONDS) {
    throw new AuthError(403, "stale", `request timestamp is ${Math.round(skew)} s away from the Worker's clock (limit ${MAX_SKEW_SECONDS} s): check the clock of the host running cfbackup`);
  }
  return { ts, nonce, sig };
}

/** checkSignature checks the HMAC over the request and its (bounded, already read) body, then replay. */
export async function checkSignature(secret: string, req: Request, body: Uint8Array, h: SignedHeaders, guard: ReplayGuard, now = Date.now(), url = new URL(req.url)): Promise<void> {
  const { ts, nonce, sig } = h;
  const want = await hmacHex(secret, stringToSign(req.method, url.pathname, canonicalQuery(url.searchParams), await sha256Hex(body), ts, nonce));
  if (!timingSafeEqual(want, sig)) {
    throw new AuthError(403, "bad_signature", "signature does not match: CFBACKUP_WORKER_SECRET (cfbackup) and CFBACKUP_SECRET (Worker) differ");
  }
  if (!guard.check(sig, now)) {
    throw new AuthError(403, "replayed", "this signed request was already used (replay refused)");
  }
}
