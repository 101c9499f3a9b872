"""``certmail proof renew BUNDLE``: an archive time-stamp over the whole bundle
(RFC 4998-style renewal; certmail/bundle/renew.py, docs/proof-bundle.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from certmail.cli.app import App, emit_json, home_option, json_option, pass_app, say

if TYPE_CHECKING:
    import httpx


@click.command("renew")
@click.argument("bundle", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--tsa",
    "tsa_url",
    help="The RFC 3161 TSA to ask (URL taking application/timestamp-query); default: "
    "your notary's /tsa.",
)
@click.option(
    "--root",
    "root",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The TSA's root certificate (PEM), needed with --tsa; default: your notary's TSA root.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the renewed bundle here (default: replace BUNDLE).",
)
@json_option("Print what was added as JSON on stdout.")
@home_option
@pass_app
def renew(
    app: App, bundle: Path, tsa_url: str | None, root: Path | None, output: Path | None
) -> None:
    """Add an archive time-stamp over every member of BUNDLE and its earlier renewals,
    so it stays verifiable after the TSAs' certificates expire or their algorithms weaken."""
    import httpx

    from certmail.bundle import read_members, verify_bundle, write_members
    from certmail.bundle.renew import renewal_members
    from keys.errors import Error

    if tsa_url is not None and root is None:
        raise Error("--tsa needs --root", hint="give the TSA's root CA certificate: --root PEM")
    with httpx.Client(timeout=30) as http:  # one client (one SSL context) for every request
        if tsa_url is None:
            tsa_url, roots_pem = _notary_tsa(app, http)
        else:
            assert root is not None
            roots_pem = root.read_bytes()
        files = read_members(bundle)
        verify_bundle(bundle, vkey=None)  # renew only what verifies (against its own keys)
        url = tsa_url
        added = renewal_members(
            files, lambda digest: _timestamp(http, url, roots_pem, digest), roots_pem
        )
    data = write_members({**files, **added})
    target = output or bundle
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(target)
    names = sorted(added)
    if app.as_json:
        emit_json({"bundle": str(target), "added": names, "tsa": tsa_url})
        return
    say(f"{target}: renewed ({', '.join(names)}) by {tsa_url}")


def _notary_tsa(app: App, http: httpx.Client) -> tuple[str, bytes]:
    """Your notary's /tsa and the root its /v1/tsa/chain ends with."""
    import httpx
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from keys.errors import Error, TemporaryError

    url = app.settings().notary_url
    if not url:
        raise Error("no notary configured to renew with", hint="give --tsa URL --root PEM")
    try:
        pem = http.get(url + "/v1/tsa/chain").content
        chain = x509.load_pem_x509_certificates(pem)
    except httpx.HTTPError as e:
        raise TemporaryError(f"cannot reach the notary at {url}: {e}") from None
    except ValueError:
        raise Error(f"the notary at {url} serves no TSA chain") from None
    return url + "/tsa", chain[-1].public_bytes(Encoding.PEM)


def _timestamp(http: httpx.Client, url: str, roots_pem: bytes, digest: bytes) -> bytes:
    """A token over ``digest`` from the TSA at ``url``, verified against ``roots_pem``."""
    from cryptography import x509

    from keys.errors import Error
    from notary.anchors import post_query
    from notary.rfc3161.client import request_token

    try:
        roots = x509.load_pem_x509_certificates(roots_pem)
    except ValueError:
        raise Error("the --root file holds no PEM certificate") from None
    return request_token(lambda query: post_query(http, url, query), digest, roots)
