#!/usr/bin/env python3
"""cfreader: an independent reader of cfbackup repositories, written from docs/FORMAT.md alone.

Python 3.11 standard library only. Decryption calls the `age` CLI (age -d -i IDENTITY); LZ4 frame
decoding, tar parsing, authentication and the restores are implemented here. It exists to keep
docs/FORMAT.md honest: the Go test TestReaderInterop restores the same snapshots with cfbackup and
with this reader and compares the results.

  cfreader.py --repo DIR --identity KEY list
  cfreader.py --repo DIR --identity KEY catalogue [SNAPSHOT]
  cfreader.py --repo DIR --identity KEY verify [SNAPSHOT]      every segment's frames and every item
  cfreader.py --repo DIR --identity KEY restore-d1 [SNAPSHOT] --to-file F [--database UUID|NAME] [--table T]...
  cfreader.py --repo DIR --identity KEY restore-r2 [SNAPSHOT] --to-dir D [--bucket B]
  cfreader.py --repo DIR --identity KEY restore-config [SNAPSHOT] --to-dir D
  cfreader.py --repo DIR --identity KEY dump-items [SNAPSHOT] --to-dir D
  cfreader.py lz4cat FILE          decode a file of LZ4 frames to standard output

SNAPSHOT is a snapshot id or `latest` (the default): the authenticated manifest with the greatest
`time` (then id). Exit status 0 on success, 1 on any error (message on stderr).
"""

import argparse
import base64
import datetime
import gzip
import hashlib
import hmac
import io
import json
import os
import re
import sqlite3
import struct
import subprocess
import sys


class ReaderError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# age (subprocess)

def age_decrypt(identity, data):
    p = subprocess.run(["age", "-d", "-i", identity], input=data, capture_output=True)
    if p.returncode != 0:
        raise ReaderError("age -d: " + p.stderr.decode("utf-8", "replace").strip())
    return p.stdout


# ---------------------------------------------------------------------------------------------
# xxHash32 (LZ4 frame header and optional checksums)

_P1, _P2, _P3, _P4, _P5 = 2654435761, 2246822519, 3266489917, 668265263, 374761393
_M = 0xFFFFFFFF


def _rotl(x, r):
    return ((x << r) | (x >> (32 - r))) & _M


def xxh32(data, seed=0):
    n = len(data)
    i = 0
    if n >= 16:
        v1 = (seed + _P1 + _P2) & _M
        v2 = (seed + _P2) & _M
        v3 = seed & _M
        v4 = (seed - _P1) & _M
        limit = n - 16
        while i <= limit:
            a, b, c, d = struct.unpack_from("<4I", data, i)
            v1 = (_rotl((v1 + a * _P2) & _M, 13) * _P1) & _M
            v2 = (_rotl((v2 + b * _P2) & _M, 13) * _P1) & _M
            v3 = (_rotl((v3 + c * _P2) & _M, 13) * _P1) & _M
            v4 = (_rotl((v4 + d * _P2) & _M, 13) * _P1) & _M
            i += 16
        h = (_rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)) & _M
    else:
        h = (seed + _P5) & _M
    h = (h + n) & _M
    while i + 4 <= n:
        (k,) = struct.unpack_from("<I", data, i)
        h = (_rotl((h + k * _P3) & _M, 17) * _P4) & _M
        i += 4
    while i < n:
        h = (_rotl((h + data[i] * _P5) & _M, 11) * _P1) & _M
        i += 1
    h ^= h >> 15
    h = (h * _P2) & _M
    h ^= h >> 13
    h = (h * _P3) & _M
    h ^= h >> 16
    return h


# ---------------------------------------------------------------------------------------------
# LZ4 (frame format 1.6, block format)

LZ4_MAGIC = 0x184D2204


def lz4_block(src, out, limit):
    """Decode one LZ4 block from src, appending to out (which holds the history for matches)."""
    i, n = 0, len(src)
    start = len(out)
    while True:
        if i >= n:
            raise ReaderError("lz4: block truncated")
        token = src[i]
        i += 1
        lit = token >> 4
        if lit == 15:
            while True:
                if i >= n:
                    raise ReaderError("lz4: block truncated in literal length")
                b = src[i]
                i += 1
                lit += b
                if b != 255:
                    break
        if i + lit > n:
            raise ReaderError("lz4: literals beyond block end")
        out += src[i:i + lit]
        i += lit
        if i == n:
            break  # the last sequence has literals only
        if i + 2 > n:
            raise ReaderError("lz4: block truncated in offset")
        off = src[i] | (src[i + 1] << 8)
        i += 2
        if off == 0 or off > len(out):
            raise ReaderError("lz4: bad match offset %d" % off)
        ml = token & 15
        if ml == 15:
            while True:
                if i >= n:
                    raise ReaderError("lz4: block truncated in match length")
                b = src[i]
                i += 1
                ml += b
                if b != 255:
                    break
        ml += 4
        pos = len(out) - off
        if off >= ml:
            out += out[pos:pos + ml]
        else:  # overlapping copy: repeat the period
            period = bytes(out[pos:])
            reps, rest = divmod(ml, off)
            out += period * reps + period[:rest]
        if len(out) - start > limit:
            raise ReaderError("lz4: block decodes beyond its maximum size")
    if len(out) - start > limit:
        raise ReaderError("lz4: block decodes beyond its maximum size")


def lz4_frames(data):
    """Decode every LZ4 frame in data (skippable frames are skipped); return the concatenated content
    and require that data holds nothing else."""
    out = bytearray()
    i = 0
    frames = 0
    while i < len(data):
        if i + 4 > len(data):
            raise ReaderError("lz4: trailing bytes")
        (magic,) = struct.unpack_from("<I", data, i)
        if 0x184D2A50 <= magic <= 0x184D2A5F:
            (sz,) = struct.unpack_from("<I", data, i + 4)
            i += 8 + sz
            continue
        if magic != LZ4_MAGIC:
            raise ReaderError("lz4: bad magic %08x at %d" % (magic, i))
        i = _lz4_frame(data, i + 4, out)
        frames += 1
    if i != len(data):
        raise ReaderError("lz4: frame overruns its range")
    if frames == 0:
        raise ReaderError("lz4: no frame")
    return bytes(out)


def _lz4_frame(data, i, out):
    desc_start = i
    flg, bd = data[i], data[i + 1]
    i += 2
    if flg >> 6 != 1:
        raise ReaderError("lz4: frame version %d" % (flg >> 6))
    if flg & 0x02 or bd & 0x8F:
        raise ReaderError("lz4: reserved bits set")
    block_checksum = bool(flg & 0x10)
    content_size_flag = bool(flg & 0x08)
    content_checksum = bool(flg & 0x04)
    dict_id = bool(flg & 0x01)
    bmax = {4: 64 << 10, 5: 256 << 10, 6: 1 << 20, 7: 4 << 20}.get((bd >> 4) & 7)
    if bmax is None:
        raise ReaderError("lz4: bad block maximum size")
    content_size = None
    if content_size_flag:
        (content_size,) = struct.unpack_from("<Q", data, i)
        i += 8
    if dict_id:
        raise ReaderError("lz4: dictionaries are not supported")
    hc = data[i]
    if hc != (xxh32(bytes(data[desc_start:i])) >> 8) & 0xFF:
        raise ReaderError("lz4: header checksum mismatch")
    i += 1
    start = len(out)
    while True:
        if i + 4 > len(data):
            raise ReaderError("lz4: frame truncated")
        (bs,) = struct.unpack_from("<I", data, i)
        i += 4
        if bs == 0:
            break
        raw = bool(bs & 0x80000000)
        bs &= 0x7FFFFFFF
        if bs > bmax or i + bs > len(data):
            raise ReaderError("lz4: bad block size")
        blk = data[i:i + bs]
        i += bs
        if block_checksum:
            (c,) = struct.unpack_from("<I", data, i)
            i += 4
            if c != xxh32(bytes(blk)):
                raise ReaderError("lz4: block checksum mismatch")
        if raw:
            out += blk
        else:
            lz4_block(blk, out, bmax)
    if content_checksum:
        (c,) = struct.unpack_from("<I", data, i)
        i += 4
        if c != xxh32(bytes(out[start:])):
            raise ReaderError("lz4: content checksum mismatch")
    if content_size is not None and content_size != len(out) - start:
        raise ReaderError("lz4: content size mismatch")
    return i


# ---------------------------------------------------------------------------------------------
# tar (one entry per frame)

def _octal(field):
    if field and field[0] & 0x80:  # base-256
        v = field[0] & 0x7F
        for b in field[1:]:
            v = (v << 8) | b
        return v
    s = field.split(b"\0", 1)[0].strip(b" \0")
    return int(s, 8) if s else 0


def _cstr(field):
    return field.split(b"\0", 1)[0]


def tar_entry(buf):
    """Parse the single tar entry that is buf; return (name, data)."""
    i = 0
    pax = {}
    longname = None
    while True:
        if i + 512 > len(buf):
            raise ReaderError("tar: truncated header")
        h = buf[i:i + 512]
        if h == bytes(512):
            raise ReaderError("tar: end-of-archive marker where an entry was expected")
        chk = _octal(h[148:156])
        if chk != sum(h[:148]) + 32 * 8 + sum(h[156:]):
            raise ReaderError("tar: header checksum mismatch")
        typ = h[156:157]
        size = _octal(h[124:136])
        i += 512
        if typ in (b"x", b"L"):
            body = buf[i:i + size]
            i += (size + 511) // 512 * 512
            if typ == b"L":
                longname = _cstr(body).decode("utf-8")
            else:
                j = 0
                while j < len(body):
                    sp = body.index(b" ", j)
                    ln = int(body[j:sp])
                    rec = body[sp + 1:j + ln - 1]
                    k, _, v = rec.partition(b"=")
                    pax[k.decode()] = v.decode("utf-8")
                    j += ln
            continue
        if typ not in (b"0", b"\0"):
            raise ReaderError("tar: entry type %r is not a regular file" % typ)
        name = _cstr(h[0:100]).decode("utf-8")
        if h[257:263] == b"ustar\0" and _cstr(h[345:500]):
            name = _cstr(h[345:500]).decode("utf-8") + "/" + name
        if longname is not None:
            name = longname
        if "path" in pax:
            name = pax["path"]
        if "size" in pax:
            size = int(pax["size"])
        data = buf[i:i + size]
        if len(data) != size:
            raise ReaderError("tar: entry %s truncated" % name)
        end = i + (size + 511) // 512 * 512
        if len(buf) != end or any(buf[i + size:end]):
            raise ReaderError("tar: frame %s holds more than one padded entry" % name)
        return name, bytes(data)


def check_item_name(name):
    parts = name.split("/")
    if (name.startswith("/") or "\0" in name or "\\" in name or
            any(p in ("", ".", "..") for p in parts)):
        raise ReaderError("unsafe item name %r" % name)


# ---------------------------------------------------------------------------------------------
# Canonical JSON (FORMAT.md, Authentication): parse keeping number literals, re-encode Go-style.

class Num(str):
    """A JSON number kept exactly as written."""


def _fix_str(s):
    # Go's decoder turns a lone surrogate escape into U+FFFD; Python keeps the lone surrogate.
    return re.sub("[\ud800-\udfff]", "\ufffd", s)


def _hook(pairs):
    return {_fix_str(k): v for k, v in pairs}


def parse_json(raw):
    # Go's decoder replaces every byte of invalid UTF-8 with its own U+FFFD (Python's "replace" would
    # replace a maximal invalid subsequence with one), and a lone surrogate escape with U+FFFD.
    text = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw
    text = re.sub("[\udc80-\udcff]", "\ufffd", text)
    v = json.loads(text, object_pairs_hook=_hook, parse_int=Num, parse_float=Num)
    return _fix_all(v)


def _fix_all(v):
    if isinstance(v, dict):
        return {k: _fix_all(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_fix_all(x) for x in v]
    if isinstance(v, str) and not isinstance(v, Num):
        return _fix_str(v)
    return v


def _go_string(s):
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif o < 0x20:
            out.append({8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r"}.get(o, "\\u%04x" % o))
        elif o in (0x2028, 0x2029):
            out.append("\\u%04x" % o)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def canonical(v):
    if isinstance(v, dict):
        keys = sorted(v, key=lambda k: k.encode("utf-8"))
        return "{" + ",".join(_go_string(k) + ":" + canonical(v[k]) for k in keys) + "}"
    if isinstance(v, list):
        return "[" + ",".join(canonical(x) for x in v) + "]"
    if isinstance(v, Num):
        return str.__str__(v)
    if isinstance(v, str):
        return _go_string(v)
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, int):
        return str(v)
    raise TypeError(type(v))


def mac_of(secret, purpose, obj):
    k = hmac.new(secret, ("cfbackup " + purpose + " mac v2").encode(), hashlib.sha256).digest()
    body = {kk: vv for kk, vv in obj.items() if kk != "mac"}
    return "hmac-sha256:" + hmac.new(k, canonical(body).encode("utf-8"), hashlib.sha256).hexdigest()


# ---------------------------------------------------------------------------------------------
# Repository

def _int(v):
    return int(str.__str__(v)) if isinstance(v, Num) else v


def parse_time(s):
    """RFC 3339 with up to nanoseconds → (seconds since epoch, nanoseconds)."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)", s)
    if not m:
        raise ReaderError("bad time %r" % s)
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    dt = datetime.datetime.fromisoformat(m.group(1) + tz)
    return int(dt.timestamp()), int((m.group(2) or "0").ljust(9, "0"))


class Repo:
    def __init__(self, root, identity):
        self.root = root
        self.identity = identity
        self._plain = {}
        raw = self.read("config.json")
        self.config = parse_json(raw)
        fmt = _int(self.config.get("format"))
        if not isinstance(fmt, int) or fmt <= 0:
            raise ReaderError("config.json: malformed format")
        if fmt > 2:
            raise ReaderError("config.json: format %d is newer than this reader" % fmt)
        self.format = fmt
        wk = self.config.get("writer_key") or "keys/writer.age"
        txt = age_decrypt(identity, self.read(wk)).decode().strip()
        if not re.fullmatch(r"[0-9a-f]{64}", txt):
            raise ReaderError("%s: not 64 hex digits" % wk)
        self.secret = bytes.fromhex(txt)
        if fmt >= 2:
            if self.config.get("mac") != mac_of(self.secret, "config", self.config):
                raise ReaderError("config.json does not authenticate (mac missing or wrong)")
        self.legacy = {e["key"]: e["sha256"] for e in self.config.get("legacy_manifests", [])}

    def path(self, key):
        return os.path.join(self.root, *key.split("/"))

    def read(self, key):
        with open(self.path(key), "rb") as f:
            return f.read()

    def key_id(self):
        return "wk:" + hmac.new(self.secret, b"cfbackup key id v2", hashlib.sha256).hexdigest()[:16]

    def manifests(self):
        """Every manifest as (key, manifest or None, problem)."""
        out = []
        d = self.path("snapshots")
        for fn in sorted(os.listdir(d)) if os.path.isdir(d) else []:
            if not fn.endswith(".json"):
                continue
            key = "snapshots/" + fn
            try:
                out.append((key, self.load_manifest(key), None))
            except (ReaderError, ValueError, KeyError) as e:
                out.append((key, None, str(e)))
        return out

    def load_manifest(self, key):
        raw = self.read(key)
        m = parse_json(raw)
        fmt = _int(m.get("format"))
        if not isinstance(fmt, int) or fmt <= 0 or fmt > 3:
            raise ReaderError("%s: unknown format %r" % (key, fmt))
        km = re.fullmatch(r"snapshots/(\d{8}T\d{6}Z)-([0-9a-f]{16})\.json", key)
        if not km or km.group(2) != m.get("id"):
            raise ReaderError("%s: id does not match its key" % key)
        sec, _ = parse_time(m["time"])
        if datetime.datetime.fromtimestamp(sec, datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ") != km.group(1):
            raise ReaderError("%s: time does not match its key" % key)
        if self.format >= 2:
            if "mac" in m:
                if m["mac"] != mac_of(self.secret, "manifest", m):
                    raise ReaderError("%s: mac wrong" % key)
            elif self.legacy.get(key) != hashlib.sha256(raw).hexdigest():
                raise ReaderError("%s: no mac and not a listed legacy manifest" % key)
        return m

    def snapshot(self, want):
        ms = self.manifests()
        if want in (None, "latest"):
            good = [m for _, m, _ in ms if m is not None]
            bad = [(k, p) for k, m, p in ms if m is None]
            if not good:
                raise ReaderError("no readable snapshot")
            best = max(good, key=lambda m: (parse_time(m["time"]), m["id"]))
            # Never pass over an unreadable manifest that may be newer: its key's time (whole seconds)
            # is all there is, so one in the same second as the choice may be newer too.
            for k, p in bad:
                kt = os.path.basename(k)[:16]
                if kt >= os.path.basename(self._key_of(best))[:16]:
                    raise ReaderError("newer manifest %s is unreadable (%s); name a snapshot id" % (k, p))
            return best
        for k, m, p in ms:
            if k.endswith("-" + want + ".json"):
                if m is None:
                    raise ReaderError("snapshot %s is unreadable: %s" % (want, p))
                return m
        raise ReaderError("snapshot %s not found" % want)

    @staticmethod
    def _key_of(m):
        sec, _ = parse_time(m["time"])
        t = datetime.datetime.fromtimestamp(sec, datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        return "snapshots/%s-%s.json" % (t, m["id"])

    def catalogue(self, m):
        n = _int(m["items"])
        if "catalogue_objects" in m:
            if m.get("catalogue"):
                raise ReaderError("manifest has both an inline and a streamed catalogue")
            return self._streamed_catalogue(m, n)
        blob = age_decrypt(self.identity, base64.b64decode(m["catalogue"], validate=True))
        bound = (1 << 20) + n * (16 << 10)
        with gzip.GzipFile(fileobj=io.BytesIO(blob)) as g:
            js = g.read(bound + 1)
        if len(js) > bound:
            raise ReaderError("catalogue larger than its bound")
        cat = parse_json(js)
        items = cat["items"]
        if len(items) != n:
            raise ReaderError("catalogue holds %d items, manifest says %d" % (len(items), n))
        return items

    def _streamed_catalogue(self, m, n):
        # docs/FORMAT.md "Streamed catalogue": objects listed with size and SHA-256 in the MAC'd
        # manifest; each is age( u32be(len) || gzip(JSON array of items) ... ).
        items = []
        for co in m["catalogue_objects"]:
            ct = self.read(co["key"])
            if len(ct) != _int(co["size"]) or hashlib.sha256(ct).hexdigest() != co["sha256"]:
                raise ReaderError("catalogue object %s: size or SHA-256 differs from the manifest" % co["key"])
            pt = age_decrypt(self.identity, ct)
            got, off = 0, 0
            while off < len(pt):
                if off + 4 > len(pt):
                    raise ReaderError("catalogue object %s: truncated record" % co["key"])
                (ln,) = struct.unpack(">I", pt[off:off + 4])
                rec = pt[off + 4:off + 4 + ln]
                if len(rec) != ln:
                    raise ReaderError("catalogue object %s: truncated record" % co["key"])
                with gzip.GzipFile(fileobj=io.BytesIO(rec)) as g:
                    arr = parse_json(g.read(256 << 20))
                if not isinstance(arr, list):
                    raise ReaderError("catalogue object %s: a record is not a JSON array" % co["key"])
                items.extend(arr)
                got += len(arr)
                off += 4 + ln
            if got != _int(co["items"]):
                raise ReaderError("catalogue object %s holds %d items, manifest says %d" % (co["key"], got, _int(co["items"])))
            if co.get("fence"):
                self._check_fence(co, items[len(items) - got:])
        if len(items) != n:
            raise ReaderError("catalogue holds %d items, manifest says %d" % (len(items), n))
        return items

    def _check_fence(self, co, objs):
        # docs/FORMAT.md "Fences": the object's items are R2 objects of one source, keys strictly
        # ascending from first to last (UTF-8 keys: code point order is byte order).
        f = parse_json(age_decrypt(self.identity, base64.b64decode(co["fence"], validate=True)))
        keys = []
        for it in objs:
            if it.get("component") != f["component"] or it.get("source") != f["source"] or not isinstance(it.get("object"), dict):
                raise ReaderError("catalogue object %s holds an item outside its fence" % co["key"])
            keys.append(it["object"]["key"])
        if not keys or keys[0] != f["first"] or keys[-1] != f["last"] or any(a >= b for a, b in zip(keys, keys[1:])):
            raise ReaderError("catalogue object %s holds items outside the key range its manifest records" % co["key"])

    def segment_plain(self, m, seg_id):
        if seg_id in self._plain:
            return self._plain[seg_id]
        info = next((s for s in m["segments"] if s["id"] == seg_id), None)
        if info is None:
            raise ReaderError("segment %s is not in the manifest" % seg_id)
        ct = self.read(info["key"])
        if len(ct) != _int(info["size"]) or hashlib.sha256(ct).hexdigest() != info["sha256"]:
            raise ReaderError("segment %s: size or SHA-256 differs from the manifest" % seg_id)
        pt = age_decrypt(self.identity, ct)
        if len(pt) != _int(info["plain_size"]):
            raise ReaderError("segment %s: plaintext size differs" % seg_id)
        self._plain[seg_id] = pt
        return pt

    def _entry(self, m, item, c, n, want_default):
        """The bytes of one catalogue chunk: its frame's single tar entry, checked by name and size."""
        pt = self.segment_plain(m, c["segment"])
        off, ln = _int(c["offset"]), _int(c["length"])
        if off < 0 or ln <= 0 or off + ln > len(pt):
            raise ReaderError("%s: chunk beyond its segment" % item["name"])
        name, data = tar_entry(lz4_frames(pt[off:off + ln]))
        if c.get("id") is not None:  # FORMAT.md "Content-defined chunks"
            if not re.fullmatch(r"[0-9a-f]{32}", str(c["id"])):
                raise ReaderError("chunk %d of %s: invalid id" % (n, item["name"]))
            if c["segment"] not in {s["id"] for s in m["segments"]}:
                raise ReaderError("chunk %d of %s: segment not in the manifest" % (n, item["name"]))
            want = "chunks/" + c["id"]
        else:
            want = want_default
        if name != want:
            raise ReaderError("chunk %d of %s: tar entry is %r" % (n, item["name"], name))
        if len(data) != _int(c["size"]):
            raise ReaderError("chunk %d of %s: size %d, catalogue %d" % (n, item["name"], len(data), _int(c["size"])))
        return data

    def item_chunks(self, m, item):
        """The item's chunks: the catalogue's "chunks", or the entries of its list chunks ("lists",
        FORMAT.md "Chunk lists"), each list checked by its SHA-256 before it is parsed."""
        if "lists" not in item or item["lists"] is None:
            return item["chunks"]
        if item.get("chunks"):
            raise ReaderError("%s: both chunks and lists" % item["name"])
        out, total = [], 0
        for n, l in enumerate(item["lists"], 1):
            if _int(l["size"]) > 1 << 20:
                raise ReaderError("list %d of %s: too large" % (n, item["name"]))
            data = self._entry(m, item, l, n, None)
            if hashlib.sha256(data).hexdigest() != l.get("sha256"):
                raise ReaderError("list %d of %s: SHA-256 differs from the catalogue" % (n, item["name"]))
            for c in decode_list(data):
                total += c["size"]
                if total > _int(item["size"]):
                    raise ReaderError("%s: its lists hold more than its size" % item["name"])
                out.append(c)
        return out

    def item_bytes(self, m, item):
        check_item_name(item["name"])
        chunks = self.item_chunks(m, item)
        h = hashlib.sha256()
        parts = []
        for n, c in enumerate(chunks, 1):
            want = item["name"] if len(chunks) == 1 else "%s.part%06d" % (item["name"], n)
            data = self._entry(m, item, c, n, want)
            h.update(data)
            parts.append(data)
        data = b"".join(parts)
        if len(data) != _int(item["size"]) or h.hexdigest() != item["sha256"]:
            raise ReaderError("%s: size or SHA-256 differs from the catalogue" % item["name"])
        return data


def _uvarint(b, i):
    x = shift = 0
    while True:
        if i >= len(b) or shift > 63:
            raise ReaderError("chunk list: truncated varint")
        c = b[i]
        i += 1
        x |= (c & 0x7F) << shift
        if c < 0x80:
            return x, i
        shift += 7


def decode_list(b):
    """FORMAT.md "Chunk lists": "CFL1", u32be n, n ids, uvarint s, s segment ids, then per entry
    uvarint segment, zigzag varint gap, uvarint length, uvarint size."""
    if len(b) < 8 or b[:4] != b"CFL1":
        raise ReaderError("chunk list: bad header")
    (n,) = struct.unpack(">I", b[4:8])
    if n == 0 or 8 + 16 * n > len(b):
        raise ReaderError("chunk list: bad count")
    ids = [b[8 + 16 * k:24 + 16 * k].hex() for k in range(n)]
    i = 8 + 16 * n
    ns, i = _uvarint(b, i)
    if ns == 0 or ns > n or i + 16 * ns > len(b):
        raise ReaderError("chunk list: bad segment table")
    segs = [b[i + 16 * k:i + 16 * k + 16].hex() for k in range(ns)]
    i += 16 * ns
    out, prev, end = [], -1, 0
    for k in range(n):
        si, i = _uvarint(b, i)
        z, i = _uvarint(b, i)
        gap = (z >> 1) ^ -(z & 1)
        ln, i = _uvarint(b, i)
        size, i = _uvarint(b, i)
        if si >= ns or ln == 0:
            raise ReaderError("chunk list: entry %d out of range" % k)
        if si != prev:
            end = 0
        off = end + gap
        if off < 0:
            raise ReaderError("chunk list: entry %d out of range" % k)
        out.append({"segment": segs[si], "offset": off, "length": ln, "size": size, "id": ids[k]})
        prev, end = si, off + ln
    if i != len(b):
        raise ReaderError("chunk list: bytes after the last entry")
    return out


def verify_segments(repo, m, items):
    """FORMAT.md "Verification levels", whole segment: every segment's plaintext is LZ4 frames, each one
    tar entry, then one frame holding the 1024-byte end-of-archive marker and nothing after it; every
    catalogue chunk is exactly one of those frames; every item reads back with its size and SHA-256."""
    frames = {}
    for seg in m["segments"]:
        pt = repo.segment_plain(m, seg["id"])
        i = 0
        ended = False
        while i < len(pt):
            if ended:
                raise ReaderError("segment %s: data after the end-of-archive marker" % seg["id"])
            (magic,) = struct.unpack_from("<I", pt, i)
            if magic != LZ4_MAGIC:
                raise ReaderError("segment %s: no LZ4 frame at %d" % (seg["id"], i))
            out = bytearray()
            j = _lz4_frame(pt, i + 4, out)
            if bytes(out) == bytes(1024):
                ended = True
            else:
                name, _ = tar_entry(bytes(out))
                check_item_name(re.sub(r"\.part\d{6}$", "", name))
                frames[(seg["id"], i)] = (j - i, name)
            i = j
        if not ended:
            raise ReaderError("segment %s: no end-of-archive frame" % seg["id"])
    for it in items:
        for c in repo.item_chunks(m, it) + (it.get("lists") or []):
            f = frames.get((c["segment"], _int(c["offset"])))
            if f is None or f[0] != _int(c["length"]):
                raise ReaderError("%s: chunk %r is not one frame of its segment" % (it["name"], c))
        repo.item_bytes(m, it)
    return len(frames)


# ---------------------------------------------------------------------------------------------
# D1

def statements(text):
    """Split SQL text into complete statements (SQLite decides where one ends; trigger bodies hold ';')."""
    out, buf = [], ""
    for line in text.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf)
            buf = ""
    if buf.strip():
        out.append(buf)
    return out


def _first_words(stmt):
    return re.sub(r"\s+", " ", stmt.strip()).upper()


_IDENT = r'(?:"(?:[^"]|"")*"|`(?:[^`]|``)*`|\[[^\]]*\]|[A-Za-z_\x80-\U0010FFFF][\w$\x80-\U0010FFFF]*)'


def _unquote(ident):
    if ident[0] == '"':
        return ident[1:-1].replace('""', '"')
    if ident[0] == "`":
        return ident[1:-1].replace("``", "`")
    if ident[0] == "[":
        return ident[1:-1]
    return ident


def statement_table(stmt):
    """The table a schema statement is on (FORMAT.md "Partial restores": only those on a selected table
    are kept): an index's or trigger's table; None for anything else (views, sqlite_sequence)."""
    x = stmt.strip()
    m = re.match(r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?:IF\s+NOT\s+EXISTS\s+)?%s\s+ON\s+(%s)" % (_IDENT, _IDENT), x, re.I)
    if m:
        return _unquote(m.group(1))
    m = re.match(r"CREATE\s+(?:TEMP\w*\s+)?TRIGGER\s+(?:IF\s+NOT\s+EXISTS\s+)?%s\s+.*?\bON\s+(%s)" % (_IDENT, _IDENT), x, re.I | re.S)
    if m:
        return _unquote(m.group(1))
    return None  # views, and sqlite_sequence statements: a partial restore keeps none


def replay_stream(items):
    """The SQL stream of FORMAT.md "D1 replay order"."""
    tables = [it for it in items if it["kind"] == "table"]
    order = []  # table names (case-insensitively unique), in catalogue order of first item
    by_name = {}
    for it in tables:
        k = it["table"].lower()
        if k not in by_name:
            by_name[k] = []
            order.append(k)
        by_name[k].append(it)
    refs = {k: {r.lower() for it in by_name[k] for r in it.get("references") or []} & set(by_name) - {k} for k in order}
    placed, seq = set(), []

    def place(k, stack):
        if k in placed or k in stack:
            return  # a reference cycle keeps catalogue order
        stack.add(k)
        for r in sorted(refs[k], key=order.index):
            place(r, stack)
        stack.discard(k)
        if k not in placed:
            placed.add(k)
            seq.append(k)

    for k in order:
        place(k, set())
    return [(k, by_name[k]) for k in seq]


def rewrite(text, nul=True, words=True):
    """FORMAT.md "D1 replay order", step 3 rewrites: a '…' literal holding NUL becomes
    CAST(X'<hex>' AS TEXT); the bare words Infinity and NaN outside quotes become 9e999 and NULL."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == "'":
            j = i + 1
            while True:
                k = text.find("'", j)
                if k < 0:
                    k = n - 1
                    break
                if k + 1 < n and text[k + 1] == "'":
                    j = k + 2
                    continue
                break
            lit = text[i:k + 1]
            if nul and "\x00" in lit:
                val = lit[1:-1].replace("''", "'")
                out.append("CAST(X'%s' AS TEXT)" % val.encode("utf-8", "surrogateescape").hex())
            else:
                out.append(lit)
            i = k + 1
        elif c in '"`':
            j = i + 1
            while True:
                k = text.find(c, j)
                if k < 0:
                    k = n - 1
                    break
                if k + 1 < n and text[k + 1] == c:
                    j = k + 2
                    continue
                break
            out.append(text[i:k + 1])
            i = k + 1
        elif c == "[":
            k = text.find("]", i)
            k = n - 1 if k < 0 else k
            out.append(text[i:k + 1])
            i = k + 1
        elif text.startswith("--", i):
            k = text.find("\n", i)
            k = n if k < 0 else k
            out.append(text[i:k])
            i = k
        elif text.startswith("/*", i):
            k = text.find("*/", i + 2)
            k = n if k < 0 else k + 2
            out.append(text[i:k])
            i = k
        elif c.isalpha() or c == "_":
            j = i
            while j < n and (text[j].isalnum() or text[j] in "_$"):
                j += 1
            w = text[i:j]
            if words and w == "Infinity":
                w = "9e999"
            elif words and w == "NaN":
                w = "NULL"
            out.append(w)
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def unknown_kinds(items, known):
    bad = sorted({it["kind"] for it in items} - known)
    if bad:
        raise ReaderError("unknown item kind(s) %s: refusing to restore this source" % ", ".join(bad))


# FORMAT.md "Statements a D1 item may contain": the classifier, then SQLite's own guards.
_SKIP = re.compile(r"(BEGIN|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE)\b", re.I)
_ALLOWED = [
    re.compile(r"PRAGMA\s+(defer_foreign_keys|foreign_keys)\s*(=|\()", re.I),
    re.compile(r"CREATE\s+(TABLE|(UNIQUE\s+)?INDEX|TRIGGER|VIEW)\b", re.I),
    re.compile(r"CREATE\s+VIRTUAL\s+TABLE\b", re.I),
    re.compile(r"(INSERT|REPLACE|DELETE\s+FROM|UPDATE)\b", re.I),
    re.compile(r"ANALYZE\b", re.I),
    re.compile(r'DROP\s+TABLE\s+("?)cfbackup_stage\1\s*;?\s*$', re.I),
]
_BAD_FUNCS = {"load_extension", "fts3_tokenizer", "readfile", "writefile", "edit"}
_VTAB_MODULES = {"fts5", "fts4", "fts3", "rtree", "rtree_i32", "geopoly"}


def _strip_comments(stmt):
    return re.sub(r"^(\s|--[^\n]*\n|/\*.*?\*/)*", "", stmt, flags=re.S)


def classify(stmt, n):
    """None to skip the statement, else the statement; raise on anything a D1 dump cannot contain."""
    x = _strip_comments(stmt)
    if not x.strip() or x.strip() == ";":
        return None
    if _SKIP.match(x):
        return None
    if not any(r.match(x) for r in _ALLOWED):
        raise ReaderError("statement %d is not allowed in a D1 item: %.60r" % (n, x))
    if re.match(r"CREATE\s+(TEMP|TEMPORARY)\b", x, re.I):
        raise ReaderError("statement %d creates a TEMP object" % n)
    low = x.lower()
    if any(re.search(r"\b%s\s*\(" % f, low) for f in _BAD_FUNCS):
        raise ReaderError("statement %d calls a refused function" % n)
    return stmt


def _authorizer(action, a1, a2, dbname, trigger):
    if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
        return sqlite3.SQLITE_DENY
    if dbname not in (None, "main"):
        return sqlite3.SQLITE_DENY
    # FTS5 reads PRAGMA data_version itself when it creates or opens a table.
    if action == sqlite3.SQLITE_PRAGMA and (a1 or "").lower() not in ("defer_foreign_keys", "foreign_keys", "data_version"):
        return sqlite3.SQLITE_DENY
    if action in (sqlite3.SQLITE_CREATE_TEMP_INDEX, sqlite3.SQLITE_CREATE_TEMP_TABLE,
                  sqlite3.SQLITE_CREATE_TEMP_TRIGGER, sqlite3.SQLITE_CREATE_TEMP_VIEW):
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_CREATE_VTABLE and (a2 or "").lower() not in _VTAB_MODULES:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (a2 or "").lower() in _BAD_FUNCS:
        return sqlite3.SQLITE_DENY
    if action in (sqlite3.SQLITE_READ, sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE) and \
            (a1 or "").lower() == "sqlite_dbpage":
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def load_sql(to_file, text):
    """Create to_file (0600, must not exist) and load the SQL stream into it in one transaction, foreign
    keys off, under the classifier and the authorizer; on failure the file is removed."""
    fd = os.open(to_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    db = sqlite3.connect(to_file, isolation_level=None)
    try:
        if hasattr(db, "setlimit"):
            db.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        if hasattr(db, "setconfig"):  # Python ≥ 3.12
            db.setconfig(sqlite3.SQLITE_DBCONFIG_DEFENSIVE, True)
        db.execute("PRAGMA foreign_keys=OFF")
        db.execute("BEGIN")
        db.set_authorizer(_authorizer)
        for n, s in enumerate(statements(text), 1):
            if classify(s, n) is not None:
                db.execute(s)
        db.set_authorizer(None)
        db.execute("COMMIT")
    except BaseException:
        db.close()
        os.unlink(to_file)
        raise
    return db


def restore_d1(repo, m, items, to_file, tables=None):
    unknown_kinds(items, {"table", "rows", "fixup", "schema", "virtual"})
    sel = None
    if tables:
        have = {it["table"] for it in items if "table" in it}
        missing = sorted(set(tables) - have)
        if missing:
            raise ReaderError("no table(s) %s in the snapshot" % ", ".join(missing))
        items = [it for it in items if it["kind"] == "schema" or it["table"] in tables]
        sel = {t.lower() for t in tables}  # a statement may spell the name in another case
    if os.path.exists(to_file):
        raise ReaderError("%s exists" % to_file)

    def text_of(it):
        return repo.item_bytes(m, it).decode("utf-8")

    # FORMAT.md "D1 replay order": 1 PRAGMA; 2 every table's CREATE TABLE; 3 rows (table items' INSERTs
    # unless the table has a rows item, then rows items); 4 fixups but sqlite_sequence's; 5 schema
    # (no PRAGMAs), then sqlite_sequence's fixup; 6 virtual tables.
    has_rows = {it["table"].lower() for it in items if it["kind"] == "rows"}
    creates, rows = [], []
    for k, its in replay_stream([it for it in items if it["kind"] == "table"]):
        for it in its:
            stmts = statements(rewrite(text_of(it), words=False))
            i = 0
            while i < len(stmts) and _first_words(_strip_comments(stmts[i])).startswith("CREATE TABLE"):
                creates.append(stmts[i])
                i += 1
            if k not in has_rows:
                rows.extend(rewrite(x, nul=False) for x in stmts[i:])
    for it in items:
        if it["kind"] == "rows":
            rows.extend(rewrite(x, nul=False) for x in statements(rewrite(text_of(it), words=False)))
    parts = ["PRAGMA defer_foreign_keys=TRUE;\n"]
    parts += [x + "\n" for x in creates]
    parts += [x + "\n" for x in rows]
    seq_fixups = []
    for it in items:
        if it["kind"] == "fixup":
            if it["table"].lower() == "sqlite_sequence":
                seq_fixups.append(it)
            else:
                parts.append(text_of(it) + "\n")
    for it in items:
        if it["kind"] == "schema":
            keep = [x for x in statements(text_of(it)) if not _first_words(_strip_comments(x)).startswith("PRAGMA")]
            if sel is not None:
                keep = [x for x in keep if (statement_table(x) or "").lower() in sel]
            parts += [x + "\n" for x in keep]
    for it in seq_fixups:
        parts.append(text_of(it) + "\n")
    for it in items:
        if it["kind"] == "virtual":
            parts.append(text_of(it) + "\n")
    db = load_sql(to_file, "".join(parts))
    try:
        ic = db.execute("PRAGMA integrity_check").fetchall()
        if ic != [("ok",)]:
            raise ReaderError("integrity_check: %r" % ic)
        fk = db.execute("PRAGMA foreign_key_check").fetchall()
        if fk:
            raise ReaderError("foreign_key_check: %r" % fk[:5])
        want, exact = {}, {}
        for it in items:
            if it["kind"] == "table":
                want[it["table"]] = want.get(it["table"], 0) + _int(it["rows"])
            elif it["kind"] == "rows":
                exact[it["table"]] = exact.get(it["table"], 0) + _int(it["rows"])
        want.update(exact)
        for t, n in want.items():
            got = db.execute('SELECT count(*) FROM "%s"' % t.replace('"', '""')).fetchone()[0]
            if got != n:
                raise ReaderError("table %s: %d rows, catalogue says %d" % (t, got, n))
    except BaseException:
        db.close()
        os.unlink(to_file)
        raise
    db.close()


# ---------------------------------------------------------------------------------------------
# R2

def _esc_element(b):
    out = []
    for ch in b.decode("utf-8", "surrogateescape"):
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:  # invalid UTF-8 byte
            out.append("%%%02X" % (o - 0xDC00))
        elif ch in "%\\" or o < 0x20 or o == 0x7F:
            out.append("%%%02X" % o)
        else:
            out.append(ch)
    s = "".join(out)
    if s == "":
        return "%"
    if s == ".":
        return "%2E"
    if s == "..":
        return "%2E%2E"
    return s


def _cut(elem):
    b = elem.encode("utf-8", "surrogateescape")
    if len(b) <= 200:
        return elem
    pieces = []
    while len(b) > 200:
        cut = 200
        while cut > 0 and (b[cut] & 0xC0) == 0x80:
            cut -= 1
        pieces.append(b[:cut].decode())
        b = b[cut:]
    pieces.append(b.decode())
    return "%+/".join(pieces)


def r2_paths(keys):
    """Map every key of a bucket to its path (FORMAT.md, "R2 items")."""
    base = {}
    for k in keys:
        kb = k.encode("utf-8", "surrogateescape") if isinstance(k, str) else k
        base[k] = "/".join(_cut(_esc_element(e)) for e in kb.split(b"/"))
    prefixes = set()
    for p in base.values():
        els = p.split("/")
        for i in range(1, len(els)):
            prefixes.add("/".join(els[:i]))
    return {k: (p + "%~" if p in prefixes else p) for k, p in base.items()}


def _safe_open(root, rel):
    """Create root/rel for writing without following a symlink in any component."""
    parts = rel.split("/")
    dfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for p in parts[:-1]:
            try:
                os.mkdir(p, 0o700, dir_fd=dfd)
            except FileExistsError:
                pass
            nfd = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dfd)
            os.close(dfd)
            dfd = nfd
        fd = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dfd)
    finally:
        os.close(dfd)
    return os.fdopen(fd, "wb")


def restore_r2(repo, m, items, to_dir):
    unknown_kinds(items, {"object"})
    os.makedirs(to_dir, exist_ok=True)
    paths = r2_paths([it["object"]["key"] for it in items])
    records = []
    for it in items:
        obj = it["object"]
        data = repo.item_bytes(m, it)
        p = paths[obj["key"]]
        with _safe_open(to_dir, p) as f:
            f.write(data)
        rec = {"path": p, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for k in ("key", "etag", "last_modified", "content_type", "cache_control", "content_encoding",
                  "content_disposition", "content_language", "expires", "metadata"):
            if k in obj:
                rec[k] = obj[k]
        records.append(rec)
    with _safe_open(to_dir, "%cfreader-objects.json") as f:
        f.write((canonical(records) + "\n").encode())


# ---------------------------------------------------------------------------------------------
# Durable Objects

def check_do_item(it, data):
    """FORMAT.md "Durable Object items" / DURABLE_OBJECTS.md: a cfbackup-do/2 (or /1) header first, an
    end line last whose counts match the kv/table/row/schema/seq lines, and kv + rows = the catalogue's
    rows."""
    lines = [json.loads(l) for l in data.decode("utf-8").splitlines() if l.strip()]
    if not lines or lines[0].get("t") != "header" or lines[0].get("format") not in ("cfbackup-do/1", "cfbackup-do/2"):
        raise ReaderError("%s: no cfbackup-do/2 or cfbackup-do/1 header" % it["name"])
    if lines[0].get("id") != it.get("object_id"):
        raise ReaderError("%s: header id is not the item's object_id" % it["name"])
    if lines[-1].get("t") != "end":
        raise ReaderError("%s: no end line" % it["name"])
    n = {"kv": 0, "table": 0, "row": 0, "schema": 0, "seq": 0}
    for l in lines[1:-1]:
        t = l.get("t")
        if t not in n:
            raise ReaderError("%s: unexpected line type %r" % (it["name"], t))
        n[t] += 1
    end = lines[-1]
    if (end.get("kv"), end.get("tables"), end.get("rows"), end.get("schema"), end.get("sequences", 0)) != (n["kv"], n["table"], n["row"], n["schema"], n["seq"]):
        raise ReaderError("%s: end line counts differ from its lines" % it["name"])
    if n["kv"] + n["row"] != _int(it["rows"]):
        raise ReaderError("%s: kv + rows = %d, catalogue says %d" % (it["name"], n["kv"] + n["row"], _int(it["rows"])))


def check_config_item(it, data):
    """FORMAT.md "Configuration items": one JSON document, format 1, of the item's kind, final newline."""
    v = parse_json(data)
    want = {"inventory": "inventory", "script": "workers_script"}.get(it["kind"])
    if want is None:
        raise ReaderError("%s: unknown config item kind %r" % (it["name"], it["kind"]))
    if _int(v.get("format")) != 1 or v.get("kind") != want or not data.endswith(b"\n"):
        raise ReaderError("%s: not a format 1 %s document" % (it["name"], want))
    if want == "workers_script" and v.get("name") != it.get("table"):
        raise ReaderError("%s: script name %r, catalogue says %r" % (it["name"], v.get("name"), it.get("table")))


# ---------------------------------------------------------------------------------------------
# Commands

def select_items(items, component, source=None, sources=()):
    out = [it for it in items if it.get("component") == component]
    if source:
        ids = {s["id"] for s in sources if s.get("component") == component and source in (s["id"], s.get("name"))}
        if not ids:
            raise ReaderError("no %s source %s in the snapshot" % (component, source))
        out = [it for it in out if it["source"] in ids]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(prog="cfreader.py")
    ap.add_argument("--repo")
    ap.add_argument("--identity")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("lz4cat").add_argument("file")
    sub.add_parser("list")
    sub.add_parser("catalogue").add_argument("snapshot", nargs="?", default="latest")
    sub.add_parser("verify").add_argument("snapshot", nargs="?", default="latest")
    for name in ("restore-d1", "restore-r2", "restore-config", "restore-do", "dump-items"):
        p = sub.add_parser(name)
        p.add_argument("snapshot", nargs="?", default="latest")
        if name == "restore-d1":
            p.add_argument("--to-file", required=True)
            p.add_argument("--database")
            p.add_argument("--table", action="append", help="restore only this table (repeatable)")
        else:
            p.add_argument("--to-dir", required=True)
        if name == "restore-r2":
            p.add_argument("--bucket")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "lz4cat":  # decode a file of LZ4 frames (the decoder's own test)
            with open(a.file, "rb") as f:
                sys.stdout.buffer.write(lz4_frames(f.read()))
            return 0
        if not a.repo or not a.identity:
            ap.error("--repo and --identity are required")
        repo = Repo(a.repo, a.identity)
        if a.cmd == "list":
            for k, m, p in repo.manifests():
                if m is None:
                    print("%s\tUNREADABLE\t%s" % (k, p))
                else:
                    print("%s\t%s\t%s" % (m["id"], m["time"], ",".join(m.get("components", []))))
            return 0
        m = repo.snapshot(a.snapshot)
        items = repo.catalogue(m)
        if a.cmd == "catalogue":
            print(canonical({"items": items}))
            return 0
        if a.cmd == "verify":
            n = verify_segments(repo, m, items)
            print("snapshot %s: %d segment(s), %d tar entries, %d item(s) OK" % (m["id"], len(m["segments"]), n, len(items)))
            return 0
        if a.cmd == "restore-d1":
            d1 = select_items(items, "d1", a.database, m.get("sources", []))
            srcs = {it["source"] for it in d1}
            if len(srcs) != 1:
                raise ReaderError("snapshot holds %d D1 databases; name one with --database" % len(srcs))
            restore_d1(repo, m, d1, a.to_file, a.table)
        elif a.cmd == "restore-r2":
            r2 = select_items(items, "r2", a.bucket, m.get("sources", []))
            if len({it["source"] for it in r2}) != 1:
                raise ReaderError("name one bucket with --bucket")
            restore_r2(repo, m, r2, a.to_dir)
        else:
            comp = {"restore-config": "config", "restore-do": "do"}.get(a.cmd)
            sel = [it for it in items if comp is None or it.get("component") == comp]
            if comp == "do":
                unknown_kinds(sel, {"object"})
            for it in sel:
                data = repo.item_bytes(m, it)
                if it.get("component") == "do":
                    check_do_item(it, data)
                elif it.get("component") == "config":
                    check_config_item(it, data)
                rel = it["name"]
                if comp == "config":
                    rel = rel[len("config/"):]
                with _safe_open_dirs(a.to_dir, rel) as f:
                    f.write(data)
        return 0
    except (ReaderError, OSError, ValueError, KeyError, sqlite3.Error) as e:
        print("cfreader: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        return 1


def _safe_open_dirs(root, rel):
    check_item_name(rel)
    os.makedirs(root, exist_ok=True)
    return _safe_open(root, rel)


if __name__ == "__main__":
    sys.exit(main())
