"""The checks of a proof bundle's evidence (DESIGN §4.1-4.5), one function per item.

Each check either returns the :class:`Check` that goes into the report (and records
what it established on the :class:`Verified` it is given) or raises
VerificationError naming what failed; :mod:`certmail.bundle.verify` runs them in
order. The notary key and its signed-note checkpoints (C2SP signed-note, Ed25519),
the TSA chain (RFC 5280 issuance up to a self-signed root), each receipt's
inclusion proof and statement (RFC 9162 §2.1.3, DESIGN §4.2-4.3), forks and
consistency between checkpoints (RFC 9162 §2.1.4). RFC 3161 tokens:
:mod:`certmail.bundle.tokens`; OpenPGP: :mod:`certmail.bundle.openpgp`.

The caches below are pure functions of their bytes (every bundle of one notary
carries the same key, chain and a few shared checkpoints).
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from certmail.bundle.layout import (
    CHAIN,
    CONSISTENCY,
    EVIDENCE,
    FEATURES,
    FORMAT_FILE,
    FORMATS,
    LABELLED,
    MAX_EVENTS,
    MESSAGE,
    VKEY,
    fail,
    features_in,
    json_member,
    requires,
)
from certmail.bundle.report import Check
from keys.errors import MalformedError, VerificationError
from notary import merkle
from notary.note import Verifier

if TYPE_CHECKING:
    from cryptography import x509

    from certmail.mime import Entity
    from notary.checkpoint import Checkpoint
    from notary.mime import Buffer
    from notary.receipt import Receipt

UNTRUSTED_VKEY = (
    "no trusted verifier key given: checkpoints were checked against the bundle's own "
    "notary.vkey, which anyone who forged the bundle could have replaced; "
    "pass --vkey with the notary's key from a source you trust"
)
UNTRUSTED_ROOT = (
    "no trusted TSA root given: time-stamps were checked against the root at the end of "
    "the bundle's own tsa-chain.pem; pass --tsa-root with the TSA's root from a source "
    "you trust"
)
#: The sender-signature check of a message that is not OpenPGP/MIME (nothing to check:
#: :func:`certmail.bundle.openpgp.check_sender_signature`, and the verifier without it).
NOT_OPENPGP = Check("sender signature", "skipped", "message.eml is not OpenPGP/MIME", applies=False)


@dataclass
class Event:
    """One verified evidence/NN-<event> set."""

    number: int
    stem: str
    receipt: Receipt
    statement: dict[str, Any]
    checkpoint: Checkpoint  # signature verified
    proof_text: bytes  # the receipt's "proof" member, UTF-8
    token: Any = None  # notary.rfc3161.TokenInfo, when there is one


@dataclass
class Verified:
    """What the checks have established so far; each check fills in its part."""

    files: Mapping[str, bytes]
    digest: bytes  # SHA-256 of message.eml
    warnings: list[str] = field(default_factory=list)
    verifier: Verifier | None = None
    vkey_trusted: bool = False
    chain: tuple[x509.Certificate, ...] = ()
    roots: tuple[x509.Certificate, ...] = ()
    root_trusted: bool = False
    events: list[Event] = field(default_factory=list)
    message_id: str | None = None
    checkpoints: dict[int, Checkpoint] = field(default_factory=dict)
    consistency: list[tuple[int, int]] = field(default_factory=list)
    format: int = 1  # the bundle format version (bundle.json)
    keys: tuple[tuple[str, str], ...] = ()  # keys/: (fingerprint, address), format 2
    cosigned: dict[int, Checkpoint] = field(default_factory=dict)  # format 3, by size
    anchors: list[Any] = field(default_factory=list)  # format 4: certmail.bundle.anchors.Anchor
    #: (message.eml's bytes, their top entity or the error reading them): message_entity
    parsed: tuple[Buffer, Entity | Exception] | None = field(default=None, repr=False)
    #: message.eml when it is not in ``files`` (at export: its file, read in pieces)
    message_file: Buffer | None = field(default=None, repr=False)

    @property
    def message(self) -> Buffer:
        return self.files[MESSAGE] if self.message_file is None else self.message_file

    def message_entity(self) -> Entity:
        """message.eml's top MIME entity (:func:`certmail.mime.parse_entity`), read once
        for every check that reads it (again when the files are replaced: the same bytes
        object or none); raises what that raises, each time."""
        message = self.message
        if self.parsed is None or self.parsed[0] is not message:
            from certmail.mime import parse_entity

            try:
                self.parsed = (message, parse_entity(message))
            except Exception as e:  # kept and raised again, unchanged
                self.parsed = (message, e)
        result = self.parsed[1]
        if isinstance(result, Exception):
            raise result
        return result

    @property
    def sha256(self) -> str:
        return self.digest.hex()


# ------------------------------------------------------------------- caches


@lru_cache(maxsize=4096)
def _good_signature(verifier: Verifier, text: bytes, signature: bytes) -> None:
    """``Verifier.verify``, remembered for the (key, text, signature) that verified
    (lru_cache keeps no exception, so only successes are remembered)."""
    Verifier.verify(verifier, text, signature)


class _CachingVerifier(Verifier):
    """A Verifier that remembers the signatures it verified, by their exact bytes."""

    __slots__ = ()

    def verify(self, text: bytes, signature: bytes) -> None:
        _good_signature(self, bytes(text), bytes(signature))


@lru_cache(maxsize=64)
def _verifier(vkey: str) -> Verifier:
    """The checkpoint verifier of a vkey text (MalformedError)."""
    base = Verifier.from_vkey(vkey)
    return _CachingVerifier(base.name, base.public_key)


@lru_cache(maxsize=256)
def cert_facts(cert: x509.Certificate) -> tuple[str, str]:
    """The subject (RFC 4514, cut to 200 characters) and SHA-256 fingerprint (hex)."""
    from cryptography.hazmat.primitives import hashes

    return cert.subject.rfc4514_string()[:200], cert.fingerprint(hashes.SHA256()).hex()


@lru_cache(maxsize=64)
def _pem_chain(data: bytes) -> tuple[x509.Certificate, ...]:
    """tsa-chain.pem's certificates: canonical PEM, each issued by the next, the last a
    valid self-signed root."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise fail(f"{CHAIN} holds no readable PEM certificates") from None
    if b"".join(c.public_bytes(Encoding.PEM) for c in certs) != data:
        raise fail(f"{CHAIN} is not in its canonical PEM form")
    if len(certs) > 8:
        raise fail(f"{CHAIN} holds too many certificates")
    for child, parent in itertools.pairwise(certs):
        if not _issued_by(child, parent):
            raise fail(f"{CHAIN}: a certificate is not issued by the next one")
    if not _issued_by(certs[-1], certs[-1]):
        raise fail(f"{CHAIN} does not end with a valid self-signed root")
    return tuple(certs)


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except Exception:
        return False
    return True


# ------------------------------------------------------------------- the checks


def require_members(files: Mapping[str, bytes], names: Sequence[str]) -> None:
    """Every one of ``names`` is in the bundle."""
    for name in names:
        if name not in files:
            raise fail(f"the bundle has no {name}")


def check_format(files: Mapping[str, bytes]) -> int:
    """The bundle's format version: bundle.json's (format 2 on, in its one form), else 1;
    no bundle holds a member of a later format (:data:`FEATURES`), and a bundle of format
    3 or 4 holds its own format's members (:data:`LABELLED`: it is written only then)."""
    present = features_in(files)
    if FORMAT_FILE not in files:
        later = [n for feature in FEATURES for n in present.get(feature, ())]
        if later:
            raise fail(f"{later[0]} in a bundle without {FORMAT_FILE} (format 1)")
        return 1
    obj = json_member(files, FORMAT_FILE)
    version = obj.get("format") if isinstance(obj, dict) and len(obj) == 1 else None
    # json_member has checked that the bytes are receipt_text(obj), i.e. format_text(version)
    if type(version) is not int or version == 1:
        raise fail(f"{FORMAT_FILE} is not a format version")
    if version not in FORMATS:
        raise VerificationError(
            f"{FORMAT_FILE}: bundle format {version} is newer than this certmail knows "
            f"(formats {', '.join(map(str, FORMATS))})",
            hint="upgrade certmail to verify this bundle",
        )
    for feature, (since, what, _) in FEATURES.items():
        names = sorted(present.get(feature, ()))
        if names and not requires(version, feature):
            raise fail(f"{names[0]} in a bundle of format {version} ({what}: {since})")
    if version in LABELLED and LABELLED[version] not in present:
        said = f"{FORMAT_FILE} says format {version}"
        raise fail(f"{said}, but the bundle holds nothing of format {version}")
    return version


def check_notary_key(v: Verified, vkey: str | None) -> Check:
    """notary.vkey is one line, a verifier key, and the trusted ``vkey`` when one is given."""
    try:
        vkey_text = v.files[VKEY].decode("ascii")
    except UnicodeDecodeError:
        raise fail(f"{VKEY} is not a verifier key") from None
    if not vkey_text.endswith("\n") or vkey_text.count("\n") != 1:
        raise fail(f"{VKEY} must be one line")
    try:
        bundle_verifier = _verifier(vkey_text[:-1])
    except MalformedError as e:
        raise fail(f"{VKEY}: {e.message}") from None
    if vkey is None:
        v.verifier = bundle_verifier
        v.warnings.append(UNTRUSTED_VKEY)
        return Check("notary key", "warning", f"not pinned: using {VKEY} from the bundle")
    try:
        trusted = _verifier(vkey.strip())
    except MalformedError as e:
        raise VerificationError(f"the trusted verifier key is malformed: {e.message}") from None
    if trusted != bundle_verifier or trusted.vkey() != vkey_text[:-1]:
        raise fail(f"{VKEY} is not the trusted verifier key {trusted.vkey()}")
    v.verifier, v.vkey_trusted = trusted, True
    return Check("notary key", "ok", f"{VKEY} is the trusted key {trusted.vkey()}")


def check_tsa_chain(v: Verified, tsa_roots: Sequence[x509.Certificate] | None) -> Check:
    """tsa-chain.pem is a valid chain, ending at a trusted root when roots are given."""
    v.chain = _pem_chain(v.files[CHAIN])
    last = v.chain[-1]
    if not tsa_roots:
        v.roots = (last,)
        v.warnings.append(UNTRUSTED_ROOT)
        return Check("TSA chain", "warning", f"not pinned: using the root at the end of {CHAIN}")
    v.roots = tuple(tsa_roots)
    if last not in v.roots and not any(_issued_by(last, r) for r in v.roots):
        raise fail(f"{CHAIN} does not end at a trusted TSA root")
    v.root_trusted = True
    return Check("TSA chain", "ok", f"{CHAIN} ends at a trusted root")


@lru_cache(maxsize=4096)
def _evidence_role(name: str) -> tuple[int, str, int] | None:
    """(number, kind, 0) of evidence/NN-<event>.<kind>, (old, "", new) of
    evidence/consistency-M-N.json, else None; remembered (every bundle repeats its names)."""
    m = EVIDENCE.fullmatch(name)
    if m:
        return int(m.group(1)), m.group(3), 0
    c = CONSISTENCY.fullmatch(name)
    if c:
        return int(c.group(1)), "", int(c.group(2))
    return None


def evidence_members(
    files: Mapping[str, bytes],
) -> tuple[list[dict[str, str]], dict[tuple[int, int], str]]:
    """The evidence files by number (01, 02, ... without gaps: name by kind) and the
    consistency proofs by (old, new) size."""
    numbered: dict[int, dict[str, str]] = {}
    consistency: dict[tuple[int, int], str] = {}
    for name in files:
        role = _evidence_role(name)
        if role is None:
            continue
        number, kind, new = role
        if kind:
            numbered.setdefault(number, {})[kind] = name
        else:
            consistency[(number, new)] = name
    if not numbered:
        raise fail("the bundle holds no evidence")
    if sorted(numbered) != list(range(1, len(numbered) + 1)) or len(numbered) > MAX_EVENTS:
        raise fail("evidence files are not numbered 01, 02, ... without gaps")
    return [numbered[n] for n in range(1, len(numbered) + 1)], consistency


def read_receipt(v: Verified, number: int, names: Mapping[str, str]) -> Event:
    """evidence/NN-<event>.json: a canonical receipt whose entry is included under a
    checkpoint signed by the notary key (RFC 9162 §2.1.3.2, C2SP signed-note)."""
    from notary.receipt import Receipt

    if "json" not in names or "tlog-proof" not in names:
        raise fail(f"evidence {number:02d} lacks its .json or .tlog-proof file")
    stems = {nm.rsplit(".", 1)[0] for nm in names.values()}
    if len(stems) != 1:
        raise fail(f"evidence {number:02d} files name different events")
    jname = names["json"]
    obj = json_member(v.files, jname)
    assert v.verifier is not None
    try:
        receipt = Receipt.from_json(obj)
        stmt = receipt.verify(v.verifier)
    except VerificationError as err:
        raise fail(f"{jname}: {err.message}") from None
    stem = stems.pop().removeprefix("evidence/")
    return Event(number, stem, receipt, stmt, receipt.checkpoint(), obj["proof"].encode("utf-8"))


def check_statement(v: Verified, event: Event, names: Mapping[str, str]) -> Check:
    """The statement is the event its file name says, about message.eml and its one
    Message-ID (DESIGN §4.2); the .tlog-proof file is the receipt's proof, and a .tsr
    file is there exactly when the receipt has a token."""
    stmt, jname = event.statement, names["json"]
    if event.stem != f"{event.number:02d}-{stmt['event']}":
        raise fail(f"{jname} holds a {stmt['event']} statement, not what its name says")
    if stmt["message"]["sha256"] != v.sha256:
        raise fail(
            f"{jname} is about message {stmt['message']['sha256']}, not message.eml ({v.sha256})"
        )
    if v.message_id is None:
        v.message_id = stmt["message"]["id"]
    elif stmt["message"]["id"] != v.message_id:
        raise fail(f"{jname} names another Message-ID")
    if v.files[names["tlog-proof"]] != event.proof_text:
        raise fail(f"{names['tlog-proof']} is not the proof in {jname}")
    if (event.receipt.tst is None) != ("tsr" not in names):
        raise fail(f"evidence {event.number:02d}: the .tsr file and the receipt's tst disagree")
    return Check(
        f"{event.number:02d} {stmt['event']}",
        "ok",
        f"{jname}: entry included at index {event.receipt.index} under a "
        "checkpoint signed by the notary key; statement about message.eml",
    )


def check_time_order(events: Sequence[Event]) -> None:
    """The evidence files are numbered in time order (then log order)."""
    order = sorted(events, key=lambda e: (e.statement["time"], e.receipt.index))
    if [e.number for e in order] != [e.number for e in events]:
        raise fail("evidence files are not in time order")


def check_checkpoints(
    v: Verified,
    consistency_files: Mapping[tuple[int, int], str],
    extra: Sequence[Checkpoint] = (),
) -> None:
    """No two checkpoints of one size differ (a fork); a consistency proof is there for
    each pair of successive sizes, and no other. ``extra``: the cosigned checkpoints
    (format 3), linked to the receipts' by consistency proofs like them."""
    for cp in [ev.checkpoint for ev in v.events] + list(extra):
        have = v.checkpoints.get(cp.size)
        if have is not None and have.root_hash != cp.root_hash:
            raise fail(f"two checkpoints of size {cp.size} with different roots: the log forked")
        v.checkpoints[cp.size] = cp
    v.consistency = list(itertools.pairwise(sorted(v.checkpoints)))
    if set(consistency_files) != set(v.consistency):
        raise fail(
            "the consistency proofs do not match the checkpoints "
            f"(need {[f'{m}-{n}' for m, n in v.consistency]})"
        )


def check_consistency(v: Verified, old: int, new: int, name: str) -> Check:
    """evidence/consistency-M-N.json proves that checkpoint N extends checkpoint M
    (RFC 9162 §2.1.4.2)."""
    obj = json_member(v.files, name)
    try:
        if (
            not isinstance(obj, dict)
            or set(obj) != {"old", "new", "proof"}
            or (obj["old"], obj["new"]) != (old, new)
            or not isinstance(obj["proof"], list)
        ):
            raise ValueError("members")
        proof = [base64.b64decode(h, validate=True) for h in obj["proof"]]
        merkle.verify_consistency(
            old, new, proof, v.checkpoints[old].root_hash, v.checkpoints[new].root_hash
        )
    except VerificationError as err:
        raise fail(f"{name}: {err.message}") from None
    except (ValueError, TypeError):
        raise fail(f"{name} is not a consistency proof") from None
    return Check(
        "consistency", "ok", f"{name}: the checkpoint of size {new} extends that of size {old}"
    )
