// Bytes, text and hashes: the helpers every check uses (the browser port of
// keys/encoding.py and the few stdlib functions the Python verifier relies on).

export class VerificationError extends Error {
  constructor(message) {
    super(message);
    this.name = "VerificationError";
  }
}

/** The error for an item that did not verify (certmail/bundle/layout.py `fail`). */
export function fail(what) {
  return new VerificationError(`${what}; the bundle may have been modified maliciously`);
}

const UTF8 = new TextDecoder("utf-8", { fatal: true });
export const encoder = new TextEncoder();

/** Strict UTF-8 decoding; null when the bytes are not UTF-8. */
export function utf8(bytes) {
  try {
    return UTF8.decode(bytes);
  } catch {
    return null;
  }
}

/** ASCII decoding; null for any byte >= 0x80. */
export function ascii(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] >= 0x80) return null;
    s += String.fromCharCode(bytes[i]);
  }
  return s;
}

export function hex(bytes) {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

export function equal(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function b64encode(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Standard base64, its canonical encoding only (keys/encoding.py b64decode_canonical). */
export function b64decodeCanonical(text) {
  if (typeof text !== "string" || !B64.test(text) || text.length % 4 !== 0) {
    throw new VerificationError("bad base64");
  }
  let raw;
  try {
    raw = atob(text);
  } catch {
    throw new VerificationError("bad base64");
  }
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  if (b64encode(out) !== text) throw new VerificationError("non-canonical base64");
  return out;
}

export async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

export async function digest(name, bytes) {
  const algo = { sha1: "SHA-1", sha256: "SHA-256", sha384: "SHA-384", sha512: "SHA-512" }[name];
  if (!algo) return null;
  return new Uint8Array(await crypto.subtle.digest(algo, bytes));
}

let crcTable = null;

/** CRC-32 (ISO 3309, as zlib.crc32). */
export function crc32(bytes) {
  if (crcTable === null) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = crcTable[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Python's repr() of a str (the quoting the Python verifier's messages use). */
export function pyRepr(s) {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    const c = ch.codePointAt(0);
    if (ch === "\\") out += "\\\\";
    else if (ch === quote) out += "\\" + ch;
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (c < 0x20 || c === 0x7f) out += "\\x" + c.toString(16).padStart(2, "0");
    else out += ch;
  }
  return out + quote;
}

/** Python's str.encode("unicode_escape").decode("ascii"). */
export function unicodeEscape(s) {
  let out = "";
  for (const ch of s) {
    const c = ch.codePointAt(0);
    if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (c < 0x20 || (c >= 0x7f && c < 0x100)) out += "\\x" + c.toString(16).padStart(2, "0");
    else if (c >= 0x10000) out += "\\U" + c.toString(16).padStart(8, "0");
    else if (c >= 0x100) out += "\\u" + c.toString(16).padStart(4, "0");
    else out += ch;
  }
  return out;
}
