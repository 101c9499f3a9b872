"""Renewing a proof bundle: archive time-stamps over the whole bundle, as RFC 4998
evidence records do (issue 14 item 7; docs/proof-bundle.md, "Renewals").

Renewal NN (01, 02, ...) adds three members:

- ``renewals/NN.json``: the manifest, canonical JSON (layout.receipt_text):
  ``{"covers": [{"name": ..., "sha256": ...}, ...], "hash": "sha256", "renewal": NN,
  "root": <hex>, "v": 1}``; ``covers`` is every member before it in the defined
  order: every member not under ``renewals/``, then those of renewals 01 .. NN-1,
  each sorted by name (UTF-8 bytes);
- ``renewals/NN.tsr``: an RFC 3161 token whose messageImprint is ``root``, the
  RFC 9162 Merkle tree hash (SHA-256) over the entries ``name || 0x00 || SHA-256(member)``
  in that order (the hash tree of RFC 4998 §4.2, with RFC 9162's leaf and node
  prefixes);
- ``renewals/NN.pem``: the certificates the token was verified against when it was
  made (the renewing TSA's root, and its chain where given).

So each renewal covers the bundle and every renewal before it (its token, its
manifest, its roots). A renewal changes no earlier member: the bundle's format,
documents and evidence stay as exported and verify as before.

Expiry (how ``proof verify`` judges the chain): each renewal's token must be valid
at its own genTime against its ``renewals/NN.pem`` (as any token); the token of
renewal NN and the TSA certificates of the bundle's evidence (for NN = 01) must
still have been unexpired when the next renewal's token was made (the next
genTime ≤ every notAfter on the path), so a later renewal vouches for an earlier
token while it could still be trusted. The last renewal's certificates must be
unexpired now, else a warning says to renew again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from certmail.bundle.layout import RENEWAL, fail, json_member, receipt_text
from certmail.bundle.report import Check
from keys.errors import VerificationError

if TYPE_CHECKING:
    from cryptography import x509

__all__ = ["chain_not_after", "check_renewals", "covered", "renewal_members", "tree_root"]

#: Most renewals in one bundle.
MAX_RENEWALS = 99


def _number(name: str) -> int:
    m = RENEWAL.fullmatch(name)
    return int(m[1]) if m else 0


def covered(files: Mapping[str, bytes], number: int) -> list[tuple[str, str]]:
    """(name, SHA-256 hex) of every member renewal ``number`` covers, in the defined order."""
    base = sorted((n for n in files if not n.startswith("renewals/")), key=lambda n: n.encode())
    earlier = sorted(
        (n for n in files if 0 < _number(n) < number), key=lambda n: (_number(n), n.encode())
    )
    return [(n, hashlib.sha256(files[n]).hexdigest()) for n in base + earlier]


def tree_root(entries: list[tuple[str, str]]) -> bytes:
    """The RFC 9162 tree hash over ``name || 0x00 || SHA-256(member)``, in order."""
    from notary.merkle import mth

    return mth([n.encode("utf-8") + b"\x00" + bytes.fromhex(h) for n, h in entries])


def renewal_members(
    files: Mapping[str, bytes],
    timestamp: Callable[[bytes], bytes],
    roots_pem: bytes,
) -> dict[str, bytes]:
    """The members of the next renewal of the bundle ``files``: ``timestamp(root)`` answers
    a verified DER token over the 32-byte tree root (the caller asks the TSA and checks
    the token against ``roots_pem``, which goes in the bundle)."""
    done = sorted({_number(n) for n in files if _number(n)})
    number = (done[-1] if done else 0) + 1
    if number > MAX_RENEWALS:
        raise ValueError(f"a bundle holds at most {MAX_RENEWALS} renewals")
    entries = covered(files, number)
    root = tree_root(entries)
    manifest = {
        "covers": [{"name": n, "sha256": h} for n, h in entries],
        "hash": "sha256",
        "renewal": number,
        "root": root.hex(),
        "v": 1,
    }
    stem = f"renewals/{number:02d}"
    return {
        f"{stem}.json": receipt_text(manifest),
        f"{stem}.tsr": timestamp(root),
        f"{stem}.pem": roots_pem,
    }


def _not_after(info: Any, roots: list[x509.Certificate]) -> datetime:
    """The earliest notAfter of the token's TSA certificate and the roots it chains to."""
    ends: list[datetime] = [info.tsa_cert.not_valid_after_utc]
    return min([*ends, *(r.not_valid_after_utc for r in roots)])


def _check_manifest(files: Mapping[str, bytes], number: int) -> bytes:
    """Renewal ``number``'s manifest lists exactly the members before it, unchanged, in
    their defined order; its tree root (VerificationError naming the member otherwise)."""
    stem = f"renewals/{number:02d}"
    for kind in ("json", "tsr", "pem"):
        if f"{stem}.{kind}" not in files:
            raise fail(f"renewal {number:02d} lacks {stem}.{kind}")
    manifest = json_member(files, f"{stem}.json")
    try:
        listed = [(str(c["name"]), str(c["sha256"])) for c in manifest["covers"]]
        root = bytes.fromhex(manifest["root"])
        if manifest["v"] != 1 or manifest["hash"] != "sha256" or manifest["renewal"] != number:
            raise ValueError("members")
    except (KeyError, TypeError, ValueError):
        raise fail(f"{stem}.json is not a renewal manifest") from None
    now = dict(covered(files, number))
    was = dict(listed)
    for name, digest in listed:
        if name not in now:
            raise fail(f"{name} was covered by renewal {number:02d} and is gone")
        if now[name] != digest:
            raise fail(f"{name} changed after renewal {number:02d}")
    added = [n for n in now if n not in was]
    if added:
        raise fail(f"{added[0]} was added after renewal {number:02d}")
    if [n for n, _ in listed] != [n for n, _ in covered(files, number)]:
        raise fail(f"{stem}.json does not list the members in their defined order")
    if tree_root(listed) != root:
        raise fail(f"{stem}.json: its root is not the tree hash of what it covers")
    return root


def _check_token(
    files: Mapping[str, bytes], number: int, root: bytes
) -> tuple[Any, list[x509.Certificate]]:
    """Renewal ``number``'s token is valid over ``root`` against its renewals/NN.pem."""
    from cryptography import x509

    from notary.rfc3161 import verify_token

    stem = f"renewals/{number:02d}"
    try:
        roots = x509.load_pem_x509_certificates(files[f"{stem}.pem"])
    except ValueError:
        raise fail(f"{stem}.pem holds no PEM certificates") from None
    try:
        info = verify_token(files[f"{stem}.tsr"], roots=roots, digest=root)
    except VerificationError as e:
        raise fail(f"{stem}.tsr: {e.message}") from None
    return info, roots


def chain_not_after(pem: bytes | None) -> datetime | None:
    """The earliest notAfter of the certificates in ``pem`` (tsa-chain.pem); None when
    there are none (the bundle's own checks then say what is wrong)."""
    from cryptography import x509

    try:
        certs = x509.load_pem_x509_certificates(pem or b"")
    except ValueError:
        return None
    return min((c.not_valid_after_utc for c in certs), default=None)


def check_renewals(
    files: Mapping[str, bytes],
    evidence_not_after: datetime | None,
    now: datetime | None = None,
) -> tuple[list[Check], list[str]]:
    """The checks of the bundle's renewals, in order, and warnings; VerificationError
    naming the member that changed or the renewal that fails. ``evidence_not_after``:
    the earliest notAfter of the evidence's TSA chain (the first renewal must be made
    before it)."""
    numbers = sorted({k for n in files if n.startswith("renewals/") and (k := _number(n))})
    if numbers != list(range(1, len(numbers) + 1)):
        raise fail("renewals are not numbered 01, 02, ... without gaps")
    roots_of = {n: _check_manifest(files, n) for n in numbers}  # every member first
    out: list[Check] = []
    limit = evidence_not_after
    for number in numbers:
        info, roots = _check_token(files, number, roots_of[number])
        if limit is not None and info.gen_time > limit:
            what = "the evidence's TSA certificates" if number == 1 else f"renewal {number - 1:02d}"
            raise fail(
                f"renewals/{number:02d}.tsr was made at {info.gen_time:%Y-%m-%dT%H:%M:%SZ}, "
                f"after {what} expired ({limit:%Y-%m-%dT%H:%M:%SZ}): the chain is broken"
            )
        limit = _not_after(info, roots)
        out.append(
            Check(
                f"renewal {number:02d}",
                "ok",
                f"renewals/{number:02d}.tsr: archive time-stamp over every member before it, "
                f"genTime {info.gen_time:%Y-%m-%dT%H:%M:%SZ}",
            )
        )
    warnings = []
    if numbers and limit is not None and limit < (now or datetime.now(UTC)):
        warnings.append(
            f"the last renewal's TSA certificates expired on {limit:%Y-%m-%d}: "
            "renew the bundle (certmail proof renew) with a TSA whose certificate is valid"
        )
    return out, warnings
