// A strict DER reader (ITU-T X.690 §10): definite, minimal lengths; every constructed
// value exactly filled by its children. The token and certificate checks read their
// structures with it, so a byte that changes the encoding without changing the value
// is refused as the Python verifier refuses it.

import { VerificationError } from "./bytes.js";

export class DerError extends VerificationError {}

/** The TLV at `at` of `buf`: {tag, constructed, start, content (subarray), end, bytes}. */
export function readTlv(buf, at = 0) {
  if (at + 2 > buf.length) throw new DerError("truncated DER");
  const tag = buf[at];
  if ((tag & 0x1f) === 0x1f) throw new DerError("high tag numbers are not used here");
  let len = buf[at + 1];
  let p = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new DerError("indefinite or oversized DER length");
    if (p + n > buf.length) throw new DerError("truncated DER");
    if (buf[p] === 0) throw new DerError("non-minimal DER length");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[p + i];
    if (len < 0x80) throw new DerError("non-minimal DER length");
    p += n;
  }
  if (p + len > buf.length) throw new DerError("truncated DER");
  return {
    tag,
    constructed: (tag & 0x20) !== 0,
    start: at,
    content: buf.subarray(p, p + len),
    end: p + len,
    bytes: buf.subarray(at, p + len),
  };
}

/** The one TLV that `buf` is, with nothing after it. */
export function readOne(buf) {
  const t = readTlv(buf, 0);
  if (t.end !== buf.length) throw new DerError("data after the DER value");
  return t;
}

/** The children of a constructed TLV. */
export function children(t) {
  if (!t.constructed) throw new DerError("expected a constructed DER value");
  const out = [];
  let at = 0;
  while (at < t.content.length) {
    const c = readTlv(t.content, at);
    out.push(c);
    at = c.end;
  }
  return out;
}

/** Walk every value: constructed ones must be exactly filled (strict DER throughout),
 * except inside OCTET and BIT STRINGs, which are opaque here. */
export function checkStrict(t, depth = 0) {
  if (depth > 40) throw new DerError("DER nested too deeply");
  if (t.constructed) for (const c of children(t)) checkStrict(c, depth + 1);
  else if (t.tag === 0x01 && (t.content.length !== 1 || (t.content[0] !== 0 && t.content[0] !== 0xff))) {
    throw new DerError("non-DER BOOLEAN");
  } else if (t.tag === 0x02) {
    const c = t.content;
    if (!c.length || (c.length > 1 && ((c[0] === 0 && !(c[1] & 0x80)) || (c[0] === 0xff && c[1] & 0x80)))) {
      throw new DerError("non-minimal INTEGER");
    }
  }
}

export function expect(t, tag, what) {
  if (t === undefined || t.tag !== tag) throw new DerError(`malformed ${what}`);
  return t;
}

export function oid(t) {
  expect(t, 0x06, "object identifier");
  const c = t.content;
  if (!c.length || c[c.length - 1] & 0x80) throw new DerError("malformed object identifier");
  const arcs = [];
  let v = 0n;
  for (let i = 0; i < c.length; i++) {
    if (v === 0n && c[i] === 0x80) throw new DerError("malformed object identifier");
    v = (v << 7n) | BigInt(c[i] & 0x7f);
    if (!(c[i] & 0x80)) {
      arcs.push(v);
      v = 0n;
    }
  }
  const first = arcs[0] < 80n ? arcs[0] / 40n : 2n;
  return [first, arcs[0] - first * 40n, ...arcs.slice(1)].join(".");
}

export function integer(t) {
  expect(t, 0x02, "integer");
  let v = 0n;
  for (const b of t.content) v = (v << 8n) | BigInt(b);
  if (t.content[0] & 0x80) v -= 1n << BigInt(8 * t.content.length);
  return v;
}

/** GeneralizedTime (RFC 5280 §4.1.2.5.2 and RFC 3161's fractions) or UTCTime, as ms. */
export function time(t) {
  const s = String.fromCharCode(...t.content);
  let m;
  if (t.tag === 0x18 && (m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\.\d*[1-9])?Z$/.exec(s))) {
    const ms = m[7] ? Math.floor(Number("0" + m[7]) * 1000) : 0;
    return { ms: Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]) + ms, micro: m[7] || "" };
  }
  if (t.tag === 0x17 && (m = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s))) {
    const y = +m[1] < 50 ? 2000 + +m[1] : 1900 + +m[1];
    return { ms: Date.UTC(y, +m[2] - 1, +m[3], +m[4], +m[5], +m[6]), micro: "" };
  }
  throw new DerError("malformed time");
}
