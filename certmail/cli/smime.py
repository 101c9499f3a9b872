"""``certmail keys smime ...``: your S/MIME key and your correspondents' certificates.

Also :data:`smime_ca_option`, the ``--smime-ca FILE`` option of ``open``,
``verify``, ``inbox open`` and ``keys smime import-cert`` (docs/smime.md), and
:data:`send_trust_options` and :data:`campaign_trust_options`, the recipients' CA
bundle and CRL of ``send --smime`` and of ``campaign create`` and ``send``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from certmail.cli.app import App, emit_json, home_option, json_option, pass_app, say

if TYPE_CHECKING:
    from certmail.smime.certs import CertInfo

F = TypeVar("F", bound=Callable[..., Any])


def _app_path_option(flag: str, attr: str, help: str) -> Callable[[F], F]:
    """An option naming an existing file, stored on the :class:`App` as ``attr``."""

    def store(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
        if value is not None:
            setattr(ctx.ensure_object(App), attr, value)

    return click.option(
        flag,
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        expose_value=False,
        callback=store,
        metavar="FILE",
        help=help,
    )


_ca_option: Callable[[F], F] = _app_path_option(
    "--smime-ca",
    "smime_ca",
    "CA certificates (PEM) S/MIME signers must chain to "
    "(default: $CERTMAIL_SMIME_CA, else the system store).",
)
_crl_option: Callable[[F], F] = _app_path_option(
    "--smime-crl",
    "smime_crl",
    "CRLs (PEM) of the S/MIME CAs: the signer's certificate is checked against them "
    "(openssl -crl_check); a revoked one is refused.",
)


def _recipient_trust(ca_more: str, crl_more: str) -> Callable[[F], F]:
    """``--smime-ca`` and ``--smime-crl`` where they check the recipients' certificates."""
    ca = _app_path_option(
        "--smime-ca",
        "smime_ca",
        "With --smime: CA certificates (PEM) the recipients' certificates must chain to "
        "(default: $CERTMAIL_SMIME_CA, else the system store)." + ca_more,
    )
    crl = _app_path_option(
        "--smime-crl",
        "smime_crl",
        "With --smime: CRLs (PEM) of those CAs; a recipient certificate they list as "
        "revoked is refused" + crl_more,
    )
    return lambda f: ca(crl(f))


#: ``send``'s ``--smime-ca`` and ``--smime-crl`` (docs/smime.md "Revocation").
send_trust_options: Callable[[F], F] = _recipient_trust("", " (nothing is sent).")

#: ``campaign create`` and ``campaign send``'s (docs/campaigns.md, "The CA bundle and the
#: CRL of an S/MIME campaign").
campaign_trust_options: Callable[[F], F] = _recipient_trust(
    " create keeps a copy; every send checks with it (another given to send is refused).",
    " (create: its row; send: that recipient failed). create keeps the path; send reads "
    "it again, or the file given here.",
)


def refuse_trust_options(app: App, what: str) -> None:
    """``--smime-ca`` / ``--smime-crl`` of ``send`` and ``campaign`` are S/MIME's: an
    Error naming ``what`` they were given to otherwise."""
    from keys.errors import Error

    if app.smime_ca is not None or app.smime_crl is not None:
        raise Error(
            f"--smime-ca and --smime-crl are for S/MIME, not {what}",
            hint="leave them out: they check S/MIME certificates",
        )


def smime_ca_only(f: F) -> F:
    """``--smime-ca FILE`` alone (``receipts``: the S/MIME acknowledgements' CA bundle)."""
    return _ca_option(f)


def smime_ca_option(f: F) -> F:
    """``--smime-ca FILE`` and ``--smime-crl FILE`` (docs/smime.md, "Revocation")."""
    return _ca_option(_crl_option(f))


@click.group("smime")
def smime() -> None:
    """S/MIME (RFC 8551): your key and certificate, your correspondents' certificates.

    \b
      certmail keys smime import you.p12            # your key + certificate
      certmail keys smime import-cert bob.pem       # a correspondent's certificate
      certmail keys smime list
      certmail send --smime --to bob@example.net --subject Contract < note.txt
    """


def _line(c: CertInfo) -> str:
    mark = "own" if c.own else "crt"
    return (
        f"{mark}  {c.fingerprint}  until {c.not_after:%Y-%m-%d}  "
        f"{', '.join(c.emails) or '(no address)'}  [{c.subject}; issuer {c.issuer}]"
    )


@smime.command("import")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@home_option
@json_option()
@pass_app
def import_cmd(app: App, file: Path) -> None:
    """Import your S/MIME key and certificate from a PKCS #12 file (.p12 / .pfx).

    The passphrase of the file is asked on the terminal, or read from
    --passphrase-fd N or CERTMAIL_PASSPHRASE_FILE. The key is kept under the
    home (HOME/smime/key.pem, 0600), encrypted with that same passphrase.
    """
    from certmail.smime.store import SmimeStore

    settings = app.settings()
    info = SmimeStore(settings.home / "smime").import_p12(
        file.read_bytes(), file.name, app.passphrase_source(settings)
    )
    if app.as_json:
        emit_json({"imported": info.to_json()})
        return
    from rich.markup import escape

    click.echo(info.fingerprint)
    say(escape(f"imported your S/MIME key: {_line(info)}"))


@smime.command("import-cert")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@smime_ca_option
@home_option
@json_option()
@pass_app
def import_cert_cmd(app: App, file: Path) -> None:
    """Import a correspondent's S/MIME certificate (PEM or DER).

    It must name an address (SubjectAltName rfc822Name), be valid today and
    chain to the CA bundle (--smime-ca FILE, CERTMAIL_SMIME_CA, else the
    system store); `send --smime` then encrypts to it.
    """
    from certmail.smime.importing import import_certificates
    from certmail.smime.opening import smime_context

    settings = app.settings()
    infos = import_certificates(smime_context(settings, None, None), file.read_bytes(), file.name)
    if app.as_json:
        emit_json({"imported": [i.to_json() for i in infos]})
        return
    from rich.markup import escape

    for i in infos:
        click.echo(i.fingerprint)
        say(escape(f"imported {_line(i)}"))


@smime.command("list")
@home_option
@json_option()
@pass_app
def list_cmd(app: App) -> None:
    """List your S/MIME certificate and your correspondents' certificates."""
    from certmail.smime.store import SmimeStore

    settings = app.settings()
    found = SmimeStore(settings.home / "smime").list()
    if app.as_json:
        emit_json({"certificates": [c.to_json() for c in found]})
        return
    if not found:
        say("no S/MIME certificates yet: certmail keys smime import FILE.p12")
        return
    for c in found:
        click.echo(_line(c))
