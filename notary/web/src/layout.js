// The members of a proof bundle (certmail/bundle/layout.py): names, size caps and the
// one canonical form of each JSON member.

import { fail, pyRepr, unicodeEscape, utf8, VerificationError } from "./bytes.js";

export const MESSAGE = "message.eml";
export const VKEY = "notary.vkey";
export const CHAIN = "tsa-chain.pem";
export const HTML = "certificate.html";
export const PDF = "certificate.pdf";
export const VERIFY_TXT = "VERIFY.txt";
export const DOCUMENTS = [HTML, PDF, VERIFY_TXT];
/** The format version member (format 2 on; a bundle without it is format 1). */
export const FORMAT_FILE = "bundle.json";
/** The formats this page knows (docs/proof-bundle.md). */
export const FORMATS = [1, 2, 3, 4, 5, 6];

export const MAX_MESSAGE_SIZE = 512 * 2 ** 20;
export const MAX_MEMBER_SIZE = 4 * 2 ** 20;
export const MAX_BUNDLE_SIZE = MAX_MESSAGE_SIZE + 64 * 2 ** 20;
export const MAX_EVENTS = 999;
export const MAX_KEYS = 64;
export const MAX_MEMBERS = 3 * MAX_EVENTS + MAX_EVENTS + 6 + 1 + MAX_KEYS + 3 * 99 + 99; // 99: mdns/NN.eml

export const EVIDENCE = /^evidence\/(\d{2,3})-([A-Za-z]{1,64})\.(json|tlog-proof|tsr)$/;
export const CONSISTENCY = /^evidence\/consistency-(0|[1-9]\d{0,18})-(0|[1-9]\d{0,18})\.json$/;
/** keys/<FPR>.asc: an OpenPGP public key (format 2), named by its v4 fingerprint. */
export const KEY_MEMBER = /^keys\/([0-9A-F]{40})\.asc$/;
/** evidence/checkpoint-<N>.cosigned: a checkpoint with its witnesses' cosignatures (format 3). */
export const COSIGNED = /^evidence\/checkpoint-([1-9]\d{0,18})\.cosigned$/;
/** Outside time-stamps over checkpoints (format 4, certmail/bundle/anchors.py). */
export const ANCHOR_CHECKPOINT = /^evidence\/anchor-([1-9]\d{0,18})\.checkpoint$/;
export const ANCHOR_TOKEN = /^evidence\/anchor-([1-9]\d{0,18})-([0-9a-f]{8})\.tsr$/;
export const ANCHOR_ROOTS = "anchor-roots.pem";
/** renewals/NN.(json|tsr|pem): archive time-stamps over the whole bundle (certmail/bundle/renew.py). */
export const RENEWAL = /^renewals\/(\d{2})\.(json|tsr|pem)$/;
/** mdns/NN.eml: a read receipt (RFC 8098), format 5 (certmail/bundle/mdns.py). */
export const MDN_MEMBER = /^mdns\/(\d{2})\.eml$/;
/** What each later format added (certmail/bundle/layout.py FEATURES, the same table):
 * the format it needs at least, what it is in an error, its members. Formats are cumulative. */
/** The S/MIME signer's certificate chain, format 6 (certmail/bundle/smimesig.py). */
export const SIGNER_CHAIN = "smime/signer-chain.pem";
export const FEATURES = {
  keys: { since: 2, what: "OpenPGP keys", members: [KEY_MEMBER] },
  cosigned: { since: 3, what: "cosigned checkpoints", members: [COSIGNED] },
  anchors: { since: 4, what: "outside time-stamps", members: [ANCHOR_TOKEN, ANCHOR_CHECKPOINT] },
  mdns: { since: 5, what: "read receipts", members: [MDN_MEMBER] },
  smime: { since: 6, what: "the S/MIME signer's chain", members: [/^smime\/signer-chain\.pem$/] },
};
/** The formats a bundle is written in only with their feature's members (format 5, which a
 * version 2 acknowledgement calls for too: needsFormat5 in checks.js). */
export const LABELLED = { 3: "cosigned", 4: "anchors" };
/** The title of a version 2 acknowledgement (notary/ackformat.py ACK_TITLE_V2): format 5. */
export const ACK_TITLE_V2 = "certmail acknowledgement of receipt v2";

/** Whether a bundle of format `format` may hold `feature` (FEATURES). */
export function requires(format, feature) {
  return format >= FEATURES[feature].since;
}

/** The names among `names` that are `feature`'s members, sorted. */
export function membersOf(names, feature) {
  const patterns = FEATURES[feature].members;
  return [...names].filter((n) => patterns.some((p) => p.test(n))).sort();
}

const FIXED = new Set([MESSAGE, VKEY, CHAIN, FORMAT_FILE, ANCHOR_ROOTS, SIGNER_CHAIN, ...DOCUMENTS]);

/** Refuse a member name outside the layout. */
export function checkName(name) {
  if (FIXED.has(name) || EVIDENCE.test(name) || CONSISTENCY.test(name) || KEY_MEMBER.test(name) || COSIGNED.test(name)) return;
  if (ANCHOR_CHECKPOINT.test(name) || ANCHOR_TOKEN.test(name) || RENEWAL.test(name) || MDN_MEMBER.test(name)) return;
  const shown = Array.from(unicodeEscape(name)).slice(0, 120).join("");
  throw new VerificationError(`the bundle holds an unexpected member ${pyRepr(shown)}`);
}

export function sizeCap(name) {
  return name === MESSAGE ? MAX_MESSAGE_SIZE : MAX_MEMBER_SIZE;
}

function pyString(s) {
  // json.dumps(ensure_ascii=True) for one string
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const ch = s[i];
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\b") out += "\\b";
    else if (ch === "\f") out += "\\f";
    else if (c < 0x20 || c > 0x7e) out += "\\u" + c.toString(16).padStart(4, "0");
    else out += ch;
  }
  return out + '"';
}

function pyCodePointCompare(a, b) {
  const x = Array.from(a, (c) => c.codePointAt(0));
  const y = Array.from(b, (c) => c.codePointAt(0));
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

function pyDump(v, indent) {
  const pad = "\n" + "  ".repeat(indent + 1);
  const end = "\n" + "  ".repeat(indent);
  if (v === null) return "null";
  if (v === true) return "true";
  if (v === false) return "false";
  if (typeof v === "string") return pyString(v);
  if (typeof v === "number") {
    if (!Number.isSafeInteger(v)) throw new TypeError("not an integer");
    return String(v);
  }
  if (Array.isArray(v)) {
    if (!v.length) return "[]";
    return "[" + v.map((x) => pad + pyDump(x, indent + 1)).join(",") + end + "]";
  }
  const keys = Object.keys(v).sort(pyCodePointCompare);
  if (!keys.length) return "{}";
  return (
    "{" + keys.map((k) => pad + pyString(k) + ": " + pyDump(v[k], indent + 1)).join(",") + end + "}"
  );
}

/** The one form of evidence/NN-<event>.json: sorted keys, 2-space indent, ASCII, LF. */
export function receiptText(obj) {
  return pyDump(obj, 0) + "\n";
}

/** The JSON value of member `name`, which must be in its canonical form. */
export function jsonMember(files, name) {
  const text = utf8(files.get(name));
  let obj;
  try {
    if (text === null) throw new Error();
    obj = JSON.parse(text);
  } catch {
    throw fail(`${name} is not JSON`);
  }
  let canonical;
  try {
    canonical = receiptText(obj);
  } catch {
    throw fail(`${name} is not in its canonical form`);
  }
  if (canonical !== text) throw fail(`${name} is not in its canonical form`);
  return obj;
}
