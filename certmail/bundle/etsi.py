"""ETSI EN 319 522-3 evidence in a proof bundle (``proof export --etsi``, docs/etsi.md).

Members: ``evidence/NN-<event>.xml`` beside the event's ``.json`` (the same
stem: ``<event>`` is certmail's event name, the XML's EventCode is the ETSI
one, notary/etsi/mapping.py), and ``evidence-chain.pem``, the notary's evidence
certificate then its root CA. An event with no ETSI counterpart
(ContentAccessTracking) has no ``.xml``.

``proof verify`` checks each ``.xml``: its XAdES signature against the root at
the end of ``evidence-chain.pem`` (signxml), its SignatureTimeStamp against
the bundle's TSA roots, and that what it signs is the event's own: the very
log entry, event, SHA-256 and Message-ID of the ``.json`` with the same number,
with a tlog-proof that verifies with the notary key (it may be a later proof
than the bundle's: the notary signs its latest receipt). A failure names the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from certmail.bundle.layout import ETSI_CHAIN, NOTARY_PDF, fail
from certmail.bundle.report import Check

if TYPE_CHECKING:
    from certmail.bundle.checks import Verified
    from notary.receipt import Receipt

__all__ = ["check_etsi", "etsi_members"]

UNTRUSTED_EVIDENCE_CA = (
    f"the evidence CA is the root at the end of the bundle's {ETSI_CHAIN}: compare it "
    "with the one the notary publishes (GET /v1/evidence/chain)"
)


def etsi_members(
    ordered: Sequence[Receipt],
    xmls: Sequence[bytes],
    chain_pem: bytes | None,
    pdf: bytes | None = None,
) -> dict[str, bytes]:
    """The bundle members for the notary's evidence XMLs, numbered as ``ordered`` is.

    Each XML is placed beside the receipt whose log entry it carries; one for an
    entry the bundle does not hold (a blind copy left out) is dropped.
    """
    from lxml import etree  # type: ignore[import-untyped]

    from keys.errors import MalformedError
    from notary.etsi.xml import read_evidence
    from notary.evidence import parse_statement

    if not xmls:
        return {}
    if chain_pem is None:
        raise ValueError("ETSI evidence needs the notary's evidence chain")
    numbers = {r.entry: (n, parse_statement(r.entry)["event"]) for n, r in enumerate(ordered, 1)}
    out: dict[str, bytes] = {ETSI_CHAIN: chain_pem}
    if pdf is not None:
        out[NOTARY_PDF] = pdf
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    for xml in xmls:
        try:
            entry = read_evidence(etree.fromstring(xml, parser)).entry
        except (etree.XMLSyntaxError, ValueError, MalformedError) as exc:
            msg = exc.message if isinstance(exc, MalformedError) else str(exc)
            raise MalformedError(f"the notary's ETSI evidence is malformed: {msg}") from None
        place = numbers.get(entry)
        if place is not None:
            out[f"evidence/{place[0]:02d}-{place[1]}.xml"] = xml
    return out


def check_etsi(v: Verified, numbered: Sequence[Mapping[str, str]]) -> list[Check]:
    """Verify every ``evidence/NN-<event>.xml`` (see the module docstring)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from notary.errors import VerificationError

    xml_names = [(n, names["xml"]) for n, names in enumerate(numbered) if "xml" in names]
    if not xml_names:
        for extra in (ETSI_CHAIN, NOTARY_PDF):
            if extra in v.files:
                raise fail(f"{extra} is there without ETSI evidence")
        return []
    if ETSI_CHAIN not in v.files:
        raise fail(f"the ETSI evidence comes without {ETSI_CHAIN}")
    try:
        chain = x509.load_pem_x509_certificates(v.files[ETSI_CHAIN])
    except ValueError:
        raise fail(f"{ETSI_CHAIN} holds no PEM certificates") from None
    root = chain[-1].public_bytes(Encoding.PEM)
    v.warnings.append(UNTRUSTED_EVIDENCE_CA)
    for i, name in xml_names:
        try:
            _check_one(v, i, v.files[name], root)
        except VerificationError as err:
            raise fail(f"{name}: {err.message}") from None
    report = [
        Check(
            "ETSI evidence",
            "ok",
            f"{len(xml_names)} XAdES-B-T evidence file(s) verify and state their events",
        )
    ]
    if NOTARY_PDF in v.files:
        from certmail.bundle.etsi_pdf import check_signed_pdf

        report.append(check_signed_pdf(v, v.files[NOTARY_PDF], chain[-1]))
    return report


def _check_one(v: Verified, i: int, xml: bytes, root: bytes) -> None:
    from notary.errors import VerificationError
    from notary.etsi.mapping import etsi_event, event_uri
    from notary.etsi.sign import verify_evidence

    event = v.events[i]
    got = verify_evidence(xml, evidence_ca=root, tsa_roots=v.roots, tsa_certificates=v.chain)
    facts, stmt = got.facts, event.statement
    name = etsi_event(stmt["event"])
    if facts.entry != event.receipt.entry:
        raise VerificationError("it carries another log entry than its .json")
    if name is None or facts.event_uri != event_uri(name):
        raise VerificationError(f"its EventCode {facts.event_uri} is not {stmt['event']}'s")
    if facts.sha256 != v.sha256 or facts.message_id != stmt["message"]["id"]:
        raise VerificationError("it names another message (SHA-256 or Message-ID)")
    # The XML may carry a later proof of the same entry than the bundle keeps (the
    # notary signs its latest receipt): it must verify on its own with the notary key.
    from notary.errors import MalformedError
    from notary.tlogproof import TlogProof

    assert v.verifier is not None
    try:
        TlogProof.from_bytes(facts.proof.encode("utf-8")).verify(facts.entry, v.verifier)
    except (MalformedError, VerificationError) as err:
        raise VerificationError(f"its tlog-proof does not verify: {err.message}") from None
