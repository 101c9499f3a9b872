// X.509 certificates (RFC 5280) as the TSA checks need them: the fields read with the
// strict DER reader, signatures checked with PKI.js over WebCrypto, and the TSA chain
// file checked as certmail/bundle/checks.py checks tsa-chain.pem.

import * as asn1js from "asn1js";
import * as pkijs from "pkijs";

import { b64decodeCanonical, b64encode, equal, fail, hex, sha256 } from "./bytes.js";
import { checkStrict, children, DerError, expect, integer, oid, readOne, time } from "./der.js";
import { CHAIN } from "./layout.js";

const NAMES = { "2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU" };

function nameText(nameTlv) {
  const rdns = children(nameTlv).map((set) =>
    children(set)
      .map((atv) => {
        const [type, value] = children(atv);
        const o = oid(type);
        const v = new TextDecoder().decode(value.content).replace(/([,+"\\<>;])/g, "\\$1");
        return `${NAMES[o] || o}=${v}`;
      })
      .join("+"),
  );
  return rdns.reverse().join(",");
}

/** A parsed certificate: DER, fields, extensions by OID, and a PKI.js object. */
export async function parseCertificate(der) {
  const top = readOne(der);
  checkStrict(top);
  const [tbs, , sig] = children(expect(top, 0x30, "certificate"));
  if (!sig || sig.tag !== 0x03) throw new DerError("malformed certificate");
  let f = children(expect(tbs, 0x30, "TBSCertificate"));
  if (f[0].tag === 0xa0) f = f.slice(1);
  const [serial, , issuer, validity, subject, spki, ...rest] = f;
  const [nb, na] = children(validity);
  const extensions = new Map();
  for (const x of rest) {
    if (x.tag !== 0xa3) continue;
    for (const ext of children(children(x)[0])) {
      const parts = children(ext);
      const critical = parts.length === 3 && parts[1].content[0] === 0xff;
      extensions.set(oid(parts[0]), { critical, value: parts[parts.length - 1].content });
    }
  }
  const parsed = asn1js.fromBER(der);
  if (parsed.offset === -1) throw new DerError("malformed certificate");
  return {
    der,
    serial: integer(serial),
    issuer: issuer.bytes,
    subject: subject.bytes,
    subjectText: nameText(subject),
    notBefore: time(nb).ms,
    notAfter: time(na).ms,
    spki: spki.bytes,
    extensions,
    fingerprint: hex(await sha256(der)),
    pki: new pkijs.Certificate({ schema: parsed.result }),
  };
}

/** Whether `cert` is issued by `parent`: names, then the signature (PKI.js, WebCrypto). */
export async function issuedBy(cert, parent) {
  if (!equal(cert.issuer, parent.subject)) return false;
  try {
    return await cert.pki.verify(parent.pki);
  } catch {
    return false;
  }
}

export function isCa(cert) {
  const bc = cert.extensions.get("2.5.29.19");
  if (!bc) return false;
  const seq = readOne(bc.value);
  const parts = children(seq);
  if (!parts.length || parts[0].tag !== 0x01 || parts[0].content[0] !== 0xff) return false;
  const ku = cert.extensions.get("2.5.29.15");
  if (!ku) return true;
  const bits = readOne(ku.value).content; // BIT STRING: unused-bits byte, then the bits
  return bits.length > 1 && (bits[1] & 0x04) !== 0; // keyCertSign is bit 5
}

export function samePem(a, b) {
  return equal(a.der, b.der);
}

// Any PEM block; its BEGIN and END labels must agree (as the Rust pem parser under
// cryptography requires), and only CERTIFICATE blocks are read.
const PEM = /-----BEGIN ([^\n-]*)-----([\s\S]*?)-----END ([^\n-]*)-----/g;

/** PEM text in the form cryptography writes (64-character lines). */
export function pemOf(der) {
  const b64 = b64encode(der);
  const lines = b64.match(/.{1,64}/g) || [];
  return `-----BEGIN CERTIFICATE-----\n${lines.join("\n")}\n-----END CERTIFICATE-----\n`;
}

/** Certificates from PEM text (any whitespace in the base64); null when none are readable. */
export async function loadPem(text) {
  const out = [];
  for (const m of text.matchAll(PEM)) {
    if (m[1] !== m[3]) return null;
    if (m[1] !== "CERTIFICATE") continue;
    const b64 = m[2].replace(/[\s]+/g, "");
    let der;
    try {
      der = b64decodeCanonical(b64);
      out.push(await parseCertificate(der));
    } catch {
      return null;
    }
  }
  return out.length ? out : null;
}

/** tsa-chain.pem: canonical PEM, each certificate issued by the next, the last a valid
 * self-signed root (checks.py _pem_chain). */
export async function pemChain(data) {
  const text = new TextDecoder("latin1").decode(data);
  const certs = await loadPem(text);
  if (certs === null) throw fail(`${CHAIN} holds no readable PEM certificates`);
  if (certs.map((c) => pemOf(c.der)).join("") !== text) throw fail(`${CHAIN} is not in its canonical PEM form`);
  if (certs.length > 8) throw fail(`${CHAIN} holds too many certificates`);
  for (let i = 0; i + 1 < certs.length; i++) {
    if (!(await issuedBy(certs[i], certs[i + 1]))) {
      throw fail(`${CHAIN}: a certificate is not issued by the next one`);
    }
  }
  const last = certs[certs.length - 1];
  if (!(await issuedBy(last, last))) throw fail(`${CHAIN} does not end with a valid self-signed root`);
  return certs;
}
