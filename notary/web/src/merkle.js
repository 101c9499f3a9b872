// RFC 9162 §2.1 Merkle tree hashes and proof checks (the port of notary/merkle.py).

import { concat, equal, sha256, VerificationError } from "./bytes.js";

/** SHA-256(0x00 || entry) */
export function leafHash(entry) {
  return sha256(concat(new Uint8Array([0]), entry));
}

/** SHA-256(0x01 || left || right) */
export function nodeHash(left, right) {
  return sha256(concat(new Uint8Array([1]), left, right));
}

// Sizes and indexes are BigInt: a tree holds up to 2**63 - 1 leaves.
const odd = (x) => (x & 1n) === 1n;

const EMPTY_ROOT_HEX = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

function checkHash(h, what) {
  if (!(h instanceof Uint8Array) || h.length !== 32) throw new VerificationError(`${what} is not a 32-byte hash`);
}

function checkProof(proof) {
  proof.forEach((h, i) => checkHash(h, `proof hash ${i}`));
}

/** RFC 9162 §2.1.3.2 */
export async function verifyInclusion(leaf, index, size, proof, root) {
  checkHash(leaf, "leaf hash");
  checkHash(root, "root hash");
  checkProof(proof);
  if (index < 0n || size < 0n) throw new VerificationError("inclusion proof: negative index or size");
  if (index >= size) {
    throw new VerificationError(`inclusion proof: index ${index} is not in a tree of size ${size}`);
  }
  let fn = index;
  let sn = size - 1n;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0n) throw new VerificationError("inclusion proof is too long");
    if (odd(fn) || fn === sn) {
      r = await nodeHash(p, r);
      if (!odd(fn)) {
        while (fn && !odd(fn)) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) throw new VerificationError("inclusion proof is too short");
  if (!equal(r, root)) throw new VerificationError("inclusion proof does not lead to the root hash");
}

/** RFC 9162 §2.1.4.2; equal sizes need an empty proof and equal roots, and a non-empty
 * tree is never proved consistent with the empty tree (notary/merkle.py). */
export async function verifyConsistency(oldSize, newSize, proof, oldRoot, newRoot) {
  checkProof(proof);
  if (oldSize < 0n || newSize < 0n) throw new VerificationError("consistency proof: negative tree size");
  if (oldSize > newSize) {
    throw new VerificationError(
      `consistency proof: old size ${oldSize} is larger than new size ${newSize}`,
    );
  }
  if (oldSize === newSize) {
    if (proof.length) throw new VerificationError("consistency proof between equal sizes must be empty");
    if (!equal(oldRoot, newRoot)) throw new VerificationError("roots of the same tree size differ");
    if (oldSize === 0n && Array.from(oldRoot, (b) => b.toString(16).padStart(2, "0")).join("") !== EMPTY_ROOT_HEX) {
      throw new VerificationError("root of the empty tree is not the empty hash");
    }
    return;
  }
  checkHash(oldRoot, "old root hash");
  checkHash(newRoot, "new root hash");
  if (oldSize === 0n) throw new VerificationError("a consistency proof from the empty tree is meaningless");
  if (!proof.length) throw new VerificationError("consistency proof is empty");
  const path = [...proof];
  if ((oldSize & (oldSize - 1n)) === 0n) path.unshift(oldRoot);
  let fn = oldSize - 1n;
  let sn = newSize - 1n;
  while (odd(fn)) {
    fn >>= 1n;
    sn >>= 1n;
  }
  let fr = path[0];
  let sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0n) throw new VerificationError("consistency proof is too long");
    if (odd(fn) || fn === sn) {
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
      if (!odd(fn)) {
        while (fn && !odd(fn)) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      sr = await nodeHash(sr, c);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) throw new VerificationError("consistency proof is too short");
  if (!equal(fr, oldRoot)) throw new VerificationError("consistency proof does not lead to the old root hash");
  if (!equal(sr, newRoot)) throw new VerificationError("consistency proof does not lead to the new root hash");
}
