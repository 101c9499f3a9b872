"""The members of a proof bundle (DESIGN §4.5, docs/proof-bundle.md): names, size caps,
and the one canonical form of each JSON member.

Every machine-readable member must be in its one canonical form: a receipt or
consistency proof is JSON with sorted keys, a two-space indent, ASCII only and a
final LF (:func:`receipt_text`, the stdlib ``json`` writer; this is the bundle's
own presentation form, not RFC 8785, and bundles already issued use it).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from keys.errors import MalformedError, VerificationError
from notary import fastpath

MESSAGE = "message.eml"
VKEY = "notary.vkey"
CHAIN = "tsa-chain.pem"
HTML = "certificate.html"
PDF = "certificate.pdf"
VERIFY_TXT = "VERIFY.txt"
DOCUMENTS = (HTML, PDF, VERIFY_TXT)
#: The notary's evidence certificate and its root (with ETSI evidence, certmail/bundle/etsi.py).
ETSI_CHAIN = "evidence-chain.pem"
#: The notary's signed PDF certificate (with ETSI evidence, certmail/bundle/etsi.py).
NOTARY_PDF = "notary-certificate.pdf"
#: The format version member (format 2 on; a bundle without it is format 1).
FORMAT_FILE = "bundle.json"

#: The bundle format new bundles are written in. Every released format verifies
#: forever (DESIGN §4.8); the table is in docs/proof-bundle.md.
#: 1: up to issue 10 (no bundle.json, no keys/); 2: bundle.json, keys/<FPR>.asc;
#: 3: evidence/checkpoint-<N>.cosigned (witness cosignatures, issue 14), written only
#: when the bundle holds cosigned checkpoints (else the bundle is exactly format 2).
#: 4: evidence/anchor-<N>.checkpoint, evidence/anchor-<N>-<id>.tsr and anchor-roots.pem
#: (outside time-stamps, certmail/bundle/anchors.py), written only when there are some.
#: 5: mdns/NN.eml (read receipts) and renderer 5 (scan verdicts, read receipts; issue 11),
#: written only when the bundle holds either (certmail/bundle/mdns.py). Formats are
#: cumulative: a format 5 bundle may hold every member of formats 2 to 4 as well.
FORMAT = 2
FORMAT_COSIGNED = 3
FORMAT_ANCHORED = 4
FORMAT_MDNS = 5
#: 6: smime/signer-chain.pem (the S/MIME signer's certificates, certmail/bundle/smimesig.py)
#: and renderer 6 (VERIFY.txt's openssl cms -verify of it, the stock-tool check of each
#: signed read receipt); written instead of 5 whenever a bundle needs either.
FORMAT_SMIME = 6
FORMATS = (1, 2, 3, 4, 5, 6)

#: Largest message.eml accepted, in bytes: a 200 MB attachment sent uncompressed makes a
#: message of about 395 MB (base64 inside, ASCII armor around it: certmail/msgsize.py).
MAX_MESSAGE_SIZE = 512 << 20
#: Largest other member, in bytes (a receipt holds a tlog-proof of at most ~1.1 MiB).
MAX_MEMBER_SIZE = 4 << 20
#: Largest bundle file, and largest total of its uncompressed members.
MAX_BUNDLE_SIZE = MAX_MESSAGE_SIZE + (64 << 20)
#: Most events in one bundle.
MAX_EVENTS = 999
#: Most OpenPGP keys in one bundle.
MAX_KEYS = 64
#: Most members in one bundle.
MAX_MEMBERS = 4 * MAX_EVENTS + MAX_EVENTS + 7 + 1 + MAX_KEYS + 3 * 99 + 99  # 99: mdns/NN.eml

#: evidence/NN-<event>.(json|tlog-proof|tsr|xml): number, event, kind (xml: ETSI evidence).
EVIDENCE = re.compile(r"evidence/(\d{2,3})-([A-Za-z]{1,64})\.(json|tlog-proof|tsr|xml)")
#: evidence/consistency-M-N.json: old and new tree size.
CONSISTENCY = re.compile(r"evidence/consistency-(0|[1-9]\d{0,18})-(0|[1-9]\d{0,18})\.json")
#: keys/<FPR>.asc: an OpenPGP public key (format 2), named by its v4 fingerprint.
KEY_MEMBER = re.compile(r"keys/([0-9A-F]{40})\.asc")
#: evidence/checkpoint-<N>.cosigned: the notary's checkpoint of size N with its witnesses'
#: cosignature lines (C2SP tlog-cosignature; format 3, certmail/bundle/cosigned.py).
COSIGNED = re.compile(r"evidence/checkpoint-([1-9]\d{0,18})\.cosigned")
#: Outside time-stamps (format 4, certmail/bundle/anchors.py): the checkpoint note the
#: tokens are over, each outside TSA's token, the outside TSAs' roots.
ANCHOR_CHECKPOINT = re.compile(r"evidence/anchor-([1-9]\d{0,18})\.checkpoint")
ANCHOR_TOKEN = re.compile(r"evidence/anchor-([1-9]\d{0,18})-([0-9a-f]{8})\.tsr")
ANCHOR_ROOTS = "anchor-roots.pem"
#: renewals/NN.(json|tsr|pem): archive time-stamps over the whole bundle (any format,
#: added after export: certmail/bundle/renew.py).
RENEWAL = re.compile(r"renewals/(\d{2})\.(json|tsr|pem)")
#: mdns/NN.eml: a read receipt (RFC 8098) as received (format 5, certmail/bundle/mdns.py).
MDN_MEMBER = re.compile(r"mdns/(\d{2})\.eml")
#: The S/MIME signer's certificate, then its issuers (format 6, certmail/bundle/smimesig.py).
SIGNER_CHAIN = "smime/signer-chain.pem"
#: What each later format added, by name: (the format it needs at least, what it is in an
#: error, its members). A bundle of format 3 or 4 holds its format's own members: it is
#: written in that format only then (:func:`certmail.bundle.checks.check_format`; format 5,
#: which a version 2 acknowledgement calls for too, is checked by certmail/bundle/mdns.py,
#: format 6 by certmail/bundle/smimesig.py).
#: The browser's verifier gates by the same table (notary/web/src/layout.js FEATURES).
FEATURES: dict[str, tuple[int, str, tuple[re.Pattern[str], ...]]] = {
    "keys": (FORMAT, "OpenPGP keys", (KEY_MEMBER,)),
    "cosigned": (FORMAT_COSIGNED, "cosigned checkpoints", (COSIGNED,)),
    "anchors": (FORMAT_ANCHORED, "outside time-stamps", (ANCHOR_TOKEN, ANCHOR_CHECKPOINT)),
    "mdns": (FORMAT_MDNS, "read receipts", (MDN_MEMBER,)),
    "smime": (FORMAT_SMIME, "the S/MIME signer's chain", (re.compile(re.escape(SIGNER_CHAIN)),)),
}
#: The formats a bundle is written in only with their feature's members.
LABELLED = {FORMAT_COSIGNED: "cosigned", FORMAT_ANCHORED: "anchors"}


def requires(version: int, feature: str) -> bool:
    """Whether a bundle of format ``version`` may hold ``feature`` (:data:`FEATURES`)."""
    return version >= FEATURES[feature][0]


@lru_cache(maxsize=4096)
def feature_of(name: str) -> str | None:
    """The feature of :data:`FEATURES` whose member ``name`` is (their patterns do not
    overlap), else None; remembered (every bundle repeats its names)."""
    for feature, (_, _, patterns) in FEATURES.items():
        if any(p.fullmatch(name) for p in patterns):
            return feature
    return None


def members_of(files: Iterable[str], feature: str) -> list[str]:
    """The members among ``files`` (names, in their order) that are ``feature``'s."""
    return list(_features_of_names(tuple(files)).get(feature, ()))


@lru_cache(maxsize=256)
def _features_of_names(names: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """:func:`features_in` of ``names``, remembered (every bundle of a kind has the same
    names, and each feature's reader asks); the caller must not change the answer."""
    return {k: tuple(v) for k, v in features_in(names).items()}


def features_in(files: Iterable[str]) -> dict[str, list[str]]:
    """:func:`members_of` of every feature with members in ``files``, in one pass."""
    out: dict[str, list[str]] = {}
    for n in files:
        feature = feature_of(n)
        if feature is not None:
            out.setdefault(feature, []).append(n)
    return out


_FIXED = frozenset(
    (
        MESSAGE,
        VKEY,
        CHAIN,
        FORMAT_FILE,
        ETSI_CHAIN,
        NOTARY_PDF,
        ANCHOR_ROOTS,
        SIGNER_CHAIN,
        *DOCUMENTS,
    )
)


def fail(what: str) -> VerificationError:
    """The error for an item that did not verify."""
    return VerificationError(f"{what}; the bundle may have been modified maliciously")


@lru_cache(maxsize=4096)
def check_name(name: str) -> None:
    """Refuse (MalformedError) a member name outside the layout (the names that pass are
    remembered: every bundle repeats them; lru_cache keeps no exception)."""
    if (
        name in _FIXED
        or EVIDENCE.fullmatch(name)
        or CONSISTENCY.fullmatch(name)
        or KEY_MEMBER.fullmatch(name)
        or COSIGNED.fullmatch(name)
        or ANCHOR_CHECKPOINT.fullmatch(name)
        or ANCHOR_TOKEN.fullmatch(name)
        or RENEWAL.fullmatch(name)
        or MDN_MEMBER.fullmatch(name)
    ):
        return
    shown = name.encode("unicode_escape").decode("ascii")[:120]
    raise MalformedError(f"the bundle holds an unexpected member {shown!r}")


def size_cap(name: str) -> int:
    """The largest size, in bytes, of the member ``name``."""
    return MAX_MESSAGE_SIZE if name == MESSAGE else MAX_MEMBER_SIZE


def receipt_text(obj: Mapping[str, Any]) -> bytes:
    """The one form of evidence/NN-<event>.json: sorted keys, 2-space indent, ASCII, LF."""
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=True) + "\n").encode("ascii")


def consistency_text(old: int, new: int, proof: Sequence[bytes]) -> bytes:
    """The one form of evidence/consistency-M-N.json."""
    hashes = [base64.b64encode(h).decode("ascii") for h in proof]
    return receipt_text({"old": old, "new": new, "proof": hashes})


def format_text(version: int) -> bytes:
    """The one form of bundle.json."""
    return receipt_text({"format": version})


#: The stdlib's C encoder (used when there is no indent): a scalar or an empty container
#: exactly as the indenting encoder writes it.
_COMPACT = json.JSONEncoder(sort_keys=True, ensure_ascii=True, separators=(",", ": ")).encode
#: The stdlib's C string escape (ASCII), which both encoders use for keys and strings.
_STRING = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]


def _indented(value: Any, pad: str) -> str:
    """:func:`receipt_text` of a parsed JSON value, less the final LF, written at
    indentation ``pad``: the indenting encoder's layout (a non-empty container's items
    one per line, two spaces deeper, ``,`` after each but the last, keys sorted) with
    its scalars and empty containers by the C encoder."""
    t = type(value)
    if t is dict and value:
        inner = pad + "  "
        body = ",\n".join(
            [f"{inner}{_STRING(k)}: {_indented(value[k], inner)}" for k in sorted(value)]
        )
        return f"{{\n{body}\n{pad}}}"
    if t is list and value:
        inner = pad + "  "
        return "[\n" + ",\n".join([inner + _indented(x, inner) for x in value]) + f"\n{pad}]"
    if t is str:  # what both encoders write for a string, and for an int
        return str(_STRING(value))
    if t is int:
        return int.__repr__(value)
    return _COMPACT(value)


def is_receipt_text(data: bytes, obj: object) -> bool:
    """``data == receipt_text(obj)`` for ``obj = json.loads(data)`` (its keys are strings,
    its values JSON's), without the stdlib's pure-Python indenting encoder: the same
    layout written by :func:`_indented` (the fast path, off with
    ``CERTMAIL_REFERENCE_ONLY=1``: then :func:`receipt_text` itself)."""
    if not fastpath.enabled():
        return bool(data == receipt_text(obj))  # type: ignore[arg-type]
    return data == (_indented(obj, "") + "\n").encode("ascii")


def json_member(files: Mapping[str, bytes], name: str) -> Any:
    """The JSON value of member ``name``, which must be in its canonical form
    (:func:`receipt_text` of its value, checked by :func:`is_receipt_text`)."""
    data = files[name]
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        raise fail(f"{name} is not JSON") from None
    try:
        canonical = is_receipt_text(data, obj)
    except (TypeError, ValueError, RecursionError):
        raise fail(f"{name} is not in its canonical form") from None
    if not canonical:
        raise fail(f"{name} is not in its canonical form")
    return obj
