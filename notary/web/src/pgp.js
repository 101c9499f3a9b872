// OpenPGP signatures (RFC 4880, RFC 9580) with OpenPGP.js, for the two checks of
// certmail/bundle/openpgp.py: the sender's signature of a signed-only message.eml and
// each recipient's acknowledgement. The keys are the ones the person checking pastes
// (trust roots, like the notary key): they stand where `--gnupghome` stands for the CLI.

import * as openpgp from "openpgp";

import { VerificationError } from "./bytes.js";

export class UnknownKey extends VerificationError {}

const emailOf = (userID) => {
  const m = /<([^<>]+)>\s*$/.exec(userID) || /^\s*([^\s<>]+@[^\s<>]+)\s*$/.exec(userID);
  return m ? m[1].toLowerCase() : "";
};

/** The keys of armored text: [{fingerprint, subkeys, emails, primaryEmail, key}]. */
export async function readKeyring(armored) {
  if (!armored || !armored.trim()) return null;
  // one armor block per key file: read each (readKeys reads the first block only)
  const blocks = armored.match(/-----BEGIN PGP PUBLIC KEY BLOCK-----[\s\S]*?-----END PGP PUBLIC KEY BLOCK-----/g);
  if (!blocks) throw new VerificationError("no OpenPGP public key block in the keys given");
  const keys = [];
  for (const block of blocks) {
    try {
      keys.push(...(await openpgp.readKeys({ armoredKeys: block })));
    } catch (e) {
      throw new VerificationError(`the OpenPGP keys could not be read (${e.message})`);
    }
  }
  const ring = [];
  for (const key of keys) {
    let primaryEmail = "";
    try {
      primaryEmail = emailOf((await key.getPrimaryUser()).user.userID.userID);
    } catch {
      primaryEmail = "";
    }
    ring.push({
      fingerprint: key.getFingerprint().toUpperCase(),
      subkeys: key.getSubkeys().map((s) => s.getFingerprint().toUpperCase()),
      emails: key.users.filter((u) => u.userID).map((u) => emailOf(u.userID.userID)),
      primaryEmail,
      key,
    });
  }
  return ring;
}

/** Verify a detached signature over `data` (bytes) with the ring's keys; the signer
 * {fingerprint (of the signing key), primary, email}, or VerificationError (UnknownKey
 * when no key of the ring made it). */
export async function verifyDetached(ring, data, armoredSignature) {
  let signature;
  try {
    signature = await openpgp.readSignature({ armoredSignature });
  } catch {
    throw new VerificationError("not an OpenPGP signature");
  }
  const message = await openpgp.createMessage({ binary: data });
  const result = await openpgp.verify({ message, signature, verificationKeys: ring.map((k) => k.key) });
  const sig = result.signatures[0];
  if (!sig) throw new VerificationError("not an OpenPGP signature");
  const keyId = sig.keyID.toHex().toUpperCase();
  const owner = ring.find((k) => [k.fingerprint, ...k.subkeys].some((f) => f.endsWith(keyId)));
  if (!owner) throw new UnknownKey(`signed by an unknown key ${keyId}; cannot verify the signature`);
  try {
    await sig.verified;
  } catch {
    throw new VerificationError("BAD signature: the data or the signature was modified");
  }
  const used = [owner.fingerprint, ...owner.subkeys].find((f) => f.endsWith(keyId));
  return { fingerprint: used, primary: owner.fingerprint, email: owner.primaryEmail };
}
