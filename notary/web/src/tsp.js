// RFC 3161 time-stamp tokens, checked as notary/rfc3161/reference.py checks them, plus
// the unsigned-part form of certificate/bundle/tokens.py: the CMS SignedData (RFC 5652),
// its one SignerInfo, the signed attributes (content type, message digest, ESS
// signing-certificate, RFC 5816), the signature (WebCrypto), the TSA certificate's
// extendedKeyUsage (RFC 3161 §2.3), its path to a trusted root at genTime, the tsa
// name and the message imprint.

import { concat, digest, equal, VerificationError } from "./bytes.js";
import { checkStrict, children, DerError, expect, integer, oid, readOne, readTlv, time } from "./der.js";
import { isCa, issuedBy, parseCertificate } from "./x509.js";

const SIGNED_DATA = "1.2.840.113549.1.7.2";
const TST_INFO = "1.2.840.113549.1.9.16.1.4";
const CONTENT_TYPE = "1.2.840.113549.1.9.3";
const MESSAGE_DIGEST = "1.2.840.113549.1.9.4";
const SIGNING_CERT = "1.2.840.113549.1.9.16.2.12";
const SIGNING_CERT_V2 = "1.2.840.113549.1.9.16.2.47";
const TIME_STAMPING = "1.3.6.1.5.5.7.3.8";
const HASHES = {
  "1.3.14.3.2.26": "sha1",
  "2.16.840.1.101.3.4.2.1": "sha256",
  "2.16.840.1.101.3.4.2.2": "sha384",
  "2.16.840.1.101.3.4.2.3": "sha512",
  "2.16.840.1.101.3.4.2.4": "sha224",
};
const SIGNATURES = {
  "1.2.840.10045.4.3.2": ["ecdsa", "sha256"],
  "1.2.840.10045.4.3.3": ["ecdsa", "sha384"],
  "1.2.840.10045.4.3.4": ["ecdsa", "sha512"],
  "1.2.840.10045.2.1": ["ecdsa", null],
  "1.2.840.113549.1.1.11": ["rsa", "sha256"],
  "1.2.840.113549.1.1.12": ["rsa", "sha384"],
  "1.2.840.113549.1.1.13": ["rsa", "sha512"],
  "1.2.840.113549.1.1.1": ["rsa", null],
};
const CURVES = { "1.2.840.10045.3.1.7": ["P-256", 32], "1.3.132.0.34": ["P-384", 48], "1.3.132.0.35": ["P-521", 66] };

const bad = (m) => new VerificationError(m);

function algorithm(t) {
  const parts = children(expect(t, 0x30, "algorithm identifier"));
  return { oid: oid(parts[0]), params: parts[1] ? parts[1].bytes : new Uint8Array(0) };
}

function signedTstInfo(token) {
  const ci = children(expect(readOne(token), 0x30, "ContentInfo"));
  if (oid(ci[0]) !== SIGNED_DATA) throw bad("not a CMS SignedData");
  const sd = children(expect(children(expect(ci[1], 0xa0, "ContentInfo"))[0], 0x30, "SignedData"));
  const [version, digestAlgs, encap, ...rest] = sd;
  const enc = children(expect(encap, 0x30, "EncapsulatedContentInfo"));
  if (oid(enc[0]) !== TST_INFO) throw bad("the signed content is not a TSTInfo");
  const tstDer = expect(children(expect(enc[1], 0xa0, "eContent"))[0], 0x04, "eContent").content;
  const tst = children(expect(readOne(tstDer), 0x30, "TSTInfo"));
  if (tst[0].tag !== 0x02 || tst[0].content.length !== 1 || tst[0].content[0] !== 1) {
    throw bad("unsupported TSTInfo version");
  }
  let certs = null;
  let crls = null;
  let i = 0;
  if (rest[i] && rest[i].tag === 0xa0) certs = rest[i++];
  if (rest[i] && rest[i].tag === 0xa1) crls = rest[i++];
  const signerInfos = expect(rest[i], 0x31, "SignerInfos");
  if (rest.length !== i + 1) throw new DerError("malformed SignedData");
  return { version, digestAlgs: children(expect(digestAlgs, 0x31, "digestAlgorithms")), certs, crls, signerInfos, tstDer, tst };
}

function tstFields(tst) {
  const [, policy, imprint, serial, genTime, ...opt] = tst;
  let tsa = null;
  for (const o of opt) if (o.tag === 0xa0) tsa = children(o)[0];
  const [alg, hashed] = children(expect(imprint, 0x30, "MessageImprint"));
  return {
    policy: oid(policy),
    imprintAlg: algorithm(alg).oid,
    hashed: expect(hashed, 0x04, "hashed message").content,
    serial: integer(serial),
    genTime: time(expect(genTime, 0x18, "genTime")),
    tsa,
  };
}

function singleSigner(sd) {
  const sis = children(sd.signerInfos);
  if (sis.length !== 1) throw bad(`expected one SignerInfo, found ${sis.length}`);
  if (integer(sd.version) !== 3n) throw bad("SignedData version must be 3 for TSTInfo content (RFC 5652 §5.1)");
  const f = children(expect(sis[0], 0x30, "SignerInfo"));
  const [version, sid, digestAlg, signedAttrs, sigAlg, signature, ...unsigned] = f;
  const want = sid.tag === 0x30 ? 1n : 3n;
  if (integer(version) !== want) throw bad("SignerInfo version does not match its sid (RFC 5652 §5.3)");
  const da = algorithm(digestAlg);
  if (!sd.digestAlgs.some((a) => algorithm(a).oid === da.oid)) {
    throw bad("the signer's digest algorithm is not among SignedData's digestAlgorithms");
  }
  if (signedAttrs.tag !== 0xa0) throw bad("the SignerInfo has no signed attributes");
  return { sid, digestAlg: da, signedAttrs, sigAlg: algorithm(sigAlg), signature: expect(signature, 0x04, "signature").content, unsigned };
}

/** The unsigned parts as certmail's TSA writes them (tokens.py _check_token_form). */
function checkForm(sd, si, chain) {
  const unexpected = (what) => bad(what);
  if (sd.digestAlgs.length !== 1) throw unexpected("unexpected digest algorithms");
  for (const a of [algorithm(sd.digestAlgs[0]), si.digestAlg, si.sigAlg]) {
    if (!(a.params.length === 0 || equal(a.params, new Uint8Array([5, 0])))) {
      throw unexpected("unexpected algorithm parameters");
    }
  }
  if (si.unsigned.length || sd.crls) throw unexpected("unexpected unsigned content");
  for (const c of sd.certs ? children(sd.certs) : []) {
    if (c.tag !== 0x30 || !chain.some((x) => equal(x.der, c.bytes))) {
      throw unexpected("embeds a certificate that is not in tsa-chain.pem");
    }
  }
}

async function findSigner(sid, pool) {
  if (sid.tag === 0x30) {
    const [issuer, serial] = children(sid);
    const n = integer(serial);
    for (const c of pool) if (c.serial === n && equal(c.issuer, issuer.bytes)) return c;
  } else if (sid.tag === 0x80) {
    for (const c of pool) {
      const ski = c.extensions.get("2.5.29.14");
      if (ski && equal(readOne(ski.value).content, sid.content)) return c;
    }
  }
  throw bad("the signer's certificate is neither in the token nor among the given certificates");
}

function signedAttributes(si) {
  const attrs = new Map();
  for (const a of children(si.signedAttrs)) {
    const [type, values] = children(expect(a, 0x30, "attribute"));
    const name = oid(type);
    if (attrs.has(name)) throw bad(`signed attribute ${name} appears twice`);
    const vs = children(expect(values, 0x31, "attribute values"));
    if (vs.length !== 1) throw bad(`signed attribute ${name} must have exactly one value`);
    attrs.set(name, vs[0]);
  }
  if (!attrs.size) throw bad("the SignerInfo has no signed attributes");
  // what the signature covers: the attributes with the SET OF tag (RFC 5652 §5.4)
  const toVerify = concat(new Uint8Array([0x31]), si.signedAttrs.bytes.subarray(1));
  return [toVerify, attrs];
}

async function checkContentAttributes(si, attrs, tstDer) {
  const ct = attrs.get(CONTENT_TYPE);
  if (!ct || ct.tag !== 0x06 || oid(ct) !== TST_INFO) throw bad("the content-type attribute is missing or not TSTInfo");
  const name = HASHES[si.digestAlg.oid];
  if (!["sha256", "sha384", "sha512"].includes(name)) {
    throw bad(`unsupported signer digest algorithm ${name || si.digestAlg.oid}`);
  }
  const md = attrs.get(MESSAGE_DIGEST);
  if (!md || md.tag !== 0x04 || !equal(md.content, await digest(name, tstDer))) {
    throw bad("the message-digest attribute does not match the TSTInfo");
  }
  return name;
}

async function checkSigningCertificate(attrs, signer) {
  const v2 = attrs.get(SIGNING_CERT_V2);
  const v1 = attrs.get(SIGNING_CERT);
  let first;
  let certHash;
  if (v2) {
    first = children(children(children(v2)[0])[0]);
    let hashName = "sha256";
    if (first[0].tag === 0x30) hashName = HASHES[algorithm(first.shift()).oid];
    if (!["sha256", "sha384", "sha512"].includes(hashName)) throw bad(`unsupported ESSCertIDv2 hash ${hashName}`);
    certHash = await digest(hashName, signer.der);
  } else if (v1) {
    first = children(children(children(v1)[0])[0]);
    certHash = await digest("sha1", signer.der);
  } else {
    throw bad("no ESS signing-certificate attribute (RFC 3161 §2.4.2, RFC 5816)");
  }
  if (!equal(expect(first[0], 0x04, "certHash").content, certHash)) {
    throw bad("the ESS signing-certificate attribute names another certificate");
  }
  if (first[1]) {
    const serial = children(expect(first[1], 0x30, "issuerSerial"))[1];
    if (integer(serial) !== signer.serial) throw bad("the ESS signing-certificate serial number is not the signer's");
  }
}

function ecdsaRaw(sig, size) {
  const parts = children(expect(readOne(sig), 0x30, "ECDSA signature"));
  if (parts.length !== 2) throw bad("the signature does not verify");
  const out = new Uint8Array(2 * size);
  parts.forEach((p, i) => {
    let c = expect(p, 0x02, "ECDSA signature").content;
    while (c.length > size && c[0] === 0) c = c.subarray(1);
    if (c.length > size) throw bad("the signature does not verify");
    out.set(c, (i + 1) * size - c.length);
  });
  return out;
}

async function checkSignature(si, signer, toVerify, hashName) {
  const [kind, h] = SIGNATURES[si.sigAlg.oid] || [null, null];
  if (h !== null && h !== hashName) throw bad("signature and digest algorithms disagree");
  const spki = children(readOne(signer.spki));
  const keyAlg = children(spki[0]);
  const hash = { sha256: "SHA-256", sha384: "SHA-384", sha512: "SHA-512" }[hashName];
  let ok;
  try {
    if (kind === "ecdsa" && oid(keyAlg[0]) === "1.2.840.10045.2.1") {
      const [curve, size] = CURVES[oid(keyAlg[1])] || [];
      if (!curve) throw bad(`unsupported signature algorithm ${si.sigAlg.oid}`);
      const key = await crypto.subtle.importKey("spki", signer.spki, { name: "ECDSA", namedCurve: curve }, false, ["verify"]);
      ok = await crypto.subtle.verify({ name: "ECDSA", hash }, key, ecdsaRaw(si.signature, size), toVerify);
    } else if (kind === "rsa" && oid(keyAlg[0]) === "1.2.840.113549.1.1.1") {
      const key = await crypto.subtle.importKey("spki", signer.spki, { name: "RSASSA-PKCS1-v1_5", hash }, false, ["verify"]);
      ok = await crypto.subtle.verify({ name: "RSASSA-PKCS1-v1_5" }, key, si.signature, toVerify);
    } else {
      throw bad(`unsupported signature algorithm ${si.sigAlg.oid}`);
    }
  } catch (e) {
    if (e instanceof VerificationError) throw e;
    ok = false;
  }
  if (!ok) throw bad("the signature does not verify");
}

function checkEku(cert) {
  const eku = cert.extensions.get("2.5.29.37");
  if (!eku) throw bad("the TSA certificate has no extendedKeyUsage");
  if (!eku.critical) throw bad("the TSA certificate's extendedKeyUsage is not critical (RFC 3161 §2.3)");
  const purposes = children(readOne(eku.value)).map(oid);
  if (purposes.length !== 1 || purposes[0] !== TIME_STAMPING) {
    throw bad("the TSA certificate's extendedKeyUsage is not exactly timeStamping");
  }
}

const validAt = (c, when) => c.notBefore <= when && when <= c.notAfter;

async function checkChain(leaf, pool, roots, when) {
  if (!validAt(leaf, when)) {
    throw bad(`the TSA certificate was not valid at genTime ${new Date(when).toISOString().slice(0, 19)}Z`);
  }
  const candidates = [...roots, ...pool];
  const isRoot = (c) => roots.some((r) => equal(r.der, c.der));
  const walk = async (cert, depth) => {
    if (isRoot(cert)) return true;
    if (depth >= 8) return false;
    for (const parent of candidates) {
      if (equal(parent.der, cert.der) || !equal(parent.subject, cert.issuer)) continue;
      if (!(isCa(parent) && validAt(parent, when))) continue;
      if ((await issuedBy(cert, parent)) && (await walk(parent, depth + 1))) return true;
    }
    return false;
  };
  if (!(await walk(leaf, 0))) {
    throw bad("the TSA certificate does not chain to a trusted root with every certificate valid at genTime");
  }
}

/** Verify `token` over `data`; return {genTime, serial, policy, signer}. With `form`
 * (certmail's own TSA) its unsigned parts must be as certmail writes them; an outside
 * TSA's token (anchors) is checked without it, as the reference verifier does. */
export async function verifyToken(token, { roots, data, chain, form = true }) {
  let sd;
  try {
    checkStrict(readOne(token));
    sd = signedTstInfo(token);
  } catch (e) {
    if (e instanceof DerError) throw bad(`the time-stamp token is malformed (${e.message})`);
    throw e;
  }
  try {
    const si = singleSigner(sd);
    if (form) checkForm(sd, si, chain);
    const embedded = [];
    for (const c of sd.certs ? children(sd.certs) : []) embedded.push(await parseCertificate(c.bytes));
    const pool = [...chain, ...embedded];
    const signer = await findSigner(si.sid, [...pool, ...roots]);
    const [toVerify, attrs] = signedAttributes(si);
    const hashName = await checkContentAttributes(si, attrs, sd.tstDer);
    await checkSigningCertificate(attrs, signer);
    await checkSignature(si, signer, toVerify, hashName);
    checkEku(signer);
    const tst = tstFields(sd.tst);
    await checkChain(signer, pool, roots, tst.genTime.ms);
    if (tst.tsa !== null) {
      const name = tst.tsa.tag === 0xa4 ? children(tst.tsa)[0] : null;
      if (name === null || !equal(name.bytes, signer.subject)) throw bad("the tsa name does not match the signer certificate");
    }
    const imprintHash = HASHES[tst.imprintAlg];
    if (!imprintHash || imprintHash === "sha224") throw bad(`unsupported message imprint algorithm ${tst.imprintAlg}`);
    if (!equal(tst.hashed, await digest(imprintHash, data))) throw bad("the message imprint does not match the data");
    return { genTime: tst.genTime, serial: tst.serial, policy: tst.policy, signer };
  } catch (e) {
    if (e instanceof DerError || !(e instanceof VerificationError)) {
      throw bad(`the time-stamp token is malformed (${e.message})`);
    }
    throw e;
  }
}

export { readTlv };
