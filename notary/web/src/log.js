// The notary's signed formats, checked as notary/{note,checkpoint,tlogproof,receipt,
// evidence}.py check them: C2SP signed-note (Ed25519 through WebCrypto), C2SP
// tlog-checkpoint and tlog-proof, certmail receipts (DESIGN §4.3) and evidence
// statements (DESIGN §4.2, RFC 8785 canonical JSON).

import {
  ascii,
  b64decodeCanonical,
  b64encode,
  concat,
  encoder,
  equal,
  hex,
  pyRepr,
  sha256,
  utf8,
  VerificationError,
} from "./bytes.js";
import { leafHash, verifyInclusion } from "./merkle.js";

const err = (m) => new VerificationError(m);
const MAX_NOTE_SIZE = 1 << 20;
const MAX_PROOF_SIZE = MAX_NOTE_SIZE + 64 * 1024;
const MAX_STATEMENT_SIZE = 64 * 1024;
const MAX_TST_SIZE = 64 * 1024;
const MAX_TREE_SIZE = 2n ** 63n - 1n;
const CONTROL = /[\x00-\x09\x0b-\x1f]/;
const DASH = "\u2014 ";

export const EVENTS = new Set([
  "SubmissionAcceptance",
  "SubmissionRejection",
  "RelayToNonERDS",
  "RelayToNonERDSFailure",
  "ContentHandover",
  "ContentAccessTracking",
  "VirusDetected",
]);

function validKeyName(name) {
  return Boolean(name) && !name.includes("+") && !/[\s\x1c-\x1f]/u.test(name);
}

async function keyId(name, pub) {
  return (await sha256(concat(encoder.encode(name + "\n"), new Uint8Array([1]), pub))).subarray(0, 4);
}

/** An Ed25519 signed-note verifier key (notary/note.py Verifier). */
export class Verifier {
  static async fromVkey(text) {
    const parts = text.split("+");
    const bad = (why) => err(`malformed verifier key: ${why}`);
    if (parts.length < 3) throw bad("expected <name>+<key id>+<key>");
    const [name, idHex] = parts;
    const key64 = parts.slice(2).join("+");
    if (!validKeyName(name)) throw bad("invalid key name");
    if (!/^[0-9a-f]{8}$/.test(idHex)) throw bad("key id must be 8 lowercase hex digits");
    let raw;
    try {
      raw = b64decodeCanonical(key64);
    } catch (e) {
      throw bad(e.message);
    }
    if (raw.length !== 33 || raw[0] !== 1) throw bad("not an Ed25519 key (0x01 || 32 bytes)");
    const v = new Verifier();
    v.name = name;
    v.publicKey = raw.subarray(1);
    v.keyId = await keyId(name, v.publicKey);
    if (hex(v.keyId) !== idHex) throw bad("key id does not match the key");
    v.key = await crypto.subtle.importKey("raw", v.publicKey, { name: "Ed25519" }, false, ["verify"]);
    return v;
  }

  vkey() {
    return `${this.name}+${hex(this.keyId)}+${b64encode(concat(new Uint8Array([1]), this.publicKey))}`;
  }

  equals(other) {
    return this.name === other.name && equal(this.publicKey, other.publicKey);
  }

  async verify(text, signature) {
    const ok = await crypto.subtle.verify({ name: "Ed25519" }, this.key, signature, text);
    if (!ok) throw err(`invalid signature by ${this.name}+${hex(this.keyId)}`);
  }
}

/** Parse a signed note strictly, without verifying it (notary/note.py parse_note). */
export function parseNote(data) {
  if (data.length > MAX_NOTE_SIZE) throw err("note too large");
  const s = utf8(data);
  if (s === null) throw err("note is not valid UTF-8");
  if (CONTROL.test(s)) throw err("note contains a control character");
  const split = s.lastIndexOf("\n\n");
  if (split < 0) throw err("note has no blank line before its signatures");
  const text = s.slice(0, split + 1);
  const block = s.slice(split + 2);
  if (!block || !block.endsWith("\n")) throw err("note has no signatures or does not end in a newline");
  const lines = block.slice(0, -1).split("\n");
  if (lines.length > 100) throw err("note has too many signatures");
  const sigs = lines.map((line) => {
    if (!line.startsWith(DASH)) throw err("malformed signature line");
    const rest = line.slice(DASH.length);
    const sp = rest.indexOf(" ");
    const name = sp < 0 ? rest : rest.slice(0, sp);
    const b64 = sp < 0 ? "" : rest.slice(sp + 1);
    if (sp < 0 || !validKeyName(name) || !b64) throw err("malformed signature line");
    let raw;
    try {
      raw = b64decodeCanonical(b64);
    } catch (e) {
      throw err(`malformed signature line: ${e.message}`);
    }
    if (raw.length < 5) throw err("malformed signature line: signature too short");
    return { name, keyId: raw.subarray(0, 4), signature: raw.subarray(4) };
  });
  return { text, signatures: sigs };
}

export function parseDecimal(s, what) {
  if (!s || s.length > 19 || !/^[0-9]+$/.test(s)) throw err(`malformed ${what}: not a decimal number`);
  if (s[0] === "0" && s !== "0") throw err(`malformed ${what}: leading zero`);
  const n = BigInt(s);
  if (n > MAX_TREE_SIZE) throw err(`malformed ${what}: too large`);
  return n;
}

/** C2SP tlog-checkpoint text (notary/checkpoint.py Checkpoint.from_text). */
export function parseCheckpoint(text) {
  if (!text.endsWith("\n")) throw err("malformed checkpoint: text must end in a newline");
  if (CONTROL.test(text)) throw err("malformed checkpoint: control character");
  const lines = text.slice(0, -1).split("\n");
  if (lines.length < 3) throw err("malformed checkpoint: fewer than three lines");
  const [origin, sizeS, rootS, ...extensions] = lines;
  if (!origin) throw err("malformed checkpoint: empty origin");
  const size = parseDecimal(sizeS, "checkpoint size");
  let root;
  try {
    root = b64decodeCanonical(rootS);
  } catch (e) {
    if (e.message === "non-canonical base64") {
      throw err("malformed checkpoint: root hash is not 32 bytes of base64");
    }
    throw err("malformed checkpoint: bad base64 root hash");
  }
  if (root.length !== 32) throw err("malformed checkpoint: root hash is not 32 bytes of base64");
  if (extensions.some((x) => !x)) throw err("malformed checkpoint: empty extension line");
  return { origin, size, rootHash: root, extensions };
}

/** A signed checkpoint note, verified against `verifier` (key name = origin). */
export async function openCheckpoint(note, cp, verifier) {
  const raw = encoder.encode(note.text);
  let verified = 0;
  for (const sig of note.signatures) {
    if (sig.name !== verifier.name || !equal(sig.keyId, verifier.keyId)) continue;
    await verifier.verify(raw, sig.signature);
    verified++;
  }
  if (!verified) {
    throw err(`note has no signature by a known key (known: ${verifier.name}+${hex(verifier.keyId)})`);
  }
  if (cp.origin !== verifier.name) {
    throw err(`checkpoint origin ${pyRepr(cp.origin)} is not the verifier key name ${pyRepr(verifier.name)}`);
  }
  return cp;
}

const HASH_LINE = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

function indexOfBlank(data) {
  for (let i = 0; i + 1 < data.length; i++) if (data[i] === 10 && data[i + 1] === 10) return i;
  return -1;
}

/** c2sp.org/tlog-proof@v1 (notary/tlogproof.py TlogProof.from_bytes). */
export function parseTlogProof(data) {
  if (data.length > MAX_PROOF_SIZE) throw err("malformed tlog-proof: too large");
  const blank = indexOfBlank(data);
  if (blank < 0) throw err("malformed tlog-proof: truncated");
  const head = ascii(data.subarray(0, blank));
  if (head === null) throw err("malformed tlog-proof: non-ASCII proof line");
  const lines = head.split("\n");
  if (lines[0] !== "c2sp.org/tlog-proof@v1") {
    throw err("malformed tlog-proof: first line must be c2sp.org/tlog-proof@v1");
  }
  let at = 1;
  const b64 = (s, what) => {
    try {
      return b64decodeCanonical(s);
    } catch (e) {
      throw err(`malformed tlog-proof: ${e.message} in ${what}`);
    }
  };
  if (at < lines.length && lines[at].startsWith("extra ")) {
    b64(lines[at].slice(6), "extra");
    at++;
  }
  if (at >= lines.length || !lines[at].startsWith("index ")) {
    throw err("malformed tlog-proof: missing index line");
  }
  const index = parseDecimal(lines[at].slice(6), "tlog-proof index");
  const hashLines = lines.slice(at + 1);
  if (hashLines.length > 63) throw err("malformed tlog-proof: too many hashes");
  const hashes = hashLines.map((cur) => {
    const h = b64(cur, "proof hash");
    if (!HASH_LINE.test(cur) && h.length !== 32) throw err("malformed tlog-proof: proof hash is not 32 bytes");
    return h;
  });
  const checkpointBytes = data.subarray(blank + 2);
  const note = parseNote(checkpointBytes);
  const cp = parseCheckpoint(note.text);
  if (index >= cp.size) throw err("malformed tlog-proof: index is beyond the checkpoint's tree");
  return { index, hashes, note, checkpoint: cp, checkpointBytes };
}

function receiptB64(value, what, cap) {
  if (typeof value !== "string" || !value) {
    throw err(`malformed receipt: ${what} must be a non-empty base64 string`);
  }
  if (value.length > (Math.floor(cap / 3) + 1) * 4) throw err(`malformed receipt: ${what} too large`);
  try {
    return b64decodeCanonical(value);
  } catch (e) {
    if (e.message === "non-canonical base64") throw err(`malformed receipt: ${what} is not canonical base64`);
    throw err(`malformed receipt: ${what} is not base64`);
  }
}

/** A receipt object (notary/receipt.py Receipt.from_json). */
export function parseReceipt(obj) {
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
    throw err("malformed receipt: not a JSON object");
  }
  const unknown = Object.keys(obj).filter((k) => !["entry", "proof", "tst"].includes(k));
  if (unknown.length) {
    throw err(`malformed receipt: unknown members [${unknown.sort().map(pyRepr).join(", ")}]`);
  }
  if (!("entry" in obj) || !("proof" in obj)) {
    throw err("malformed receipt: 'entry' and 'proof' are required");
  }
  const entry = receiptB64(obj.entry, "entry", MAX_STATEMENT_SIZE);
  if (typeof obj.proof !== "string") throw err("malformed receipt: proof must be a string");
  if (Array.from(obj.proof).length > MAX_PROOF_SIZE) throw err("malformed receipt: proof too large");
  if (!obj.proof.isWellFormed()) throw err("malformed receipt: proof is not valid Unicode");
  const proof = parseTlogProof(encoder.encode(obj.proof));
  const tst = "tst" in obj ? receiptB64(obj.tst, "tst", MAX_TST_SIZE) : null;
  return { entry, proof, tst, index: proof.index };
}

/** The entry's inclusion under a checkpoint signed by `verifier`; the statement. */
export async function verifyReceipt(receipt, verifier) {
  const { proof } = receipt;
  const cp = await openCheckpoint(proof.note, proof.checkpoint, verifier);
  if (!(proof.index >= 0n && proof.index < cp.size)) {
    throw err("tlog-proof index is beyond the checkpoint's tree");
  }
  await verifyInclusion(await leafHash(receipt.entry), proof.index, cp.size, proof.hashes, cp.rootHash);
  const stmt = parseStatement(receipt.entry);
  if (stmt.notary !== cp.origin) {
    throw err(`statement names notary ${pyRepr(String(stmt.notary))}, but the log is ${pyRepr(cp.origin)}`);
  }
  return stmt;
}

/** RFC 8785 canonical JSON (sorted by UTF-16 code units, ECMAScript number form). */
export function canonicalJson(v) {
  if (v === null || typeof v !== "object") return JSON.stringify(v);
  if (Array.isArray(v)) return "[" + v.map(canonicalJson).join(",") + "]";
  const keys = Object.keys(v).sort();
  return "{" + keys.map((k) => JSON.stringify(k) + ":" + canonicalJson(v[k])).join(",") + "}";
}

const TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.\d{6}Z$/;

function checkTime(s) {
  const m = TIME.exec(s);
  if (!m) throw err(`malformed time ${pyRepr(s)}: expected YYYY-MM-DDTHH:MM:SS.ffffffZ`);
  const [y, mo, d, h, mi, se] = m.slice(1).map(Number);
  const t = new Date(Date.UTC(y, mo - 1, d, h, mi, se));
  if (
    y < 1 ||
    t.getUTCFullYear() !== y ||
    t.getUTCMonth() !== mo - 1 ||
    t.getUTCDate() !== d ||
    t.getUTCHours() !== h ||
    t.getUTCMinutes() !== mi ||
    t.getUTCSeconds() !== se
  ) {
    throw err(`malformed time ${pyRepr(s)}`);
  }
}

/** An evidence statement, parsed strictly (notary/evidence.py parse_statement). */
export function parseStatement(data) {
  if (data.length > MAX_STATEMENT_SIZE) throw err("statement too large");
  const text = utf8(data);
  let obj;
  try {
    if (text === null) throw new Error();
    obj = JSON.parse(text);
  } catch {
    throw err("statement is not UTF-8 JSON");
  }
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
    throw err("statement is not a JSON object");
  }
  if (canonicalJson(obj) !== text) throw err("statement is not in RFC 8785 canonical form");
  if (obj.v !== 1) throw err("unsupported statement version: v must be 1");
  for (const m of ["event", "time", "notary", "message"]) {
    if (!(m in obj)) throw err(`statement lacks ${pyRepr(m)}`);
  }
  const msg = obj.message;
  if (msg === null || typeof msg !== "object" || Array.isArray(msg)) {
    throw err("statement 'message' is not an object");
  }
  if (!EVENTS.has(obj.event)) throw err(`unknown evidence event ${JSON.stringify(obj.event)}`);
  if (typeof obj.notary !== "string" || !obj.notary) {
    throw err("notary must be a non-empty string (the log origin)");
  }
  if (typeof msg.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(msg.sha256)) {
    throw err("message sha256 must be 64 lowercase hex digits");
  }
  const id = msg.id;
  if (typeof id !== "string" || !id || Array.from(id).length > 998) {
    throw err("message id must be a non-empty string of at most 998 characters");
  }
  if (typeof obj.time !== "string") throw err("statement 'time' is not a string");
  checkTime(obj.time);
  return obj;
}
