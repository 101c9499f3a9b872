"""The notary's web routes: ``GET /verify`` (the in-browser proof verifier, configured
with this notary's verifier key and TSA root), ``GET /log`` (the public log page) and
``GET /web/static/{name}``.

Every answer carries :func:`notary.web.security_headers` (a strict CSP, no framing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from notary.web import (
    STATIC_TYPES,
    Trust,
    WebAssetsMissing,
    security_headers,
    static_asset,
    verify_page,
)

if TYPE_CHECKING:
    from notary.service import NotaryService

__all__ = ["include_web_routes"]


def _root_pem(service: NotaryService) -> str:
    """The last certificate of the TSA chain (its root), PEM, or "" without a TSA."""
    if service.tsa is None:
        return ""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    certs = x509.load_pem_x509_certificates(service.tsa.chain_pem())
    return certs[-1].public_bytes(Encoding.PEM).decode("ascii")


def include_web_routes(app: FastAPI, service: NotaryService) -> None:
    """Add the web pages to ``app``."""

    def missing(e: WebAssetsMissing) -> JSONResponse:
        return JSONResponse(
            {"error": "not_built", "message": f"{e.message}; {e.hint}"},
            status_code=503,
            headers=security_headers(),
        )

    @app.get("/verify", response_class=HTMLResponse, summary="Verify a proof bundle in the browser")
    def verify() -> Response:
        trust = Trust(
            vkey=service.vkey,
            tsa_root=_root_pem(service),
            source=(
                "Filled in by the notary serving this page (its own key and TSA root). "
                "To check a bundle without trusting this notary, paste keys from another "
                "source, or use the self-contained page of `certmail proof verifier-page`."
            ),
        )
        return HTMLResponse(verify_page(trust, self_contained=False), headers=security_headers())

    @app.get("/log", response_class=HTMLResponse, summary="The public log: checkpoint, keys, audit")
    def log(request: Request) -> Response:
        from notary.web.log_page import growth_sample, log_page

        service.checkpoint()  # the first checkpoint of an empty log, as /v1/checkpoint
        cp = service.storage.latest_checkpoint()
        page = log_page(
            origin=service.origin,
            vkey=service.vkey,
            size=cp.size if cp else 0,
            root_hash=cp.root_hash if cp else b"",
            signed=cp.time if cp else None,
            checkpoint=cp.note if cp else b"",
            chain_pem=service.tsa.chain_pem() if service.tsa is not None else b"",
            base_url=str(request.base_url),
            growth=growth_sample(service.storage, cp.size if cp else 0),
        )
        return HTMLResponse(page, headers=security_headers())

    @app.get("/web/static/{name}", summary="The web pages' scripts and styles")
    def static(name: str) -> Response:
        if name not in STATIC_TYPES:
            return JSONResponse(
                {"error": "not_found", "message": "no such asset"},
                status_code=404,
                headers=security_headers(),
            )
        try:
            body = static_asset(name)
        except WebAssetsMissing as e:
            return missing(e)
        return Response(body, media_type=STATIC_TYPES[name], headers=security_headers())
