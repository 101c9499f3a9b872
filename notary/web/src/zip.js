// The proof bundle's zip container, read as strictly as certmail/bundle/zipio.py
// (PKWARE APPNOTE.TXT 6.3, the subset certmail writes): the same layout accepted,
// everything else refused with the same words.

import { crc32, VerificationError } from "./bytes.js";
import { checkName, MAX_BUNDLE_SIZE, MAX_MEMBERS, sizeCap } from "./layout.js";

const LOCAL = 30;
const CENTRAL = 46;
const END = 22;

function unreadable(why) {
  return new VerificationError(`the bundle is not a readable zip file (${why})`);
}

function u16(b, at) {
  return b[at] | (b[at + 1] << 8);
}
function u32(b, at) {
  return (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16)) + b[at + 3] * 0x1000000;
}

function directory(buf) {
  const n = buf.length;
  if (n < END) throw unreadable("no end of central directory record");
  const e = n - END;
  if (u32(buf, e) !== 0x06054b50) throw unreadable("no end of central directory record at the end");
  const [disk, diskCd, count, total] = [u16(buf, e + 4), u16(buf, e + 6), u16(buf, e + 8), u16(buf, e + 10)];
  const cdSize = u32(buf, e + 12);
  const cdOff = u32(buf, e + 16);
  if (disk || diskCd || count !== total) throw unreadable("multi-disk or zip64 archive");
  if (u16(buf, e + 20)) throw unreadable("archive comment");
  if (count > MAX_MEMBERS) throw new VerificationError("the bundle has too many members");
  if (cdOff + cdSize !== e) throw unreadable("the central directory is not where the end record says");
  const entries = [];
  let at = cdOff;
  for (let i = 0; i < count; i++) {
    if (at + CENTRAL > e) throw unreadable("truncated central directory");
    const nlen = u16(buf, at + 28);
    const xlen = u16(buf, at + 30);
    const clen = u16(buf, at + 32);
    const diskStart = u16(buf, at + 34);
    if (u32(buf, at) !== 0x02014b50 || diskStart || at + CENTRAL + nlen > e) {
      throw unreadable("bad central directory entry");
    }
    if (xlen || clen) throw unreadable("extra fields or file comments");
    entries.push({
      raw: buf.subarray(at + CENTRAL, at + CENTRAL + nlen),
      // version needed .. name length, as the local header must repeat them
      local: buf.subarray(at + 6, at + 30),
      flags: u16(buf, at + 8),
      method: u16(buf, at + 10),
      crc: u32(buf, at + 16),
      csize: u32(buf, at + 20),
      usize: u32(buf, at + 24),
      offset: u32(buf, at + 42),
    });
    at += CENTRAL + nlen;
  }
  if (at !== e) throw unreadable("data after the central directory");
  return [cdOff, entries];
}

const CP437_HIGH =
  "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u00a0";

function decodeName(raw, flags) {
  if (flags & 0x800) return new TextDecoder("utf-8").decode(raw);
  let s = "";
  for (const b of raw) s += b < 0x80 ? String.fromCharCode(b) : CP437_HIGH[b - 0x80];
  return s;
}

function sameLocal(buf, pos, e) {
  // signature, then version needed .. name length, then extra length 0
  if (u32(buf, pos) !== 0x04034b50) return false;
  for (let i = 0; i < 24; i++) if (buf[pos + 4 + i] !== e.local[i]) return false;
  return u16(buf, pos + 28) === 0;
}

async function inflate(body, method, usize, name) {
  if (method === 0) {
    if (body.length !== usize) throw unreadable(`${name} is stored with two different sizes`);
    return body;
  }
  const out = new Uint8Array(usize);
  let got = 0;
  const ds = new DecompressionStream("deflate-raw");
  const writer = ds.writable.getWriter();
  writer.write(body).catch(() => {});
  writer.close().catch(() => {});
  const reader = ds.readable.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (got + value.length > usize) {
        reader.cancel().catch(() => {});
        throw unreadable(`${name} does not inflate to its stated size`);
      }
      out.set(value, got);
      got += value.length;
    }
  } catch (err) {
    if (err instanceof VerificationError) throw err;
    throw unreadable(`${name} does not inflate to its stated size`);
  }
  if (got !== usize) throw unreadable(`${name} does not inflate to its stated size`);
  return out;
}

/** The members of a bundle zip, by name in zip order (a Map); VerificationError else. */
export async function readMembers(buf) {
  if (buf.length > MAX_BUNDLE_SIZE) throw new VerificationError("the bundle is too large");
  const [cdOff, entries] = directory(buf);
  const out = new Map();
  let pos = 0;
  let total = 0;
  for (const e of entries) {
    const name = decodeName(e.raw, e.flags);
    checkName(name);
    if (out.has(name)) throw new VerificationError(`the bundle holds ${name} twice`);
    if (e.flags & 1) throw new VerificationError(`${name} is encrypted`);
    if (e.flags) throw unreadable(`${name} has general-purpose flags 0x${e.flags.toString(16).padStart(4, "0")}`);
    if (e.method !== 0 && e.method !== 8) throw unreadable(`${name} uses compression method ${e.method}`);
    if (e.usize > sizeCap(name)) throw new VerificationError(`${name} is too large`);
    const start = pos + LOCAL + e.raw.length;
    if (e.offset !== pos || start > cdOff || !sameLocal(buf, pos, e)) {
      throw unreadable(`the local header of ${name} is not where or what its central entry says`);
    }
    const named = buf.subarray(pos + LOCAL, start);
    if (named.some((b, i) => b !== e.raw[i])) {
      throw unreadable(`the local header of ${name} names another member`);
    }
    pos = start + e.csize;
    if (pos > cdOff) throw unreadable(`${name} runs into the central directory`);
    const data = await inflate(buf.subarray(start, pos), e.method, e.usize, name);
    if (crc32(data) !== e.crc) throw unreadable(`bad CRC-32 for ${name}`);
    total += e.usize;
    if (total > MAX_BUNDLE_SIZE) throw new VerificationError("the bundle's contents are too large");
    out.set(name, data);
  }
  if (pos !== cdOff) throw unreadable("data between the members and the central directory");
  return out;
}
