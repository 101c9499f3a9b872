"""The notary's ETSI evidence, its signed PDF certificate and the evidence chain.

``GET /v1/messages/{sha256}/evidence?format=etsi``, ``GET /v1/messages/{sha256}/certificate.pdf``
(notary/etsi/certificate.py) and ``GET /v1/evidence/chain``.

The evidence of a message is the account's receipts for it (the same ones
``/v1/messages/{sha256}/receipts`` answers; another account's message answers
404 as an unknown one), each written as EN 319 522-3 XML and signed
XAdES-B-T by the notary's evidence key, time-stamped by its own TSA. Events
with no ETSI counterpart (ContentAccessTracking) are left out (docs/etsi.md).

The answer is JSON: ``{"sha256", "evidence": [{"index", "event", "etsi_event",
"xml"}]}``, the ``xml`` a complete signed document; ``&index=N`` answers that
one entry's document alone as ``application/xml``.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Header, Query, Response

from keys.errors import Error, NotFoundError

_SHA256 = re.compile(r"[0-9a-f]{64}")
EVIDENCE_DIR = "evidence"


def evidence_dir(notary_dir: Path) -> Path:
    """Where ``notary init`` keeps the evidence key: ``DIR/evidence``."""
    return notary_dir / EVIDENCE_DIR


#: Signed evidence documents an issuer keeps (a few KB each).
SIGNED_CACHE = 512


class _Issuer:
    """Loads the evidence key once; signs receipts as ETSI evidence, each once.

    The signed document of a receipt is kept by (entry index, checkpoint note,
    entry hash): the evidence states only the entry and its proof against that
    checkpoint, which the append-only log never changes, so the same evidence
    asked for again answers the very same bytes (one signature, one time-stamp)
    until the log's checkpoint moves on.
    """

    def __init__(self, service: Any) -> None:
        self.service = service
        self._creds: Any = None
        self._signed: OrderedDict[tuple[int, bytes, bytes], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def creds(self) -> Any:
        from keys.evidence_ca import load_evidence

        if self._creds is None:
            self._creds = load_evidence(evidence_dir(self.service.config.directory))
        return self._creds

    def issue(self, receipt: Any) -> bytes:
        key = (
            receipt.index,
            bytes(receipt.proof.checkpoint),
            hashlib.sha256(receipt.entry).digest(),
        )
        with self._lock:
            hit = self._signed.get(key)
            if hit is not None:
                self._signed.move_to_end(key)
                return hit
        signed = self._sign(receipt)
        with self._lock:  # two requests racing: both answer the first one kept
            kept = self._signed.setdefault(key, signed)
            while len(self._signed) > SIGNED_CACHE:
                self._signed.popitem(last=False)
        return kept

    def _sign(self, receipt: Any) -> bytes:
        from notary.etsi.sign import sign_evidence
        from notary.etsi.xml import build_evidence

        tsa = self.service.tsa
        if tsa is None:
            raise NotFoundError("this notary has no TSA to time-stamp its evidence")
        return sign_evidence(build_evidence(receipt), self.creds(), tsa.stamp)


def include_etsi_routes(
    app: FastAPI, service: Any, authenticate: Callable[[Any, str | None], Any]
) -> None:
    """Add the ETSI evidence routes to ``app``."""
    from notary.etsi.mapping import etsi_event
    from notary.evidence import parse_statement

    issuer = _issuer(service)

    @app.get("/v1/evidence/chain", summary="The evidence certificate, then its root CA (PEM)")
    def evidence_chain() -> Response:
        return Response(issuer.creds().chain_pem(), media_type="application/pem-certificate-chain")

    @app.get(
        "/v1/messages/{sha256}/evidence",
        summary="A message's events as ETSI EN 319 522-3 evidence, signed XAdES-B-T",
        tags=["evidence"],
    )
    def evidence(
        sha256: str,
        format: Annotated[str, Query()] = "etsi",
        index: Annotated[int | None, Query(ge=0)] = None,
        authorization: Annotated[str | None, Header()] = None,
    ) -> Response:
        acct = authenticate(service, authorization)
        if format != "etsi":
            raise Error(f"unknown evidence format {format!r}", hint="use format=etsi")
        if not _SHA256.fullmatch(sha256):
            raise Error("sha256 must be 64 lowercase hex digits")
        out = []
        for r in service.receipts(acct, sha256):
            name = etsi_event(parse_statement(r.entry)["event"])
            if name is None or (index is not None and r.index != index):
                continue
            out.append((r, name, issuer.issue(r)))
        if index is not None:
            if not out:
                raise NotFoundError(f"no ETSI evidence at index {index} for message {sha256}")
            return Response(out[0][2], media_type="application/xml")
        body = {
            "sha256": sha256,
            "evidence": [
                {
                    "index": r.index,
                    "event": parse_statement(r.entry)["event"],
                    "etsi_event": name,
                    "xml": xml.decode("utf-8"),
                }
                for r, name, xml in out
            ],
        }
        return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")

    @app.get(
        "/v1/messages/{sha256}/certificate.pdf",
        summary="A plain-language PDF/A certificate of the message's events, signed PAdES-B-T",
        tags=["evidence"],
    )
    def certificate_pdf(
        sha256: str, authorization: Annotated[str | None, Header()] = None, paper: str = "a4"
    ) -> Response:
        acct = authenticate(service, authorization)
        if not _SHA256.fullmatch(sha256):
            raise Error("sha256 must be 64 lowercase hex digits")
        return Response(
            signed_certificate(service, acct, sha256, paper), media_type="application/pdf"
        )


def signed_certificate(service: Any, account: Any, sha256: str, paper: str = "a4") -> bytes:
    """The account's message's PDF certificate on ``paper`` (a4 or letter), signed
    PAdES-B-T (Error: another paper; NotFoundError: not its message, or no TSA). Also
    served by the sender's view (notary/web/app_routes.py)."""
    from notary.etsi.certificate import PAPERS, render_certificate, sign_certificate
    from notary.evidence import parse_statement

    size = {p.lower(): p for p in PAPERS}.get(paper)
    if size is None:
        raise Error(f"paper must be one of {', '.join(p.lower() for p in PAPERS)}")

    stmts = [parse_statement(r.entry) for r in service.receipts(account, sha256)]
    if service.tsa is None:
        raise NotFoundError("this notary has no TSA to time-stamp its certificate")
    pdf = render_certificate(
        stmts,
        origin=service.origin,
        sha256=sha256,
        message_id=stmts[0]["message"]["id"],
        paper=size,
    )
    return bytes(sign_certificate(pdf, _issuer(service).creds(), service.tsa.respond))


_ISSUERS: weakref.WeakKeyDictionary[Any, _Issuer] = weakref.WeakKeyDictionary()


def _issuer(service: Any) -> _Issuer:
    """The service's one evidence issuer (its key loaded once)."""
    got = _ISSUERS.get(service)
    if got is None:
        got = _ISSUERS[service] = _Issuer(service)
    return got
