"""Verifying a proof bundle offline (DESIGN §4.5): the driver that runs the checks in
order, derives the :class:`Facts` the documents state, and builds the report.

Every member is covered: the machine-readable ones must be in their one
canonical form and verify (:mod:`certmail.bundle.checks`, ``.tokens``,
``.openpgp``); the human-readable ones are regenerated from the verified
evidence and must be byte-identical (:mod:`certmail.bundle.documents`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from certmail.bundle import checks, documents
from certmail.bundle.checks import Event, Verified, cert_facts
from certmail.bundle.documents import (
    RENDERER,
    RENDERER_ANCHORED,
    CheckpointFact,
    EventFact,
    Facts,
    TsaFact,
    proves,
)
from certmail.bundle.documents.facts import RENDERER_MDNS, RENDERER_SMIME
from certmail.bundle.headers import header_facts
from certmail.bundle.layout import (
    ANCHOR_ROOTS,
    CHAIN,
    DOCUMENTS,
    ETSI_CHAIN,
    FORMAT_MDNS,
    FORMAT_SMIME,
    HTML,
    MESSAGE,
    NOTARY_PDF,
    PDF,
    SIGNER_CHAIN,
    VERIFY_TXT,
    VKEY,
    fail,
    members_of,
)
from certmail.bundle.report import BundleReport, Check, ReportEvent
from certmail.bundle.zipio import read_members
from notary import merkle

if TYPE_CHECKING:
    from cryptography import x509

    from certmail.bundle.documents.feature_facts import AnchorFact, MdnFact
    from certmail.bundle.headers import HeaderFacts
    from certmail.bundle.zipio import FileMember
    from keys.gpg import Keyring
    from notary.checkpoint import Checkpoint
    from notary.cosignature import CosignatureVerifier

__all__ = ["check_evidence", "verify_bundle"]


def check_evidence(
    files: Mapping[str, bytes],
    vkey: str | None,
    tsa_roots: Sequence[x509.Certificate] | None,
    keyring: Keyring | None,
    *,
    documents: bool,
    openpgp: bool = True,
    smime_ca: Path | None = None,
    message: FileMember | None = None,
) -> tuple[Verified, list[Check], Facts]:
    """Run every check of the machine-readable members, in order; derive the facts.
    Raises VerificationError naming what failed. Without ``openpgp`` (export: the
    exporter has judged the acknowledgements with the sender's keyring) the OpenPGP
    signatures are not checked, the key members still are. ``smime_ca``: the CA bundle
    an S/MIME sender signature's chain must verify to (certmail/bundle/smimesig.py).
    ``message``: message.eml when it is not in ``files`` (export: its file, read in
    pieces, its SHA-256 taken in the pass that takes its CRC-32 for the zip)."""
    needed = (*(() if message else (MESSAGE,)), VKEY, CHAIN, *(DOCUMENTS if documents else ()))
    checks.require_members(files, needed)
    if message is None:
        v = Verified(files, hashlib.sha256(files[MESSAGE]).digest())
    else:
        v = Verified(files, message.sums()[0], message_file=message.buf)
    v.format = checks.check_format(files)
    report = [checks.check_notary_key(v, vkey), checks.check_tsa_chain(v, tsa_roots)]
    numbered, consistency_files = checks.evidence_members(files)
    for number, names in enumerate(numbered, start=1):
        event = checks.read_receipt(v, number, names)
        statement = checks.check_statement(v, event, names)
        token = _check_token(v, event, names)
        report += [statement] if token is None else [token, statement]
        v.events.append(event)
    checks.check_time_order(v.events)
    report += _features(v, numbered)
    anchored = _anchored(v)  # evidence/anchor-N.* (format 4)
    extra = [*v.cosigned.values(), *anchored.values()]
    checks.check_checkpoints(v, consistency_files, extra)
    for old, new in v.consistency:
        report.append(checks.check_consistency(v, old, new, consistency_files[(old, new)]))
    header = header_facts(v.message, v.message_entity)
    rcpts = list(header.recipients)
    blind: list[str] = []  # a blind copy's own acceptance names it (docs/relay.md, Bcc)
    for ev in v.events:
        for key in ("recipient", "recipients"):
            val = ev.statement.get(key)
            for r in [val] if isinstance(val, str) else val if isinstance(val, list) else []:
                if isinstance(r, str) and r[:300] not in rcpts + blind:
                    (blind if ev.statement.get("blind") is True else rcpts).append(r[:300])
    mdns = _mdn_facts(v)  # mdns/NN.eml, format 5 (certmail/bundle/mdns.py)
    report += _openpgp_checks(
        v, header, rcpts + blind, keyring, run=openpgp, mdns=mdns, smime_ca=smime_ca
    )
    facts = _facts(v, header.sender, tuple(rcpts), header.subject, header.layout)
    facts = facts.evolve(mdns=mdns) if mdns else facts
    if SIGNER_CHAIN in files and v.format == FORMAT_SMIME:  # checked: _openpgp_checks
        from certmail.bundle.smimesig import smime_fact

        facts = facts.evolve(smime=smime_fact(v, header.sender))
    return v, report, facts.evolve(blind=tuple(blind)) if blind else facts


def _check_token(v: Verified, event: Event, names: Mapping[str, str]) -> Check | None:
    """:func:`certmail.bundle.tokens.check_token`; the module is imported for a receipt
    with a token only (it answers None for one without)."""
    if event.receipt.tst is None:
        return None
    from certmail.bundle.tokens import check_token

    return check_token(v, event, names)


def _features(v: Verified, numbered: Sequence[Mapping[str, str]]) -> list[Check]:
    """The ETSI evidence (evidence/NN-<event>.xml, certmail/bundle/etsi.py) and the cosigned
    checkpoints (evidence/checkpoint-N.cosigned, format 3: ``v.cosigned``). Each feature's
    checker is imported only when the bundle holds a member it checks: with none, each
    answers nothing (no checks, no checkpoints), and a format 1 bundle holds none."""
    out: list[Check] = []
    if ETSI_CHAIN in v.files or NOTARY_PDF in v.files or any("xml" in n for n in numbered):
        from certmail.bundle.etsi import check_etsi  # its XML libraries only when used

        out += check_etsi(v, numbered)
    if members_of(v.files, "cosigned"):
        from certmail.bundle.cosigned import read_cosigned

        v.cosigned = read_cosigned(v)
    return out


def _anchored(v: Verified) -> dict[int, Checkpoint]:
    """:func:`certmail.bundle.anchors.read_anchors` (sets ``v.anchors``) when the bundle
    holds an outside time-stamp's member or anchor-roots.pem (else it answers none)."""
    if not members_of(v.files, "anchors") and ANCHOR_ROOTS not in v.files:
        return {}
    from certmail.bundle.anchors import read_anchors

    anchored, v.anchors = read_anchors(v)
    return anchored


def _mdn_facts(v: Verified) -> tuple[MdnFact, ...]:
    """:func:`certmail.bundle.mdns.mdn_facts` for a bundle of format 5 or one with mdns/
    members (else it answers none)."""
    if v.format != FORMAT_MDNS and not members_of(v.files, "mdns"):
        return ()
    from certmail.bundle.mdns import mdn_facts

    return mdn_facts(v)


def _plain(v: Verified, header: HeaderFacts, mdns: Sequence[MdnFact]) -> bool:
    """Whether no OpenPGP or S/MIME checker has anything to check: no keys/ members, no
    signer chain, not format 6, a message that is neither OpenPGP/MIME nor S/MIME (read
    by the header fast path), no acknowledgement, no read receipt."""
    return (
        header.plain
        and not mdns
        and v.format != FORMAT_SMIME
        and SIGNER_CHAIN not in v.files
        and not members_of(v.files, "keys")
        and all(ev.statement["event"] != "ContentHandover" for ev in v.events)
    )


def _openpgp_checks(
    v: Verified,
    header: HeaderFacts,
    rcpts: Sequence[str],
    keyring: Keyring | None,
    *,
    run: bool,
    mdns: Sequence[MdnFact] = (),
    smime_ca: Path | None = None,
) -> list[Check]:
    """The sender's signature and each acknowledgement: with the caller's keyring where
    it can judge, else with the bundle's own keys (format 2; checked in their one form
    whether used or not). An S/MIME sender signature is checked with the certificates
    the bundle carries (format 6, certmail/bundle/smimesig.py), also at export. None of
    their modules is imported when none has anything to check (:func:`_plain`)."""
    if _plain(v, header, mdns):
        return [checks.NOT_OPENPGP] if run else []
    from certmail.bundle.mdns import check_mdns
    from certmail.bundle.openpgp import check_acknowledgement, check_sender_signature
    from certmail.bundle.pgpkeys import bundle_keyring
    from certmail.bundle.smimeack import check_cms_acknowledgement, is_cms_ack
    from certmail.bundle.smimesig import check_smime_signature

    def either(check: Callable[[Keyring | None, bool], Check]) -> Check:
        first = check(keyring, False) if keyring is not None or ring is None else None
        if ring is not None and (first is None or (first.status == "skipped" and first.applies)):
            second = check(ring, True)
            if first is None or second.status != "skipped":
                return second
        assert first is not None
        return first

    out: list[Check] = []
    with bundle_keyring(v.files, header.sender) as ring:
        if ring is not None:
            v.keys = tuple(
                (k.fingerprint.upper(), (k.emails or ("",))[0].lower())
                for k in sorted(ring.list_keys(), key=lambda k: k.fingerprint)
            )
        smime = check_smime_signature(v, header.sender, smime_ca if run else None)
        if not run:
            return out
        out.append(
            smime
            if smime is not None
            else either(
                lambda kr, b: check_sender_signature(
                    v.message, header.layout, header.sender, kr, from_bundle=b
                )
            )
        )
        for ev in v.events:
            if is_cms_ack(ev.statement):  # S/MIME: certmail/bundle/smimeack.py
                out.append(check_cms_acknowledgement(ev, rcpts, v.sha256, v.format, smime_ca))
            elif ev.statement["event"] == "ContentHandover":
                out.append(
                    either(
                        lambda kr, b, ev=ev: check_acknowledgement(  # type: ignore[misc]
                            ev, rcpts, v.sha256, kr, from_bundle=b
                        )
                    )
                )
        out += check_mdns(v, rcpts, ring if ring is not None else keyring, mdns, smime_ca)
    return out


def _details(stmt: Mapping[str, Any]) -> tuple[str, ...]:
    """The certificate's lines about a delivery: server, reply, reason, TLS, signer key."""
    out = []
    mx = stmt.get("mx") or stmt.get("host")
    if isinstance(mx, str):
        out.append(f"server: {mx[:200]}")
    reply = stmt.get("reply")
    if isinstance(reply, dict):
        reply = f"{reply.get('code', '')} {reply.get('text', '')}".strip()
    if isinstance(reply, str):
        out.append(f"reply: {reply[:300]}")
    reason = stmt.get("reason")
    if isinstance(reason, str):
        out.append(f"reason: {reason[:300]}")
    tls = stmt.get("tls")
    if isinstance(tls, dict):
        out.append(f"TLS: {str(tls.get('version', ''))[:40]} {str(tls.get('cipher', ''))[:80]}")
    fpr = stmt.get("fingerprint")
    if isinstance(fpr, str):
        out.append(f"signer key: {fpr[:80]}")
    cert = stmt.get("certificate_sha256")  # an S/MIME acknowledgement's signer
    if isinstance(cert, str):
        out.append(f"signer certificate (S/MIME, SHA-256): {cert[:80]}")
    for name, label in (("assurance", "identity assurance"), ("released", "key share released")):
        value = stmt.get(name)  # sealed and pickup delivery (docs/sealed.md)
        if isinstance(value, str):
            out.append(f"{label}: {value[:200]}")
    return tuple(out)


def _mode(stmt: Mapping[str, Any]) -> str | None:
    """A ContentHandover's kind: ``sealed`` or ``pickup`` (docs/sealed.md), ``smime`` (an
    S/MIME acknowledgement, certmail/bundle/smimeack.py), else None (OpenPGP)."""
    mode = stmt.get("mode")
    if mode in ("sealed", "pickup"):
        return str(mode)
    if stmt.get("event") != "ContentHandover":
        return None  # no acknowledgement: is_cms_ack would say no
    from certmail.bundle.smimeack import is_cms_ack

    return "smime" if is_cms_ack(stmt) else None


def _event_fact(e: Event) -> EventFact:
    recipient = e.statement.get("recipient")
    channel = e.statement.get("channel")
    return EventFact(
        number=e.number,
        event=e.statement["event"],
        time=e.statement["time"],
        index=e.receipt.index,
        recipient=recipient if isinstance(recipient, str) else None,
        details=_details(e.statement),
        checkpoint_size=e.checkpoint.size,
        leaf_hash=merkle.leaf_hash(e.receipt.entry).hex(),
        proof_hashes=tuple(h.hex() for h in e.receipt.proof.hashes),
        stem=e.stem,
        tsa=None
        if e.token is None
        else TsaFact(
            file=f"evidence/{e.stem}.tsr",
            gen_time=f"{e.token.gen_time:%Y-%m-%dT%H:%M:%S.%fZ}",
            serial=format(e.token.serial, "x"),
            policy=e.token.policy,
            signer=cert_facts(e.token.tsa_cert)[0],
        ),
        channel=channel[:40] if isinstance(channel, str) else None,
        mode=_mode(e.statement),
        scans=_scans(e.statement),
    )


def _scans(stmt: Mapping[str, Any]) -> tuple[str, ...]:
    """A v2 acknowledgement's scan verdicts, labelled (renderer 5 states them)."""
    if stmt.get("event") != "ContentHandover":
        return ()  # certmail.scanverdicts is imported for acknowledgements only
    from certmail.scanverdicts import handover_scans, sentences

    return tuple(sentences(handover_scans(dict(stmt)) or []))


def _handover_scans(stmt: dict[str, Any]) -> Any:
    """:func:`certmail.scanverdicts.handover_scans` of an acknowledgement's statement."""
    from certmail.scanverdicts import handover_scans

    return handover_scans(stmt)


def _renewals(files: Mapping[str, bytes]) -> tuple[list[Check], list[str]]:
    """:func:`certmail.bundle.renew.check_renewals` of the bundle (renewals/NN.* are
    checked first: a member changed after a renewal is named); the module and the
    chain's notAfter read only for a bundle with renewals (none: nothing to check)."""
    if not any(n.startswith("renewals/") for n in files):
        return [], []
    from certmail.bundle.renew import chain_not_after, check_renewals

    return check_renewals(files, chain_not_after(files.get(CHAIN)))


def _facts(
    v: Verified, sender: str, recipients: tuple[str, ...], subject: str | None, layout: Any
) -> Facts:
    assert v.verifier is not None and v.message_id is not None
    cps = v.checkpoints
    return Facts(
        sha256=v.sha256,
        message_id=v.message_id,
        size=len(v.message),
        sender=sender,
        recipients=recipients,
        subject=subject,
        vkey=v.verifier.vkey(),
        events=tuple(_event_fact(e) for e in v.events),
        checkpoints=tuple(
            CheckpointFact(cps[s].origin, s, cps[s].root_hash.hex()) for s in sorted(cps)
        ),
        consistency=tuple(v.consistency),
        tsa_chain=tuple(cert_facts(c) for c in v.chain),
        mime=layout,
        keys=v.keys,
        renderer=_renderer(v),
        anchors=_anchor_facts(v.anchors) if v.anchors else (),
    )


def _anchor_facts(anchors: Sequence[Any]) -> tuple[AnchorFact, ...]:
    """The facts of the outside time-stamps (certmail.bundle.anchors.Anchor, format 4)."""
    from certmail.bundle.documents.feature_facts import AnchorFact

    return tuple(
        AnchorFact(
            file=a.file,
            checkpoint_file=a.checkpoint_file,
            size=a.size,
            gen_time=f"{a.info.gen_time:%Y-%m-%dT%H:%M:%S.%fZ}",
            serial=format(a.info.serial, "x"),
            signer=cert_facts(a.info.tsa_cert)[0],
        )
        for a in anchors
    )


def _renderer(v: Verified) -> int:
    """The renderer a bundle is written with: 6 in format 6, 5 in format 5 (cumulative:
    they show the outside time-stamps too), 4 with outside time-stamps, else 3."""
    if v.format == FORMAT_SMIME:
        return RENDERER_SMIME
    if v.format == FORMAT_MDNS:
        return RENDERER_MDNS
    return RENDERER_ANCHORED if v.anchors else RENDERER


def check_documents(files: Mapping[str, bytes], facts: Facts, fmt: int) -> Check:
    """certificate.html, certificate.pdf and VERIFY.txt are those rendered from the facts
    by a renderer of the bundle's format ``fmt``."""
    renderers = documents.renderers_of(fmt)
    if not documents.matches(files, facts, renderers):
        forms = [
            documents.render(facts.evolve(renderer=r), reveal)
            for r in renderers
            for reveal in (False, True)
        ]
        bad = [n for n in DOCUMENTS if all(files[n] != form[n] for form in forms)]
        raise fail(f"{', '.join(bad) or HTML} does not match the evidence")
    return Check(
        "documents",
        "ok",
        f"{HTML}, {PDF} and {VERIFY_TXT} regenerated from the evidence: identical",
    )


def verify_bundle(
    source: str | Path | bytes,
    *,
    vkey: str | None,
    tsa_roots: Sequence[x509.Certificate] | None = None,
    keyring: Keyring | None = None,
    witnesses: Sequence[CosignatureVerifier] = (),
    quorum: int | None = None,
    anchor_roots: Sequence[x509.Certificate] | None = None,
    smime_ca: Path | None = None,
) -> BundleReport:
    """Verify a proof bundle offline; return what it proves or raise VerificationError.

    ``vkey`` is the notary's verifier key from a source the caller trusts;
    ``None`` falls back to the bundle's notary.vkey with a warning in the
    report. ``tsa_roots`` likewise for the TSA. With a ``keyring``, the
    sender's signature (signed-only messages) and recipients' acknowledgements
    are checked where the keyring holds the keys. With ``witnesses`` the largest
    checkpoint the bundle relies on must carry ``quorum`` (default: all) of their valid
    cosignatures (:func:`certmail.bundle.cosigned.check_witnesses`). With
    ``anchor_roots`` the outside time-stamps over checkpoints must chain to them
    (:func:`certmail.bundle.anchors.check_anchor_roots`). With ``smime_ca`` (a PEM CA
    bundle) an S/MIME sender signature's chain must verify to it
    (:mod:`certmail.bundle.smimesig`); without, that check is reported unrun.
    """
    if quorum is not None and not 1 <= quorum <= len(witnesses):
        raise ValueError(f"a quorum of {quorum} with {len(witnesses)} witness(es)")
    files = read_members(source)
    # renewals/NN.* first (certmail/bundle/renew.py): a member changed after a renewal is named
    renewals, renewal_warnings = _renewals(files)
    v, report, facts = check_evidence(
        files, vkey, tsa_roots, keyring, documents=True, smime_ca=smime_ca
    )
    if witnesses or v.cosigned:  # else check_witnesses answers None
        from certmail.bundle.cosigned import check_witnesses

        cosig = check_witnesses(v, v.cosigned, witnesses, quorum)
        if cosig is not None:
            report.append(cosig)
    if anchor_roots or v.anchors:  # else check_anchor_roots answers None
        from certmail.bundle.anchors import check_anchor_roots

        anchors = check_anchor_roots(v.anchors, anchor_roots)
        if anchors is not None:
            report.append(anchors)
    report.append(check_documents(files, facts, v.format))
    report += renewals
    v.warnings += renewal_warnings
    return BundleReport(
        format=v.format,
        sha256=facts.sha256,
        message_id=facts.message_id,
        sender=facts.sender,
        recipients=facts.recipients + facts.blind,
        vkey=facts.vkey,
        vkey_trusted=v.vkey_trusted,
        tsa_root_trusted=v.root_trusted,
        events=tuple(
            ReportEvent(
                number=ef.number,
                event=ef.event,
                time=ef.time,
                recipient=ef.recipient,
                index=ef.index,
                checkpoint_size=ef.checkpoint_size,
                timestamp=ef.tsa.gen_time if ef.tsa else None,
                proves=proves(ef.event, ef.tsa is not None, ef.channel, RENDERER, ef.mode),
                scans=_handover_scans(ev.statement) if ef.event == "ContentHandover" else None,
            )
            for ef, ev in zip(facts.events, v.events, strict=True)
        ),
        checks=tuple(report),
        warnings=tuple(v.warnings),
    )
