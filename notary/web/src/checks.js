// The checks of a proof bundle, in the order and with the names and verdicts of
// `certmail proof verify` (certmail/bundle/verify.py and checks.py): each check
// appends a {item, status, detail, applies} or throws a VerificationError naming
// what failed. To add a check, add a step to CHECKS-in-order in verifyFiles and
// the same item to the Python side; tests/web/test_verify_page.py compares the two.

import { encoder, fail, hex, sha256, utf8, VerificationError } from "./bytes.js";
import { headerFacts } from "./headers.js";
import {
  ACK_TITLE_V2,
  ANCHOR_CHECKPOINT,
  ANCHOR_ROOTS,
  ANCHOR_TOKEN,
  CHAIN,
  CONSISTENCY,
  COSIGNED,
  DOCUMENTS,
  EVIDENCE,
  FEATURES,
  FORMAT_FILE,
  FORMATS,
  HTML,
  KEY_MEMBER,
  jsonMember,
  LABELLED,
  membersOf,
  MAX_EVENTS,
  MESSAGE,
  PDF,
  RENEWAL,
  requires,
  VERIFY_TXT,
  VKEY,
} from "./layout.js";
import { openCheckpoint, parseCheckpoint, parseNote, parseReceipt, Verifier, verifyReceipt } from "./log.js";
import { verifyConsistency } from "./merkle.js";
import { UnknownKey, verifyDetached } from "./pgp.js";
import { verifyToken } from "./tsp.js";
import { loadPem, pemChain, pemOf, samePem, issuedBy } from "./x509.js";
import { readMembers } from "./zip.js";

export const UNTRUSTED_VKEY =
  "no trusted verifier key given: checkpoints were checked against the bundle's own " +
  "notary.vkey, which anyone who forged the bundle could have replaced; " +
  "pass --vkey with the notary's key from a source you trust";
export const UNTRUSTED_ROOT =
  "no trusted TSA root given: time-stamps were checked against the root at the end of " +
  "the bundle's own tsa-chain.pem; pass --tsa-root with the TSA's root from a source " +
  "you trust";

/** What the browser cannot check, and why: one line each, shown on the page. */
export const NOT_HERE = {
  documents:
    "not checked here: certmail proof verify regenerates certificate.html, certificate.pdf " +
    "and VERIFY.txt from the evidence and compares them byte for byte; the page shows the " +
    "timeline from the verified evidence instead",
  cosignatures:
    "not checked here: the witnesses' cosignatures on the evidence/checkpoint-N.cosigned " +
    "members; run certmail proof verify --witness VKEY (docs/witness.md)",
  smime:
    "not checked here: the S/MIME sender signature (smime/signer-chain.pem); " +
    "run certmail proof verify --smime-ca FILE",
  smimeAck:
    "not checked here: the S/MIME signature of the acknowledgement (CMS); " +
    "run certmail proof verify --smime-ca FILE",
  mdns:
    "not checked here: the read receipts (mdns/NN.eml, RFC 8098 MDNs) and their signatures; " +
    "run certmail proof verify",
  anchors:
    "not checked here: the outside time-stamps were checked against the bundle's own " +
    "anchor-roots.pem only; run certmail proof verify --anchor-root PEM (docs/anchors.md)",
  renewals:
    "not checked here: the archive time-stamps of renewals/ (certmail proof renew); " +
    "run certmail proof verify (docs/proof-bundle.md, Renewals)",
  openpgp:
    "not checked here: no OpenPGP keys given; paste the sender's and recipients' public " +
    "keys (from a source you trust) under Trust roots, or run certmail proof verify --gnupghome DIR",
};

/** The bundle's format version: bundle.json's (format 2 on, in its one form), else 1
 * (checks.py check_format): no member of a later format (FEATURES), and a bundle of
 * format 3 or 4 holds its own format's members (LABELLED). */
function checkFormat(files) {
  const names = [...files.keys()];
  if (!files.has(FORMAT_FILE)) {
    const later = Object.keys(FEATURES).flatMap((f) => membersOf(names, f));
    if (later.length) throw fail(`${later[0]} in a bundle without ${FORMAT_FILE} (format 1)`);
    return 1;
  }
  const obj = jsonMember(files, FORMAT_FILE);
  const version = obj && typeof obj === "object" && !Array.isArray(obj) && Object.keys(obj).length === 1 ? obj.format : undefined;
  if (!Number.isSafeInteger(version) || version === 1) throw fail(`${FORMAT_FILE} is not a format version`);
  if (!FORMATS.includes(version)) {
    throw new VerificationError(
      `${FORMAT_FILE}: bundle format ${version} is newer than this page knows (formats ${FORMATS.join(", ")})`,
    );
  }
  for (const [feature, { since, what }] of Object.entries(FEATURES)) {
    const held = membersOf(names, feature);
    if (held.length && !requires(version, feature)) throw fail(`${held[0]} in a bundle of format ${version} (${what}: ${since})`);
  }
  if (version in LABELLED && !membersOf(names, LABELLED[version]).length) throw notOfFormat(version);
  return version;
}

const notOfFormat = (version) =>
  fail(`${FORMAT_FILE} says format ${version}, but the bundle holds nothing of format ${version}`);

/** A bundle that says format 5 holds read receipts or a version 2 acknowledgement
 * (mdns.py needs_format_5, mdn_facts): it is written in format 5 only then; one that
 * says format 6 holds those, the S/MIME signer's chain (smimesig.py) or an S/MIME
 * acknowledgement (smimeack.py). */
function checkFormat5(v) {
  if (v.format !== 5 && v.format !== 6) return;
  if (membersOf(v.files.keys(), "mdns").length) return;
  if (v.format === 6 && membersOf(v.files.keys(), "smime").length) return;
  if (v.format === 6 && v.events.some((ev) => isCmsAck(ev.statement))) return;
  const v2 = (s) => s.event === "ContentHandover" && typeof s.signed === "string" && s.signed.startsWith(ACK_TITLE_V2);
  if (!v.events.some((ev) => v2(ev.statement))) throw notOfFormat(v.format);
}

const check = (item, status, detail, applies = true) => ({ item, status, detail, applies });

async function checkNotaryKey(v, vkey) {
  const text = utf8(v.files.get(VKEY));
  if (text === null || /[^\x00-\x7f]/.test(text)) throw fail(`${VKEY} is not a verifier key`);
  if (!text.endsWith("\n") || text.split("\n").length !== 2) throw fail(`${VKEY} must be one line`);
  let bundle;
  try {
    bundle = await Verifier.fromVkey(text.slice(0, -1));
  } catch (e) {
    throw fail(`${VKEY}: ${e.message}`);
  }
  if (vkey === null) {
    v.verifier = bundle;
    v.warnings.push(UNTRUSTED_VKEY);
    return check("notary key", "warning", `not pinned: using ${VKEY} from the bundle`);
  }
  let trusted;
  try {
    trusted = await Verifier.fromVkey(vkey.trim());
  } catch (e) {
    throw new VerificationError(`the trusted verifier key is malformed: ${e.message}`);
  }
  if (!trusted.equals(bundle) || trusted.vkey() !== text.slice(0, -1)) {
    throw fail(`${VKEY} is not the trusted verifier key ${trusted.vkey()}`);
  }
  v.verifier = trusted;
  v.vkeyTrusted = true;
  return check("notary key", "ok", `${VKEY} is the trusted key ${trusted.vkey()}`);
}

async function checkTsaChain(v, roots) {
  v.chain = await pemChain(v.files.get(CHAIN));
  const last = v.chain[v.chain.length - 1];
  if (!roots || !roots.length) {
    v.roots = [last];
    v.warnings.push(UNTRUSTED_ROOT);
    return check("TSA chain", "warning", `not pinned: using the root at the end of ${CHAIN}`);
  }
  v.roots = roots;
  let ok = roots.some((r) => samePem(r, last));
  for (const r of roots) ok = ok || (await issuedBy(last, r));
  if (!ok) throw fail(`${CHAIN} does not end at a trusted TSA root`);
  v.rootTrusted = true;
  return check("TSA chain", "ok", `${CHAIN} ends at a trusted root`);
}

function evidenceMembers(files) {
  const numbered = new Map();
  const consistency = new Map();
  for (const name of files.keys()) {
    const m = EVIDENCE.exec(name);
    if (m) {
      const n = Number(m[1]);
      if (!numbered.has(n)) numbered.set(n, {});
      numbered.get(n)[m[3]] = name;
      continue;
    }
    const c = CONSISTENCY.exec(name);
    if (c) consistency.set(`${BigInt(c[1])}-${BigInt(c[2])}`, name);
  }
  if (!numbered.size) throw fail("the bundle holds no evidence");
  const nums = [...numbered.keys()].sort((a, b) => a - b);
  if (nums.some((n, i) => n !== i + 1) || nums.length > MAX_EVENTS) {
    throw fail("evidence files are not numbered 01, 02, ... without gaps");
  }
  return [nums.map((n) => numbered.get(n)), consistency];
}

const pad2 = (n) => String(n).padStart(2, "0");

async function readReceipt(v, number, names) {
  if (!names.json || !names["tlog-proof"]) throw fail(`evidence ${pad2(number)} lacks its .json or .tlog-proof file`);
  const stems = new Set(Object.values(names).map((nm) => nm.slice(0, nm.lastIndexOf("."))));
  if (stems.size !== 1) throw fail(`evidence ${pad2(number)} files name different events`);
  const jname = names.json;
  const obj = jsonMember(v.files, jname);
  let receipt;
  let stmt;
  try {
    receipt = parseReceipt(obj);
    stmt = await verifyReceipt(receipt, v.verifier);
  } catch (e) {
    if (!(e instanceof VerificationError)) throw e;
    throw fail(`${jname}: ${e.message}`);
  }
  const stem = [...stems][0].replace(/^evidence\//, "");
  return { number, stem, receipt, statement: stmt, checkpoint: receipt.proof.checkpoint, proofText: obj.proof, token: null };
}

function checkStatement(v, ev, names) {
  const stmt = ev.statement;
  const jname = names.json;
  if (ev.stem !== `${pad2(ev.number)}-${stmt.event}`) throw fail(`${jname} holds a ${stmt.event} statement, not what its name says`);
  if (stmt.message.sha256 !== v.sha256) {
    throw fail(`${jname} is about message ${stmt.message.sha256}, not message.eml (${v.sha256})`);
  }
  if (v.messageId === null) v.messageId = stmt.message.id;
  else if (stmt.message.id !== v.messageId) throw fail(`${jname} names another Message-ID`);
  if (utf8(v.files.get(names["tlog-proof"])) !== ev.proofText) {
    throw fail(`${names["tlog-proof"]} is not the proof in ${jname}`);
  }
  if ((ev.receipt.tst === null) !== !("tsr" in names)) {
    throw fail(`evidence ${pad2(ev.number)}: the .tsr file and the receipt's tst disagree`);
  }
  return check(
    `${pad2(ev.number)} ${stmt.event}`,
    "ok",
    `${jname}: entry included at index ${ev.receipt.index} under a checkpoint signed by the notary key; statement about message.eml`,
  );
}

async function checkToken(v, ev, names) {
  const tst = ev.receipt.tst;
  if (tst === null) return null;
  const tname = names.tsr;
  const file = v.files.get(tname);
  if (file.length !== tst.length || file.some((b, i) => b !== tst[i])) throw fail(`${tname} is not the token in ${names.json}`);
  try {
    ev.token = await verifyToken(tst, { roots: v.roots, data: v.message, chain: v.chain });
  } catch (e) {
    if (!(e instanceof VerificationError)) throw fail(`${tname}: malformed token (${e.message})`);
    throw fail(`${tname}: ${e.message.replace(/; it may have been modified maliciously$/, "")}`);
  }
  const t = new Date(ev.token.genTime.ms).toISOString().slice(0, 19) + "Z";
  return check(`${pad2(ev.number)} time-stamp`, "ok", `${tname}: RFC 3161 token over message.eml, genTime ${t}`);
}

function checkTimeOrder(events) {
  const order = [...events].sort((a, b) =>
    a.statement.time < b.statement.time ? -1 : a.statement.time > b.statement.time ? 1 : a.receipt.index < b.receipt.index ? -1 : a.receipt.index > b.receipt.index ? 1 : 0,
  );
  if (order.some((e, i) => e.number !== events[i].number)) throw fail("evidence files are not in time order");
}

/** Each evidence/checkpoint-N.cosigned: a checkpoint of size N signed by the notary key,
 * its signature first (cosigned.py read_cosigned); the cosignatures are not checked here. */
async function readCosigned(v) {
  const out = [];
  for (const name of [...v.files.keys()].filter((n) => COSIGNED.test(n)).sort()) {
    const size = BigInt(COSIGNED.exec(name)[1]);
    let cp;
    let note;
    try {
      note = parseNote(v.files.get(name));
      cp = await openCheckpoint(note, parseCheckpoint(note.text), v.verifier);
    } catch (e) {
      if (!(e instanceof VerificationError)) throw e;
      throw fail(`${name}: ${e.message}`);
    }
    const first = note.signatures[0];
    if (first.name !== v.verifier.name || hex(first.keyId) !== hex(v.verifier.keyId)) {
      throw fail(`${name}: the notary's signature is not the first line`);
    }
    if (cp.size !== size) throw fail(`${name} holds a checkpoint of size ${cp.size}`);
    out.push(cp);
  }
  return out;
}

/** The outside time-stamps (anchors.py read_anchors): each evidence/anchor-N.checkpoint
 * signed by the notary key (its one signature) and of size N, each token over it valid
 * against anchor-roots.pem, every token with its checkpoint and every checkpoint with a token. */
async function readAnchors(v) {
  const names = [...v.files.keys()];
  const notes = new Map(names.filter((n) => ANCHOR_CHECKPOINT.test(n)).map((n) => [ANCHOR_CHECKPOINT.exec(n)[1], n]));
  const tokens = names.filter((n) => ANCHOR_TOKEN.test(n)).sort();
  if (!notes.size && !tokens.length) {
    if (v.files.has(ANCHOR_ROOTS)) throw fail(`${ANCHOR_ROOTS} in a bundle without outside time-stamps`);
    return [[], 0];
  }
  if (!v.files.has(ANCHOR_ROOTS)) throw fail(`the bundle holds outside time-stamps but no ${ANCHOR_ROOTS}`);
  const pemText = new TextDecoder("latin1").decode(v.files.get(ANCHOR_ROOTS));
  const roots = await loadPem(pemText);
  if (roots === null) throw fail(`${ANCHOR_ROOTS} holds no readable PEM certificates`);
  if (roots.map((r) => pemOf(r.der)).join("") !== pemText || roots.length > 16) {
    throw fail(`${ANCHOR_ROOTS} is not in its canonical PEM form`);
  }
  const checkpoints = [];
  for (const [size, name] of [...notes.entries()].sort((a, b) => (BigInt(a[0]) < BigInt(b[0]) ? -1 : 1))) {
    let cp;
    let note;
    try {
      note = parseNote(v.files.get(name));
      cp = await openCheckpoint(note, parseCheckpoint(note.text), v.verifier);
    } catch (e) {
      if (!(e instanceof VerificationError)) throw e;
      throw fail(`${name}: ${e.message}`);
    }
    if (note.signatures.length !== 1) throw fail(`${name} must hold the notary's signature only`);
    if (cp.size !== BigInt(size)) throw fail(`${name} holds a checkpoint of size ${cp.size}`);
    checkpoints.push(cp);
  }
  const covered = new Set();
  for (const name of tokens) {
    const size = ANCHOR_TOKEN.exec(name)[1];
    if (!notes.has(size)) throw fail(`${name} has no evidence/anchor-${size}.checkpoint beside it`);
    try {
      await verifyToken(v.files.get(name), { roots, data: v.files.get(notes.get(size)), chain: [], form: false });
    } catch (e) {
      if (!(e instanceof VerificationError)) throw e;
      throw fail(`${name}: ${e.message}`);
    }
    covered.add(size);
  }
  for (const [size, name] of notes) if (!covered.has(size)) throw fail(`${name} has no token over it`);
  return [checkpoints, tokens.length];
}

function checkCheckpoints(v, consistencyFiles, extra = []) {
  for (const cp of [...v.events.map((ev) => ev.checkpoint), ...extra]) {
    const have = v.checkpoints.get(cp.size);
    if (have && hex(have.rootHash) !== hex(cp.rootHash)) {
      throw fail(`two checkpoints of size ${cp.size} with different roots: the log forked`);
    }
    v.checkpoints.set(cp.size, cp);
  }
  const sizes = [...v.checkpoints.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  v.consistency = sizes.slice(1).map((n, i) => [sizes[i], n]);
  const need = v.consistency.map(([m, n]) => `${m}-${n}`);
  const have = [...consistencyFiles.keys()];
  if (need.length !== have.length || need.some((k) => !consistencyFiles.has(k))) {
    throw fail(`the consistency proofs do not match the checkpoints (need [${need.map((k) => `'${k}'`).join(", ")}])`);
  }
}

async function checkConsistency(v, oldSize, newSize, name) {
  const obj = jsonMember(v.files, name);
  try {
    const keys = obj && typeof obj === "object" && !Array.isArray(obj) ? Object.keys(obj).sort() : [];
    if (keys.join() !== "new,old,proof" || !Number.isInteger(obj.old) || !Number.isInteger(obj.new) ||
        BigInt(obj.old) !== oldSize || BigInt(obj.new) !== newSize || !Array.isArray(obj.proof)) {
      throw new TypeError("members");
    }
    const proof = obj.proof.map((h) => {
      // base64.b64decode(validate=True): the alphabet and padding, unused bits ignored
      if (typeof h !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(h) || h.length % 4) throw new TypeError("base64");
      return Uint8Array.from(atob(h), (c) => c.charCodeAt(0));
    });
    await verifyConsistency(oldSize, newSize, proof, v.checkpoints.get(oldSize).rootHash, v.checkpoints.get(newSize).rootHash);
  } catch (e) {
    if (e instanceof VerificationError) throw fail(`${name}: ${e.message}`);
    throw fail(`${name} is not a consistency proof`);
  }
  return check("consistency", "ok", `${name}: the checkpoint of size ${newSize} extends that of size ${oldSize}`);
}

async function checkSenderSignature(v, header, ring) {
  const item = "sender signature";
  const layout = header.layout;
  if (layout === null) return check(item, "skipped", "message.eml is not OpenPGP/MIME", false);
  if (layout.kind === "encrypted") return check(item, "skipped", "encrypted: signature inside, checkable by a recipient");
  if (ring === null) {
    const keys = [...v.files.keys()].filter((n) => KEY_MEMBER.test(n)).length;
    const carried = keys ? ` (the bundle carries ${keys} OpenPGP key${keys > 1 ? "s" : ""} in keys/)` : "";
    return check(item, "skipped", NOT_HERE.openpgp + carried);
  }
  let info;
  try {
    info = await verifyDetached(ring, layout.signed, layout.signature);
  } catch (e) {
    if (e instanceof UnknownKey) return check(item, "skipped", "the sender's key is not in the keyring");
    if (!(e instanceof VerificationError)) throw e;
    throw fail(`the sender's signature in message.eml: ${e.message}`);
  }
  const addr = header.senderAddress;
  if (!info.email || info.email !== addr) {
    throw fail(`message.eml is signed by ${info.email || info.fingerprint}, not by its From: address ${addr || "(none)"}`);
  }
  return check(item, "ok", `good OpenPGP signature by ${info.email} (${info.primary})`);
}

function notRecipientsKey(number, signer, recipient, theirs) {
  const held = theirs ? `the keyring's key for ${recipient} is ${theirs}` : `the keyring holds no key for ${recipient}`;
  return new VerificationError(
    `evidence ${pad2(number)}: the acknowledgement is signed by ${signer}, which is not a ` +
      `recipient's key (${held}); it does not prove that ${recipient} received the message`,
  );
}

function normalizeFingerprint(value) {
  const compact = value.replaceAll(" ", "").trim();
  if (/^(0[xX])?[0-9A-Fa-f]{40}$/.test(compact)) return compact.replace(/^0[xX]/, "").toUpperCase();
  return value.trim();
}

/** An S/MIME (CMS-signed) acknowledgement (certmail/bundle/smimeack.py is_cms_ack). */
export function isCmsAck(s) {
  return s.event === "ContentHandover" && Object.hasOwn(s, "cms");
}

/** An S/MIME acknowledgement: its members and recipient checked (smimeack.py _members),
 * the CMS signature not (no CMS verifier in this page). */
function checkCmsAcknowledgement(ev, recipients, sha, format) {
  const s = ev.statement;
  const n = pad2(ev.number);
  if (format < 6) throw fail(`evidence ${n}: an S/MIME acknowledgement in a bundle of format ${format} (S/MIME: 6)`);
  const vals = ["signed", "cms", "certificate_sha256", "recipient"].map((k) => s[k]);
  if (!vals.every((x) => typeof x === "string")) {
    throw fail(`evidence ${n}: the S/MIME acknowledgement lacks signed, cms, certificate_sha256 or recipient`);
  }
  const [signed, , , whoRaw] = vals;
  if (!signed.includes(sha)) throw fail(`evidence ${n}: the acknowledgement is about another message`);
  const who = whoRaw.toLowerCase();
  if (!recipients.some((r) => r.toLowerCase() === who)) {
    throw new VerificationError(`evidence ${n}: the acknowledgement is by ${whoRaw}, who is not a recipient of the message`);
  }
  return check(`${n} acknowledgement`, "skipped", NOT_HERE.smimeAck);
}

async function checkAcknowledgement(ev, recipients, sha, ring) {
  const s = ev.statement;
  const n = pad2(ev.number);
  const label = `${n} acknowledgement`;
  if (s.mode === "pickup") {  // the pickup page's confirmation (openpgp.py pickup_detail)
    const assurance = String(s.assurance ?? "").slice(0, 200);
    return check(label, "skipped", `confirmed on the pickup page, no signature to check (identity assurance: ${assurance})`, false);
  }
  const [sig, signed, fpr, whoRaw] = ["signature", "signed", "fingerprint", "recipient"].map((k) => s[k]);
  if (![sig, signed, fpr, whoRaw].every((x) => typeof x === "string")) {
    throw fail(`evidence ${n}: the acknowledgement lacks signature, signed, fingerprint or recipient`);
  }
  if (!signed.includes(sha)) throw fail(`evidence ${n}: the acknowledgement is about another message`);
  const who = whoRaw.toLowerCase();
  if (!recipients.some((r) => r.toLowerCase() === who)) {
    throw new VerificationError(`evidence ${n}: the acknowledgement is by ${who}, who is not a recipient of the message`);
  }
  if (ring === null) return check(label, "skipped", `${NOT_HERE.openpgp} (signer key ${fpr})`);
  // The keys given are the checker's trusted keys, but carry no certification the page
  // could weigh: two for one address cannot be told apart (openpgp.py: several keys and
  // none certified).
  const signer = normalizeFingerprint(fpr);
  const theirsAll = ring.filter((k) => k.emails.includes(who)).map((k) => k.fingerprint);
  if (theirsAll.length > 1) {
    return check(label, "skipped", `several keys for ${who} given: cannot tell whether ${fpr} is ${who}'s`);
  }
  const theirs = theirsAll.join(" or ") || null;
  if (theirs !== null && !theirsAll.includes(signer)) throw notRecipientsKey(ev.number, signer, who, theirs);
  if (!ring.some((k) => k.fingerprint === signer || k.subkeys.includes(signer))) {
    return check(label, "skipped", `neither the signer's key ${fpr} nor a key for ${who} is in the keyring`);
  }
  let info;
  try {
    info = await verifyDetached(ring, encoder.encode(signed), sig);
  } catch (e) {
    if (!(e instanceof VerificationError)) throw e;
    throw fail(`evidence ${n}: acknowledgement signature: ${e.message}`);
  }
  if (signer !== info.primary && signer !== info.fingerprint) {
    throw fail(`evidence ${n}: the acknowledgement was signed by ${info.primary}, not the key it names (${fpr})`);
  }
  const email = (info.email || "").toLowerCase();
  if (theirs === null || email !== who) throw notRecipientsKey(ev.number, `${info.primary} (${email || "?"})`, who, theirs);
  return check(label, "ok", `signed by recipient ${email} (${info.primary})`);
}

/** The checks a bundle's members call for, in the order they run (what is listed as
 * "not run" after a failure). */
export function plannedChecks(files) {
  const items = ["notary key", "TSA chain"];
  const byNumber = new Map();
  const consistency = [];
  for (const name of files.keys()) {
    const m = EVIDENCE.exec(name);
    if (m) {
      const n = Number(m[1]);
      if (!byNumber.has(n)) byNumber.set(n, { event: m[2], tsr: false });
      if (m[3] === "tsr") byNumber.get(n).tsr = true;
    } else if (CONSISTENCY.test(name)) consistency.push("consistency");
  }
  const numbers = [...byNumber.keys()].sort((a, b) => a - b);
  for (const n of numbers) {
    const e = byNumber.get(n);
    if (e.tsr) items.push(`${pad2(n)} time-stamp`);
    items.push(`${pad2(n)} ${e.event}`);
  }
  items.push(...consistency, "sender signature");
  for (const n of numbers) if (byNumber.get(n).event === "ContentHandover") items.push(`${pad2(n)} acknowledgement`);
  items.push("documents");
  return items;
}

/** Parse trust inputs: a vkey text (or null) and PEM text of TSA roots (or null). */
export async function trustRoots(pemText) {
  if (!pemText || !pemText.trim()) return null;
  const roots = await loadPem(pemText);
  if (roots === null) throw new VerificationError("the trusted TSA root holds no PEM certificates");
  return roots;
}

/** Verify the members of a bundle (a Map). Returns the report; `report.valid` false
 * with `report.error` naming what failed (and `report.failed`, the check it failed in). */
export async function verifyFiles(files, { vkey = null, roots = null, keyring = null } = {}) {
  const v = {
    files,
    warnings: [],
    verifier: null,
    vkeyTrusted: false,
    rootTrusted: false,
    chain: [],
    roots: [],
    events: [],
    messageId: null,
    checkpoints: new Map(),
    consistency: [],
    cosigned: [],
  };
  const checks = [];
  let current = "bundle";
  try {
    for (const name of [MESSAGE, VKEY, CHAIN, ...DOCUMENTS]) if (!files.has(name)) throw fail(`the bundle has no ${name}`);
    v.message = files.get(MESSAGE);
    v.sha256 = hex(await sha256(v.message));
    current = "format";
    v.format = checkFormat(files);
    current = "notary key";
    checks.push(await checkNotaryKey(v, vkey));
    current = "TSA chain";
    checks.push(await checkTsaChain(v, roots));
    current = "evidence";
    const [numbered, consistencyFiles] = evidenceMembers(files);
    for (const [i, names] of numbered.entries()) {
      const number = i + 1;
      current = `${pad2(number)} evidence`;
      const ev = await readReceipt(v, number, names);
      current = `${pad2(number)} ${ev.statement.event}`;
      const statement = checkStatement(v, ev, names);
      current = `${pad2(number)} time-stamp`;
      const token = await checkToken(v, ev, names);
      checks.push(...(token === null ? [statement] : [token, statement]));
      v.events.push(ev);
    }
    current = "time order";
    checkTimeOrder(v.events);
    current = "consistency";
    v.cosigned = await readCosigned(v);
    const [anchored, anchorTokens] = await readAnchors(v); // evidence/anchor-N.* (format 4)
    checkCheckpoints(v, consistencyFiles, [...v.cosigned, ...anchored]);
    for (const [m, n] of v.consistency) checks.push(await checkConsistency(v, m, n, consistencyFiles.get(`${m}-${n}`)));
    current = "format";
    checkFormat5(v); // mdns.py mdn_facts: after the consistency proofs, as there
    const header = headerFacts(v.message);
    const rcpts = [...header.recipients];
    for (const ev of v.events) {
      for (const key of ["recipient", "recipients"]) {
        const val = ev.statement[key];
        for (const r of typeof val === "string" ? [val] : Array.isArray(val) ? val : []) {
          if (typeof r === "string" && !rcpts.includes(r)) rcpts.push(r.slice(0, 300));
        }
      }
    }
    current = "sender signature";
    checks.push(await checkSenderSignature(v, header, keyring));
    for (const ev of v.events) {
      if (ev.statement.event === "ContentHandover") {
        current = `${pad2(ev.number)} acknowledgement`;
        checks.push(
          isCmsAck(ev.statement)
            ? checkCmsAcknowledgement(ev, rcpts, v.sha256, v.format)
            : await checkAcknowledgement(ev, rcpts, v.sha256, keyring),
        );
      }
    }
    checks.push(check("documents", "skipped", NOT_HERE.documents));
    if (v.cosigned.length) checks.push(check("cosignatures", "skipped", NOT_HERE.cosignatures, false));
    if (anchorTokens) checks.push(check("outside time-stamps", "skipped", NOT_HERE.anchors, false));
    if ([...files.keys()].some((n) => RENEWAL.test(n))) checks.push(check("renewals", "skipped", NOT_HERE.renewals, false));
    if (membersOf(files.keys(), "mdns").length) checks.push(check("read receipts", "skipped", NOT_HERE.mdns, false));
    if (v.files.has("smime/signer-chain.pem")) checks.push(check("S/MIME sender signature", "skipped", NOT_HERE.smime, false));
    return report(v, checks, header, rcpts, null, null);
  } catch (e) {
    if (!(e instanceof VerificationError)) throw e;
    const r = report(v, checks, null, [], e.message, current);
    const done = new Set([...checks.map((c) => c.item), current]);
    r.not_run = plannedChecks(files).filter((item) => !done.has(item));
    return r;
  }
}

const PROVES = {
  SubmissionAcceptance: "the notary logged this message's SHA-256 at this time",
  SubmissionRejection: "the notary refused the message",
  RelayToNonERDS: "the notary handed the message to the recipient's mail server, which accepted it",
  RelayToNonERDSFailure: "delivery to the recipient failed for good",
  ContentHandover: "the recipient signed an acknowledgement of receipt with an OpenPGP key, and the notary logged it",
  ContentAccessTracking:
    "WEAK EVIDENCE: something fetched the recipient's tracking link. Mail proxies and scanners prefetch links, so this does not show that a person opened the message",
  VirusDetected: "a virus scan refused the content",
};
const ACCEPTED_BY = {
  smtp: "the notary's relay received this exact message (its SHA-256) for registered delivery at this time",
  api: "the sender had the notary time-stamp and log this message's SHA-256 at this time (direct mode: the notary saw only the hash, not the message, and did not deliver it)",
};

/** The certificate's lines about an event: server, reply, reason, TLS, signer key
 * (verify.py _details). */
export function details(stmt) {
  const out = [];
  const mx = stmt.mx || stmt.host;
  if (typeof mx === "string") out.push(`server: ${mx.slice(0, 200)}`);
  let reply = stmt.reply;
  if (reply && typeof reply === "object" && !Array.isArray(reply)) reply = `${reply.code ?? ""} ${reply.text ?? ""}`.trim();
  if (typeof reply === "string") out.push(`reply: ${reply.slice(0, 300)}`);
  if (typeof stmt.reason === "string") out.push(`reason: ${stmt.reason.slice(0, 300)}`);
  const tls = stmt.tls;
  if (tls && typeof tls === "object" && !Array.isArray(tls)) {
    out.push(`TLS: ${String(tls.version ?? "").slice(0, 40)} ${String(tls.cipher ?? "").slice(0, 80)}`);
  }
  if (typeof stmt.fingerprint === "string") out.push(`signer key: ${stmt.fingerprint.slice(0, 80)}`);
  // an S/MIME acknowledgement's signer (verify.py _details)
  if (typeof stmt.certificate_sha256 === "string") out.push(`signer certificate (S/MIME, SHA-256): ${stmt.certificate_sha256.slice(0, 80)}`);
  for (const [name, label] of [["assurance", "identity assurance"], ["released", "key share released"]]) {
    if (typeof stmt[name] === "string") out.push(`${label}: ${stmt[name].slice(0, 200)}`);
  }
  return out;
}

/** Added to a sealed ContentHandover (docs/sealed.md; facts.py SEALED_HANDOVER). */
const SEALED_HANDOVER = "; the message was sealed: the content could not be read before the signature was logged";

/** An S/MIME ContentHandover (facts.py SMIME_HANDOVER). */
const SMIME_HANDOVER = "the recipient signed an acknowledgement of receipt with an S/MIME certificate's key (CMS), and the notary logged it";

/** A pickup ContentHandover (docs/sealed.md "Pickup"; facts.py PICKUP_HANDOVER). */
const PICKUP_HANDOVER = "the recipient confirmed receipt on the notary's pickup page (no signature: the identity assurance says who could do that), and the notary logged it; the content could not be read before this was logged: the notary released its key share only after";

/** A ContentHandover's kind as verify.py _mode names it: sealed, pickup, smime or none. */
function handoverMode(s) {
  if (s.mode === "sealed" || s.mode === "pickup") return s.mode;
  return isCmsAck(s) ? "smime" : s.mode;
}

export function proves(event, withToken, channel, mode) {
  let text = event === "SubmissionAcceptance" ? ACCEPTED_BY[channel] || PROVES[event] : PROVES[event] || event;
  if (event === "ContentHandover" && mode === "sealed") text += SEALED_HANDOVER;
  else if (event === "ContentHandover" && mode === "pickup") text = PICKUP_HANDOVER;
  else if (event === "ContentHandover" && mode === "smime") text = SMIME_HANDOVER;
  if (withToken) text += "; an independent RFC 3161 time-stamp covers the message's SHA-256";
  return text;
}

/** genTime as the Python report writes it: seconds, then six digits of fraction. */
function genTimeText(t) {
  const frac = (t.micro ? t.micro.slice(1) : "").padEnd(6, "0").slice(0, 6);
  return new Date(Math.floor(t.ms / 1000) * 1000).toISOString().slice(0, 19) + "." + frac + "Z";
}

function report(v, checks, header, rcpts, error, failed) {
  const unchecked = checks.filter((c) => c.status === "skipped" && c.applies);
  const n = unchecked.length;
  return {
    valid: error === null,
    format: v.format || null,
    error,
    failed,
    verdict: error !== null ? "invalid" : n ? `valid, but ${n} check${n > 1 ? "s" : ""} could not run` : "valid",
    checks,
    unchecked: unchecked.map((c) => c.item),
    not_run: [],
    warnings: v.warnings,
    sha256: v.sha256 || null,
    message_id: v.messageId,
    sender: header ? header.sender : null,
    recipients: rcpts,
    vkey: v.verifier ? v.verifier.vkey() : null,
    vkey_trusted: v.vkeyTrusted,
    tsa_root_trusted: v.rootTrusted,
    tsa_chain: v.chain.map((c) => ({ subject: c.subjectText, sha256: c.fingerprint })),
    events: v.events.map((e) => ({
      number: e.number,
      event: e.statement.event,
      time: e.statement.time,
      recipient: typeof e.statement.recipient === "string" ? e.statement.recipient : null,
      index: Number(e.receipt.index),
      checkpoint_size: Number(e.checkpoint.size),
      timestamp: e.token ? genTimeText(e.token.genTime) : null,
      proves: proves(e.statement.event, e.token !== null, e.statement.channel, handoverMode(e.statement)),
      details: details(e.statement),
    })),
  };
}

/** Read and verify a bundle's bytes (the zip): the report, or a failed one. */
export async function verifyBundle(bytes, options = {}) {
  let files;
  try {
    files = await readMembers(bytes);
  } catch (e) {
    if (!(e instanceof VerificationError)) throw e;
    return report({ warnings: [], chain: [], events: [], verifier: null }, [], null, [], e.message, "bundle");
  }
  return verifyFiles(files, options);
}

export { HTML, PDF, VERIFY_TXT };
